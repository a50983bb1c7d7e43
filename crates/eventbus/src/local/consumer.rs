//! The consumer loop of the local backends: reads each partition in order from the storage,
//! hands each record to the [`Processor`](crate::runtime::Processor), and commits offsets only
//! after it is done with them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::storage::Storage;
use crate::bus::{BusError, GroupId, Offset, Partition, StartPosition};
use crate::envelope::EventId;
use crate::runtime::{Consumer, Processor, STORAGE_RETRY, Stopped, start_offsets, wait_or_stop};
use crate::topics::TopicName;

/// Records read from one partition at a time.
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
    let Consumer { subscription, mut processor, mut stop } = consumer;
    let group = subscription.group.clone();
    let owner = EventId::new().to_string();
    let topics = subscription.topics.clone();
    let mut changes = storage.changes();
    let poll = storage.poll_interval();
    let renew_every = storage.lease_ttl().map_or(Duration::MAX, |ttl| ttl / 3);
    let mut reader = Reader { storage: Arc::clone(&storage), group: group.clone() };
    // Each pass is one term as the group's consumer of these topics; another process sharing the
    // store may hold them, and then this one waits on standby.
    'term: while !*stop.borrow() {
        match storage.acquire_lease(&group, &topics, &owner).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(%group, "Another process consumes these topics for the group; standing by");
                wait_or_stop(&mut stop, renew_every.min(Duration::from_secs(1))).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%group, %error, "Cannot take the group's lease; retrying");
                wait_or_stop(&mut stop, STORAGE_RETRY).await;
                continue;
            }
        }
        let mut renewed = Instant::now();
        let mut cursors = match reader.cursors(&topics).await {
            Ok(cursors) => cursors,
            Err(error) => {
                tracing::error!(%group, %error, "Cannot resolve start offsets; retrying");
                wait_or_stop(&mut stop, STORAGE_RETRY).await;
                continue;
            }
        };
        tracing::info!(%group, partitions = cursors.len(), "Consumer started");
        while !*stop.borrow() {
            if renewed.elapsed() >= renew_every {
                match storage.acquire_lease(&group, &topics, &owner).await {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => {
                        tracing::warn!(%group, "Lease lost to another process; standing by");
                        continue 'term;
                    }
                    Err(error) => tracing::error!(%group, %error, "Cannot renew the group's lease"),
                }
            }
            changes.borrow_and_update();
            let mut progressed = false;
            for cursor in &mut cursors {
                match reader.poll(cursor, &mut processor, &mut stop).await {
                    Ok(n) => progressed |= n > 0,
                    Err(Stopped) => break,
                }
            }
            if !progressed {
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    if let Err(error) = storage.release_lease(&group, &topics, &owner).await {
        tracing::warn!(%group, %error, "Cannot release the group's lease; it expires by itself");
    }
    tracing::info!(%group, "Consumer stopped");
}

/// Reads partitions for one group and commits what was handled.
struct Reader<S> {
    storage: Arc<S>,
    group: GroupId,
}

impl<S: Storage> Reader<S> {
    /// A cursor at the group's committed offset in every partition of `topics`.
    async fn cursors(&self, topics: &[TopicName]) -> Result<Vec<Cursor>, BusError> {
        let mut cursors = Vec::new();
        for topic in topics {
            let description =
                self.storage.describe(Some(topic)).await?.pop().ok_or_else(|| BusError::UnknownTopic(topic.clone()))?;
            let committed = self.storage.committed(&self.group, &description).await?;
            let positions = start_offsets(StartPosition::Committed, &description, &committed, &HashMap::new());
            cursors.extend(positions.into_iter().map(|(partition, next)| Cursor {
                topic: topic.clone(),
                partition,
                next,
            }));
        }
        Ok(cursors)
    }

    /// Handles the next batch of one partition and commits it. Returns how many were handled.
    async fn poll(
        &mut self,
        cursor: &mut Cursor,
        processor: &mut Processor,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<usize, Stopped> {
        let read = self.storage.read(&cursor.topic, cursor.partition, cursor.next, BATCH).await;
        let records = match read {
            Ok(records) => records,
            Err(error) => {
                tracing::error!(topic = %cursor.topic, partition = %cursor.partition, %error, "Read failed; retrying");
                wait_or_stop(stop, STORAGE_RETRY).await;
                return Ok(0);
            }
        };
        let Some(first) = records.first() else { return Ok(0) };
        if first.offset > cursor.next {
            // Retention removed what we had not read yet; carry on from the log start, as Kafka's
            // auto.offset.reset=earliest does.
            tracing::warn!(topic = %cursor.topic, partition = %cursor.partition, from = %cursor.next, to = %first.offset, "Offsets expired by retention were skipped");
        }
        let mut handled = 0;
        let mut outcome = Ok(());
        for record in records {
            if *stop.borrow() {
                outcome = Err(Stopped);
                break;
            }
            let offset = record.offset;
            if let Err(stopped) = processor.process(&cursor.topic, record, stop).await {
                outcome = Err(stopped);
                break;
            }
            cursor.next = Offset(offset.0 + 1);
            handled += 1;
        }
        if handled > 0 {
            self.commit(cursor, stop).await;
        }
        outcome.map(|()| handled)
    }

    async fn commit(&self, cursor: &Cursor, stop: &mut watch::Receiver<bool>) {
        let group = &self.group;
        loop {
            match self.storage.commit(group, &cursor.topic, vec![(cursor.partition, cursor.next)]).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(%group, topic = %cursor.topic, %error, "Offset commit failed; retrying");
                    // On stop the commit is abandoned: the messages will be delivered again.
                    if wait_or_stop(stop, STORAGE_RETRY).await {
                        return;
                    }
                }
            }
        }
    }
}
