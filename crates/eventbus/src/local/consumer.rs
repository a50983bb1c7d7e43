//! The consumer loop of the local backends. It reads the partitions it holds whose end moved past
//! its cursor into the shared [`Dispatcher`](crate::runtime::Dispatcher), which handles the
//! records concurrently with per-key order, and commits the positions the dispatcher reports, one
//! commit at a time.
//!
//! Processes sharing a store split a group's partitions between their live consumers
//! ([`Storage::claim`]): each renews its membership every third of the lease's time to live and
//! takes its share. When the share changes (a consumer joined, left or died), it lets its records
//! in flight finish, commits them, gives up the partitions that fall to others, and resumes the
//! ones it holds from their committed positions. A consumer whose process is gone (on this
//! machine: `kill -9`, a crash) holds nothing from the next claim on; one that cannot be proven
//! gone holds its partitions until its lease lapses.
//!
//! It sleeps until this process appends to one of its topics, a record finishes, or the poll
//! interval passes; then it refreshes the ends from the store, for what other processes appended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::storage::Storage;
use crate::bus::{BusError, GroupId, Offset, Partition, TopicDescription};
use crate::envelope::EventId;
use crate::runtime::{Consumer, Dispatcher, Position, STORAGE_RETRY, resume_positions, wait_or_stop};
use crate::topics::TopicName;

/// Records read from one partition at a time, at most.
const BATCH: usize = 512;

struct Cursor {
    topic: TopicName,
    partition: Partition,
    next: Offset,
}

/// Starts the task that runs one subscription on `storage` until its stop signal.
pub(super) fn spawn<S: Storage>(storage: Arc<S>, consumer: Consumer) -> JoinHandle<()> {
    tokio::spawn(run(storage, consumer))
}

