//! The bus over any [`Backend`]: every rule the backends share, written once.
//!
//! - Publishing needs a running bus. A missing `event_id` and `timestamp` are filled in, and the
//!   key defaults to the event's entity id. A keyed event
//!   goes to murmur2(key) mod the partition count, an unkeyed one round robin. A message larger
//!   than `max_message_bytes` is refused.
//! - A topic must exist, unless auto-create is on. Partition counts are 1 to 10,000. Every topic
//!   created gets its dead-letter topic.
//! - A subscription's topics must exist. An explicit start position is applied once, as an
//!   offset reset, when it subscribes.
//! - A dead letter goes to `<topic>.dlq`, which is created if it is missing.
//! - While tracing is on, every event published gets a `publish` span and carries its context
//!   (see [`crate::trace`]).
//! - An event with `metadata.deliver_at` in the future goes to the schedule topic instead of its
//!   own, whose existence is checked now; the scheduler runs from `start` to `stop` (see
//!   `schedule`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Span;

use super::backend::{Backend, Consumer};
use super::config::BusConfig;
use super::dispatch::Dispatcher;
use super::follower;
use super::letter_log::DeadLetterLog;
use super::letters::Letters;
use super::lifecycle::Lifecycle;
use super::position::Position;
use super::processor::Processor;
use super::record::{NewRecord, Payload};
use super::schedule::{self, ScheduleLog, Scheduler};
use crate::bus::{
    BackendKind, BusError, BusStatus, EventBus, GroupDescription, GroupId, GroupOffset, GroupTopic, Handler,
    MAX_GROUPS, Offset, Partition, Publication, Published, Record, StartPosition, Subscription, TopicDescription,
};
use crate::envelope::EventSchema;
use crate::partitioner::partition_for_key;
use crate::topics::{DLQ_PARTITIONS, MAX_PARTITIONS, Topic, TopicName};
use crate::trace;

/// The event bus over a backend. Cheap to clone; clones share everything.
pub struct Bus<B: Backend> {
    shared: Arc<Shared<B>>,
}

impl<B: Backend> Clone for Bus<B> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

struct Shared<B> {
    backend: Arc<B>,
    config: BusConfig,
    lifecycle: Lifecycle,
    /// Partition counts of the topics seen so far.
    partitions: RwLock<HashMap<TopicName, u32>>,
    round_robin: AtomicU32,
    schedule: Arc<Scheduler>,
}

impl<B: Backend> Bus<B> {
    /// A bus over `backend`, with the catalog topics and their dead-letter topics created.
    pub(crate) async fn open(backend: Arc<B>, config: BusConfig) -> Result<Self, BusError> {
        check_partitions(config.default_partitions)?;
        backend.ensure_topics(Topic::bootstrap().chain([(schedule::topic(), 1)]).collect()).await?;
        let shared = Shared {
            backend,
            schedule: Arc::new(Scheduler::new(config.run_scheduler, config.max_scheduled)),
            config,
            lifecycle: Lifecycle::new(),
            partitions: RwLock::default(),
            round_robin: AtomicU32::new(0),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// The backend under the bus.
    pub(crate) fn inner(&self) -> &B {
        &self.shared.backend
    }

    /// Starts one consumer task for a subscription on the backend.
    fn spawner(
        &self,
    ) -> impl Fn(Subscription, Arc<dyn Handler>, watch::Receiver<bool>, Arc<AtomicBool>) -> JoinHandle<()> + Sync {
        let shared = Arc::clone(&self.shared);
        move |subscription, handler, stop, joined| {
            let log = Arc::clone(&shared) as Arc<dyn DeadLetterLog>;
            let max = shared.config.max_message_bytes;
            let (group, window) = (subscription.group.clone(), shared.config.dedup_window);
            let policy = subscription.dead_letters.clone();
            let letters = Letters::new(&group, &subscription.topics, policy, log, max);
            let processor = Arc::new(Processor::new(group, subscription.retry, handler, max, window, letters));
            let follower = follower::spawn(Arc::clone(&processor), stop.clone());
            let in_flight = subscription.max_in_flight.unwrap_or(shared.config.max_in_flight);
            let dispatcher = Dispatcher::new(processor, stop.clone(), in_flight, joined);
            let consumer = Arc::clone(&shared.backend).spawn_consumer(Consumer { subscription, dispatcher, stop });
            match follower {
                None => consumer,
                Some(follower) => tokio::spawn(async move {
                    if let Err(error) = consumer.await {
                        tracing::error!(%error, "Consumer task failed");
                    }
                    if let Err(error) = follower.await {
                        tracing::error!(%error, "Dead-letter follower failed");
                    }
                }),
            }
        }
    }
}

impl<B: Backend> Shared<B> {
    /// The partition count of a topic; creates the topic if auto-create is on.
    async fn partition_count(&self, topic: &TopicName) -> Result<u32, BusError> {
        if let Some(&n) = self.partitions.read().expect("partitions lock").get(topic) {
            return Ok(n);
        }
        let n = match self.backend.partition_count(topic).await? {
            Some(n) => n,
            None if self.config.auto_create_topics => {
                let n = topic.auto_partitions(self.config.default_partitions);
                self.backend.ensure_topics(topic.with_dlq(n)).await?;
                self.backend.partition_count(topic).await?.unwrap_or(n)
            }
            None => return Err(BusError::UnknownTopic(topic.clone())),
        };
        self.partitions.write().expect("partitions lock").insert(topic.clone(), n);
        Ok(n)
    }

    /// The stored form of an event: the event itself, or with its flat JSON, encoded once, for a
    /// backend that stores or sends bytes. Either way, an event over `max_message_bytes` is
    /// refused.
    fn payload(&self, event: EventSchema) -> Result<Payload, BusError> {
        let max = self.config.max_message_bytes;
        let too_large = |size| BusError::MessageTooLarge { size, max };
        if self.backend.stores_bytes() {
            let json = event.to_json();
            if json.len() > max {
                return Err(too_large(json.len()));
            }
            return Ok(Payload::Encoded { event: Arc::new(event), json: json.into() });
        }
        let size = encoded_len(&event);
        if size > max { Err(too_large(size)) } else { Ok(Payload::Event(Arc::new(event))) }
    }

    /// Keyed records go where murmur2 puts them; unkeyed ones round-robin.
    fn partition(&self, key: Option<&str>, partitions: u32) -> Partition {
        match key {
            Some(key) => partition_for_key(key.as_bytes(), partitions),
            None => Partition(self.round_robin.fetch_add(1, Ordering::Relaxed) % partitions),
        }
    }

    /// Events as records: completed, keyed, partitioned and size-checked; with the time each
    /// scheduled one is due, which goes to the schedule topic. While tracing is on, each gets a
    /// `publish` span, pushed to `spans`, whose context it carries.
    async fn records(
        &self,
        publications: Vec<Publication>,
        spans: &mut Vec<Span>,
    ) -> Result<(Vec<NewRecord>, Vec<Option<DateTime<Utc>>>), BusError> {
        let tracing = trace::enabled();
        let mut records = Vec::with_capacity(publications.len());
        let mut dues = Vec::with_capacity(publications.len());
        let mut partitions: Option<(TopicName, u32)> = None;
        let now = Utc::now();
        for Publication { topic, key, mut event } in publications {
            let due = schedule::due(&mut event, now, self.config.max_schedule_ahead)?;
            dues.push(due);
            let Publication { topic, key, mut event } = match due {
                None => Publication { topic, key, event },
                Some(due) => {
                    self.partition_count(&topic).await?;
                    event.complete();
                    let key = key.or_else(|| event.default_key().map(str::to_owned));
                    Publication::new(schedule::topic(), schedule::entry(&topic, key.as_deref(), &event, due))
                }
            };
            let count = match &partitions {
                Some((last, count)) if *last == topic => *count,
                _ => {
                    let count = self.partition_count(&topic).await?;
                    partitions = Some((topic.clone(), count));
                    count
                }
            };
            event.complete();
            let key: Option<Arc<str>> = match key {
                Some(key) => Some(Arc::from(key)),
                None => event.default_key().map(Arc::from),
            };
            let partition = self.partition(key.as_deref(), count);
            if tracing {
                spans.push(trace::publish(&topic, partition, &mut event));
            }
            let payload = self.payload(event)?;
            records.push(NewRecord { topic, partition, key, payload });
        }
        Ok((records, dues))
    }

    /// Appends the publications, scheduled ones to the schedule topic, which holds them for the
    /// scheduler.
    async fn publish(&self, publications: Vec<Publication>, spans: &mut Vec<Span>) -> Result<Vec<Published>, BusError> {
        let (records, dues) = self.records(publications, spans).await?;
        let entries = schedule::entries(&records, &dues);
        self.schedule.admit(entries.len())?;
        let mut published = self.backend.append(records).await?;
        if !entries.is_empty() {
            for (published, due) in published.iter_mut().zip(dues) {
                published.scheduled = due;
            }
            self.schedule.hold(&entries);
        }
        Ok(published)
    }

    /// The dead-letter topic of `topic`, created if it is missing: a dead letter is never lost
    /// for want of its topic.
    async fn ensure_dlq(&self, topic: &TopicName) -> Result<TopicName, BusError> {
        let dlq = topic.dlq();
        if self.partition_count(&dlq).await.is_err() {
            self.backend.ensure_topics(vec![(dlq.clone(), DLQ_PARTITIONS)]).await?;
        }
        Ok(dlq)
    }

    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, BusError> {
        let partitions = self.partition_count(topic).await?;
        if partition.0 >= partitions {
            return Err(BusError::UnknownPartition { topic: topic.clone(), partition, partitions });
        }
        let records = self.backend.read(topic, partition, from, max).await?;
        Ok(records.into_iter().map(|record| record.into_record(topic)).collect())
    }

    async fn describe(&self, topic: &TopicName) -> Result<TopicDescription, BusError> {
        self.partition_count(topic).await?;
        let mut found = self.backend.describe(Some(topic)).await?;
        found.pop().ok_or_else(|| BusError::UnknownTopic(topic.clone()))
    }

    /// Where `start` points in each partition of `topic`, for `group`.
    async fn resolve(
        &self,
        group: &GroupId,
        topic: &TopicName,
        start: StartPosition,
    ) -> Result<Vec<(Partition, Offset)>, BusError> {
        let description = self.describe(topic).await?;
        let committed = match start {
            StartPosition::Committed => self.backend.committed(group, &description).await?,
            _ => HashMap::new(),
        };
        let committed = committed.into_iter().map(|(partition, position)| (partition, position.next)).collect();
        let by_time = match start {
            StartPosition::Timestamp(time) => self.backend.offsets_for_time(&description, time).await?,
            _ => HashMap::new(),
        };
        Ok(start_offsets(start, &description, &committed, &by_time))
    }

    async fn group_offsets(&self, group: &GroupId, topic: &TopicName) -> Result<Vec<GroupOffset>, BusError> {
        let description = self.describe(topic).await?;
        let committed = self.backend.committed(group, &description).await?;
        Ok(group_offsets(&description, &committed))
    }

    async fn list_groups(&self) -> Result<Vec<GroupDescription>, BusError> {
        let commits = self.backend.groups(MAX_GROUPS).await?;
        let topics: HashMap<TopicName, TopicDescription> =
            self.backend.describe(None).await?.into_iter().map(|topic| (topic.name.clone(), topic)).collect();
        Ok(commits
            .into_iter()
            .take(MAX_GROUPS)
            .map(|(group, committed)| {
                let topics: Vec<GroupTopic> = committed
                    .into_iter()
                    .filter_map(|(topic, positions)| {
                        let partitions = group_offsets(topics.get(&topic)?, &positions);
                        let lag = partitions.iter().map(|p| p.lag).sum();
                        (!partitions.is_empty()).then_some(GroupTopic { topic, partitions, lag })
                    })
                    .collect();
                let lag = topics.iter().map(|t| t.lag).sum();
                GroupDescription { group, topics, lag }
            })
            .collect())
    }
}

/// The committed offsets and lag of a group in the partitions of `topic` it committed in.
fn group_offsets(topic: &TopicDescription, committed: &HashMap<Partition, Position>) -> Vec<GroupOffset> {
    topic
        .partitions
        .iter()
        .filter_map(|info| {
            let position = committed.get(&info.partition)?;
            let finished: Vec<Offset> =
                position.finished.iter().filter(|o| **o < info.latest.0).map(|o| Offset(*o)).collect();
            let lag = info.latest.0.saturating_sub(position.next.0).saturating_sub(finished.len() as u64);
            Some(GroupOffset { partition: info.partition, offset: position.next, finished, lag })
        })
        .collect()
}

/// Where `start` points in each partition of `topic`, clamped to what is retained: `committed`
/// holds the group's committed offsets, `by_time` the offsets of a timestamp.
fn start_offsets(
    start: StartPosition,
    topic: &TopicDescription,
    committed: &HashMap<Partition, Offset>,
    by_time: &HashMap<Partition, Offset>,
) -> Vec<(Partition, Offset)> {
    topic
        .partitions
        .iter()
        .map(|info| {
            let offset = match start {
                StartPosition::Committed => committed.get(&info.partition).copied().unwrap_or(info.earliest),
                StartPosition::Earliest => info.earliest,
                StartPosition::Latest => info.latest,
                StartPosition::Offset(n) => n,
                StartPosition::Timestamp(_) => by_time.get(&info.partition).copied().unwrap_or(info.latest),
            };
            (info.partition, offset.clamp(info.earliest, info.latest))
        })
        .collect()
}

/// Where a consumer resumes in each partition of `topic`: the group's committed position, or the
/// earliest offset where it has none. A position below what retention kept moves up to it, as
/// Kafka's `auto.offset.reset=earliest` does.
pub(crate) fn resume_positions(
    topic: &TopicDescription,
    mut committed: HashMap<Partition, Position>,
) -> Vec<(Partition, Position)> {
    topic
        .partitions
        .iter()
        .map(|info| {
            let mut position = committed.remove(&info.partition).unwrap_or_else(|| Position::at(info.earliest));
            position.next = position.next.clamp(info.earliest, info.latest);
            let next = position.next.0;
            position.finished.retain(|offset| *offset > next && *offset < info.latest.0);
            (info.partition, position)
        })
        .collect()
}

/// Partition counts are 1 to [`MAX_PARTITIONS`].
fn check_partitions(partitions: u32) -> Result<(), BusError> {
    if (1..=MAX_PARTITIONS).contains(&partitions) { Ok(()) } else { Err(BusError::InvalidPartitions(partitions)) }
}

/// The length of an event's flat JSON, without building it.
fn encoded_len(event: &EventSchema) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, event).expect("an EventSchema always serialises");
    counter.0
}