async fn run<S: Storage>(storage: Arc<S>, consumer: Consumer) {
    let Consumer { subscription, mut dispatcher, mut stop } = consumer;
    let group = subscription.group.clone();
    // Named after this process, so that another can tell when it died (`liveness`).
    let owner = format!("{}{}", crate::liveness::tag(), EventId::new());
    let topics = subscription.topics.clone();
    let appended = storage.ends().watch(&topics);
    let poll = storage.poll_interval();
    let renew_every = storage.lease_ttl().map_or(Duration::MAX, |ttl| ttl / 3);
    let mut committer = Committer::default();
    // Each pass is one term with one share of the partitions; it ends when the share changes.
    'term: while !*stop.borrow() {
        let descriptions = match describe(&*storage, &topics).await {
            Ok(descriptions) => descriptions,
            Err(error) => {
                tracing::error!(%group, %error, "Cannot describe the topics; retrying");
                wait_or_stop(&mut stop, STORAGE_RETRY).await;
                continue;
            }
        };
        let partitions: Vec<(TopicName, Partition)> = descriptions
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|info| (topic.name.clone(), info.partition)))
            .collect();
        let mut held = match take_share(&*storage, &group, &owner, &partitions).await {
            Ok(held) => held,
            Err(error) => {
                tracing::error!(%group, %error, "Cannot take the group's partitions; retrying");
                wait_or_stop(&mut stop, STORAGE_RETRY).await;
                continue;
            }
        };
        dispatcher.joined();
        let mut renewed = Instant::now();
        if held.is_empty() {
            tracing::debug!(%group, "Other processes consume every partition for the group; standing by");
            wait_or_stop(&mut stop, renew_every.min(Duration::from_secs(1))).await;
            continue;
        }
        let mut cursors = match resume(&*storage, &group, &topics, &descriptions, &held, &mut dispatcher).await {
            Ok(cursors) => cursors,
            Err(error) => {
                tracing::error!(%group, %error, "Cannot resolve start offsets; retrying");
                wait_or_stop(&mut stop, STORAGE_RETRY).await;
                continue;
            }
        };
        tracing::info!(%group, partitions = cursors.len(), of = partitions.len(), "Consumer started");
        let mut refresh = tokio::time::interval(poll);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = 0;
        while !*stop.borrow() {
            if renewed.elapsed() >= renew_every {
                match storage.claim(&group, &owner, &partitions).await {
                    Ok(claim) if claim.revoked.is_empty() && same(&claim.held, &held) => renewed = Instant::now(),
                    Ok(claim) => {
                        tracing::info!(%group, held = held.len(), now = claim.held.len(), "The group's share changed; rebalancing");
                        dispatcher.drain().await;
                        settle(&mut committer, &storage, &group, &mut dispatcher).await;
                        forget(&mut dispatcher, &held);
                        held.clear();
                        continue 'term;
                    }
                    Err(error) => tracing::error!(%group, %error, "Cannot renew the group's partitions"),
                }
            }
            let more = match read_moved(&*storage, &mut cursors, first, &mut dispatcher).await {
                Ok(more) => more,
                Err(error) => {
                    tracing::error!(%group, %error, "Read failed; retrying");
                    wait_or_stop(&mut stop, STORAGE_RETRY).await;
                    false
                }
            };
            first = first.wrapping_add(1);
            committer.start(&storage, &group, &mut dispatcher);
            if more && dispatcher.room() > 0 {
                continue;
            }
            tokio::select! {
                () = dispatcher.finished(), if dispatcher.is_busy() => {}
                () = appended.notified() => {}
                _ = refresh.tick() => {
                    if let Err(error) = storage.refresh_ends(&topics).await {
                        tracing::warn!(%group, %error, "Cannot look for records of other processes");
                    }
                }
                committed = committer.finished(), if committer.is_running() => {
                    if !committed {
                        dispatcher.recommit();
                    }
                }
                _ = stop.changed() => {}
            }
        }
    }
    // Stopping: let the records in flight end, then commit what they finished.
    dispatcher.drain().await;
    settle(&mut committer, &storage, &group, &mut dispatcher).await;
    if let Err(error) = storage.leave(&group, &owner).await {
        tracing::warn!(%group, %error, "Cannot leave the group; its partitions are free once their leases expire");
    }
    tracing::info!(%group, "Consumer stopped");
}

/// Each of `topics` with its partitions, in order.
async fn describe<S: Storage>(storage: &S, topics: &[TopicName]) -> Result<Vec<TopicDescription>, BusError> {
    let mut descriptions = Vec::with_capacity(topics.len());
    for topic in topics {
        let description = storage.describe(Some(topic)).await?.pop();
        descriptions.push(description.ok_or_else(|| BusError::UnknownTopic(topic.clone()))?);
    }
    Ok(descriptions)
}

/// Claims this consumer's share; gives up at once what falls to others (nothing of it is in
/// flight at the start of a term). Returns the partitions held.
async fn take_share<S: Storage>(
    storage: &S,
    group: &GroupId,
    owner: &str,
    partitions: &[(TopicName, Partition)],
) -> Result<Vec<(TopicName, Partition)>, BusError> {
    let claim = storage.claim(group, owner, partitions).await?;
    if !claim.revoked.is_empty() {
        storage.release(group, owner, &claim.revoked).await?;
    }
    Ok(claim.held)
}

fn same(a: &[(TopicName, Partition)], b: &[(TopicName, Partition)]) -> bool {
    a.len() == b.len() && a.iter().all(|partition| b.contains(partition))
}

/// Commits what is finished: what changes while a commit runs goes in one more.
async fn settle<S: Storage>(committer: &mut Committer, storage: &Arc<S>, group: &GroupId, dispatcher: &mut Dispatcher) {
    committer.wait().await;
    committer.start(storage, group, dispatcher);
    committer.wait().await;
}

fn forget(dispatcher: &mut Dispatcher, partitions: &[(TopicName, Partition)]) {
    for (topic, partition) in partitions {
        dispatcher.forget(topic, *partition);
    }
}