#[async_trait]
impl<B: Backend> DeadLetterLog for Shared<B> {
    async fn dead_letter(&self, topic: &TopicName, key: Option<Arc<str>>, letter: EventSchema) -> Result<(), BusError> {
        let dlq = self.ensure_dlq(topic).await?;
        let partitions = self.partition_count(&dlq).await?;
        let partition = self.partition(key.as_deref(), partitions);
        let record = NewRecord { topic: dlq, partition, key, payload: self.payload(letter)? };
        self.backend.append(vec![record]).await.map(drop)
    }

    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, BusError> {
        self.read(topic, partition, from, max).await
    }

    async fn end(&self, topic: &TopicName) -> Result<Offset, BusError> {
        let description = self.describe(topic).await?;
        Ok(description.partitions.first().map_or(Offset(0), |p| p.latest))
    }
}

#[async_trait]
impl<B: Backend> ScheduleLog for Shared<B> {
    async fn read_schedule(&self, from: Offset, max: usize) -> Result<Vec<Record>, BusError> {
        self.read(&schedule::topic(), Partition(0), from, max).await
    }

    async fn deliver(&self, event: Publication, marker: Publication) -> Result<(), BusError> {
        let mut spans = Vec::new();
        let appended = match self.records(vec![event, marker], &mut spans).await {
            Ok((records, _)) => self.backend.append(records).await,
            Err(error) => Err(error),
        };
        trace::published(spans, &appended);
        appended.map(drop)
    }
}

#[async_trait]
impl<B: Backend> EventBus for Bus<B> {
    fn backend(&self) -> BackendKind {
        self.shared.backend.kind()
    }

    async fn start(&self) -> Result<(), BusError> {
        if self.shared.lifecycle.start(&self.spawner()).await {
            self.shared.schedule.start(Arc::clone(&self.shared) as Arc<dyn ScheduleLog>).await;
            tracing::info!(backend = %self.backend(), "Event bus started");
        }
        Ok(())
    }

    /// Stops the consumers (they commit what they finished), then lets the backend send what
    /// waits to be sent.
    async fn stop(&self) -> Result<(), BusError> {
        self.shared.schedule.stop().await;
        if !self.shared.lifecycle.stop().await {
            return Ok(());
        }
        self.shared.backend.flush().await?;
        tracing::info!(backend = %self.backend(), "Event bus stopped");
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.shared.lifecycle.is_running()
    }

    async fn publish_many(&self, publications: Vec<Publication>) -> Result<Vec<Published>, BusError> {
        self.shared.lifecycle.ensure_running()?;
        if publications.is_empty() {
            return Ok(Vec::new());
        }
        let mut spans = Vec::new();
        let published = self.shared.publish(publications, &mut spans).await;
        trace::published(spans, &published);
        published
    }