/// Resumes each partition of `held` at the group's committed position; returns the cursors.
async fn resume<S: Storage>(
    storage: &S,
    group: &GroupId,
    topics: &[TopicName],
    descriptions: &[TopicDescription],
    held: &[(TopicName, Partition)],
    dispatcher: &mut Dispatcher,
) -> Result<Vec<Cursor>, BusError> {
    storage.refresh_ends(topics).await?;
    let mut cursors = Vec::new();
    for description in descriptions {
        let topic = &description.name;
        let committed = storage.committed(group, description).await?;
        for (partition, position) in resume_positions(description, committed) {
            if !held.iter().any(|(t, p)| t == topic && *p == partition) {
                continue;
            }
            cursors.push(Cursor { topic: topic.clone(), partition, next: position.next });
            dispatcher.resume(topic, partition, position);
        }
    }
    Ok(cursors)
}

/// Reads the partitions whose end is past their cursor into `dispatcher`, while it has room,
/// starting with cursor `first` (round robin). Returns whether any partition has more to read.
async fn read_moved<S: Storage>(
    storage: &S,
    cursors: &mut [Cursor],
    first: usize,
    dispatcher: &mut Dispatcher,
) -> Result<bool, BusError> {
    let mut more = false;
    let count = cursors.len();
    for i in 0..count {
        let cursor = &mut cursors[(first + i) % count];
        let end = storage.ends().get(&cursor.topic, cursor.partition);
        if end.is_some_and(|end| end <= cursor.next) {
            continue;
        }
        let room = dispatcher.room();
        if room == 0 {
            return Ok(true);
        }
        let records = storage.read(&cursor.topic, cursor.partition, cursor.next, room.min(BATCH)).await?;
        if let Some(first) = records.first()
            && first.offset > cursor.next
        {
            // Retention removed what was not read yet; carry on from the log start, as Kafka's
            // auto.offset.reset=earliest does.
            tracing::warn!(topic = %cursor.topic, partition = %cursor.partition, from = %cursor.next, to = %first.offset, "Offsets expired by retention were skipped");
        }
        let read = records.len();
        for record in records {
            cursor.next = Offset(record.offset.0 + 1);
            dispatcher.push(&cursor.topic, record);
        }
        more |= match end {
            Some(end) => cursor.next < end,
            None => read == room.min(BATCH),
        };
    }
    Ok(more)
}

/// Commits positions, one commit at a time: the ones that change meanwhile go in the next.
#[derive(Default)]
struct Committer {
    running: Option<JoinHandle<bool>>,
}

impl Committer {
    fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Commits what changed, unless a commit is running.
    fn start<S: Storage>(&mut self, storage: &Arc<S>, group: &GroupId, dispatcher: &mut Dispatcher) {
        if self.running.is_some() {
            return;
        }
        let changed = dispatcher.positions();
        if changed.is_empty() {
            return;
        }
        let mut by_topic: HashMap<TopicName, Vec<(Partition, Position)>> = HashMap::new();
        for (topic, partition, position) in changed {
            by_topic.entry(topic).or_default().push((partition, position));
        }
        let (storage, group) = (Arc::clone(storage), group.clone());
        self.running = Some(tokio::spawn(async move {
            for (topic, positions) in by_topic {
                if let Err(error) = storage.commit(&group, &topic, positions).await {
                    // What it finished is committed with the next change, or delivered again.
                    tracing::error!(%group, %topic, %error, "Offset commit failed");
                    return false;
                }
            }
            true
        }));
    }

    /// Waits for the running commit; false if it failed. Cancel-safe.
    async fn finished(&mut self) -> bool {
        let Some(running) = self.running.as_mut() else { return true };
        let committed = running.await.unwrap_or(false);
        self.running = None;
        committed
    }

    async fn wait(&mut self) {
        self.finished().await;
    }
}