    async fn publish_bytes(&self, topic: &TopicName, key: Option<&str>, value: Bytes) -> Result<Published, BusError> {
        self.shared.lifecycle.ensure_running()?;
        let max = self.shared.config.max_message_bytes;
        if value.len() > max {
            return Err(BusError::MessageTooLarge { size: value.len(), max });
        }
        let partitions = self.shared.partition_count(topic).await?;
        let record = NewRecord {
            topic: topic.clone(),
            partition: self.shared.partition(key, partitions),
            key: key.map(Arc::from),
            payload: Payload::Bytes(value),
        };
        let mut published = self.shared.backend.append(vec![record]).await?;
        Ok(published.remove(0))
    }

    async fn subscribe(&self, subscription: Subscription, handler: Arc<dyn Handler>) -> Result<(), BusError> {
        for topic in &subscription.topics {
            self.shared.partition_count(topic).await?;
        }
        self.shared.lifecycle.subscribe(self, subscription, handler, &self.spawner()).await
    }

    async fn joined(&self, group: &GroupId) -> Option<bool> {
        self.shared.lifecycle.joined(group).await
    }

    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, BusError> {
        self.shared.read(topic, partition, from, max).await
    }

    async fn status(&self) -> Result<BusStatus, BusError> {
        let topics = self.shared.backend.describe(None).await?;
        let backlog = self.shared.backend.outbox_backlog().await?;
        Ok(BusStatus::of(self.backend(), self.is_running(), &topics, backlog, self.shared.schedule.pending()))
    }

    async fn outbox_backlog(&self) -> Result<Option<u64>, BusError> {
        self.shared.backend.outbox_backlog().await
    }

    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError> {
        check_partitions(partitions)?;
        self.shared.backend.create_topic(name, partitions).await?;
        self.shared.backend.ensure_topics(name.with_dlq(partitions).split_off(1)).await
    }

    async fn list_topics(&self) -> Result<Vec<TopicDescription>, BusError> {
        self.shared.backend.describe(None).await
    }

    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, BusError> {
        self.shared.describe(name).await
    }

    async fn group_offsets(&self, group: &GroupId, topic: &TopicName) -> Result<Vec<GroupOffset>, BusError> {
        self.shared.group_offsets(group, topic).await
    }

    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError> {
        self.shared.backend.delete_group(group).await
    }

    async fn reset_offsets(
        &self,
        group: &GroupId,
        topic: &TopicName,
        to: StartPosition,
    ) -> Result<Vec<GroupOffset>, BusError> {
        let offsets = self.shared.resolve(group, topic, to).await?;
        let positions = offsets.into_iter().map(|(partition, offset)| (partition, Position::at(offset))).collect();
        self.shared.backend.commit(group, topic, positions).await?;
        self.shared.group_offsets(group, topic).await
    }

    async fn list_groups(&self) -> Result<Vec<GroupDescription>, BusError> {
        self.shared.list_groups().await
    }

    async fn reset_partition_offset(
        &self,
        group: &GroupId,
        topic: &TopicName,
        partition: Partition,
        to: StartPosition,
    ) -> Result<Vec<GroupOffset>, BusError> {
        let offsets = self.shared.resolve(group, topic, to).await?;
        let partitions = offsets.len() as u32;
        let (_, offset) = offsets
            .into_iter()
            .find(|(p, _)| *p == partition)
            .ok_or_else(|| BusError::UnknownPartition { topic: topic.clone(), partition, partitions })?;
        self.shared.backend.commit(group, topic, vec![(partition, Position::at(offset))]).await?;
        self.shared.group_offsets(group, topic).await
    }
}
