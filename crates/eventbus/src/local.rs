//! `LocalBus`: the `EventBus` over a [`Storage`], shared by the memory, log and embedded
//! backends. It partitions by key, checks topics and sizes, and runs the consumers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::{
    BackendKind, BusError, BusStatus, EventBus, GroupId, GroupOffset, Handler, Offset, Partition, Published,
    StartPosition, Subscription, TopicDescription,
};
use crate::consumer;
use crate::envelope::EventSchema;
use crate::lifecycle::Lifecycle;
use crate::partitioner::partition_for_key;
use crate::processor::DeadLetterSink;
use crate::storage::{NewRecord, Payload, Storage};
use crate::topics::{DLQ_PARTITIONS, MAX_PARTITIONS, Topic, TopicName};

/// Kafka's default `message.max.bytes`, about 1 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Settings every local backend shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    /// Create an unknown topic on first publish or subscribe, like Kafka's
    /// `auto.create.topics.enable`. Off by default: a typo then fails loudly.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub default_partitions: u32,
    /// The largest message accepted, in bytes of flat JSON.
    pub max_message_bytes: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self { auto_create_topics: false, default_partitions: 1, max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES }
    }
}

/// The event bus over a local storage. Cheap to clone; clones share everything.
pub struct LocalBus<S: Storage> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S: Storage> Clone for LocalBus<S> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

pub(crate) struct Inner<S> {
    pub(crate) storage: S,
    pub(crate) config: LocalConfig,
    lifecycle: Lifecycle,
    partitions: RwLock<HashMap<TopicName, u32>>,
    round_robin: AtomicU32,
}

impl<S: Storage> LocalBus<S> {
    /// A bus over `storage`, with the catalog topics and their dead-letter topics created.
    pub(crate) async fn open(storage: S, config: LocalConfig) -> Result<Self, BusError> {
        if !(1..=MAX_PARTITIONS).contains(&config.default_partitions) {
            return Err(BusError::InvalidPartitions(config.default_partitions));
        }
        storage.ensure_topics(Topic::bootstrap().collect()).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                storage,
                config,
                lifecycle: Lifecycle::new(),
                partitions: RwLock::default(),
                round_robin: AtomicU32::new(0),
            }),
        })
    }

    pub(crate) fn storage(&self) -> &S {
        &self.inner.storage
    }

    fn ensure_running(&self) -> Result<(), BusError> {
        self.inner.lifecycle.ensure_running()
    }

    fn spawner(&self) -> impl Fn(Subscription, Arc<dyn Handler>, watch::Receiver<bool>) -> JoinHandle<()> + Sync {
        let inner = Arc::clone(&self.inner);
        move |subscription, handler, stop| tokio::spawn(consumer::run(Arc::clone(&inner), subscription, handler, stop))
    }

    async fn records(
        &self,
        topic: &TopicName,
        events: Vec<EventSchema>,
        keys: Option<Vec<String>>,
    ) -> Result<Vec<NewRecord>, BusError> {
        if let Some(keys) = keys.as_ref().filter(|keys| keys.len() != events.len()) {
            return Err(BusError::KeyCountMismatch { keys: keys.len(), events: events.len() });
        }
        let partitions = self.inner.partition_count(topic).await?;
        let mut keys = keys.map(Vec::into_iter);
        let records = events
            .into_iter()
            .map(|mut event| {
                event.complete();
                let key: Option<Arc<str>> = match keys.as_mut() {
                    Some(keys) => keys.next().map(Arc::from),
                    None => event.default_key().map(Arc::from),
                };
                let payload = self.inner.payload(event)?;
                Ok(NewRecord { partition: self.inner.partition(key.as_deref(), partitions), key, payload })
            })
            .collect::<Result<Vec<_>, BusError>>()?;
        Ok(records)
    }
}

impl<S: Storage> Inner<S> {
    /// The partition count of a topic; creates the topic if auto-create is on.
    pub(crate) async fn partition_count(&self, topic: &TopicName) -> Result<u32, BusError> {
        if let Some(&n) = self.partitions.read().expect("partitions lock").get(topic) {
            return Ok(n);
        }
        let n = match self.storage.partition_count(topic).await? {
            Some(n) => n,
            None if self.config.auto_create_topics => {
                let n = topic.auto_partitions(self.config.default_partitions);
                self.storage.ensure_topics(topic.with_dlq(n)).await?;
                self.storage.partition_count(topic).await?.unwrap_or(n)
            }
            None => return Err(BusError::UnknownTopic(topic.clone())),
        };
        self.partitions.write().expect("partitions lock").insert(topic.clone(), n);
        Ok(n)
    }

    /// The stored form of an event: the event itself, or its flat JSON for a storage that keeps
    /// bytes. Either way, an event over `max_message_bytes` is refused.
    pub(crate) fn payload(&self, event: EventSchema) -> Result<Payload, BusError> {
        let max = self.config.max_message_bytes;
        let too_large = |size| BusError::MessageTooLarge { size, max };
        if self.storage.stores_bytes() {
            let json = event.to_json();
            return if json.len() > max { Err(too_large(json.len())) } else { Ok(Payload::Bytes(json.into())) };
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

    /// The dead-letter topic of `topic`, created if it is missing: a dead letter is never lost
    /// for want of its topic.
    async fn ensure_dlq(&self, topic: &TopicName) -> Result<TopicName, BusError> {
        let dlq = topic.dlq();
        if self.partition_count(&dlq).await.is_err() {
            self.storage.ensure_topics(vec![(dlq.clone(), DLQ_PARTITIONS)]).await?;
        }
        Ok(dlq)
    }

    async fn append_event(
        &self,
        topic: &TopicName,
        key: Option<Arc<str>>,
        event: EventSchema,
    ) -> Result<Published, BusError> {
        let partitions = self.partition_count(topic).await?;
        let partition = self.partition(key.as_deref(), partitions);
        let record = NewRecord { partition, key, payload: self.payload(event)? };
        let mut published = self.storage.append(topic, vec![record]).await?;
        Ok(published.remove(0))
    }

    /// Where `start` points in each partition of `topic`.
    pub(crate) async fn resolve(
        &self,
        group: &GroupId,
        topic: &TopicName,
        start: StartPosition,
    ) -> Result<Vec<(Partition, Offset)>, BusError> {
        let description = self.describe(topic).await?;
        let committed = match start {
            StartPosition::Committed => self.storage.committed(group, topic).await?,
            _ => HashMap::new(),
        };
        let mut positions = Vec::with_capacity(description.partitions.len());
        for info in description.partitions {
            let offset = match start {
                StartPosition::Committed => committed.get(&info.partition).copied().unwrap_or(info.earliest),
                StartPosition::Earliest => info.earliest,
                StartPosition::Latest => info.latest,
                StartPosition::Offset(n) => n,
                StartPosition::Timestamp(time) => self.storage.offset_for_time(topic, info.partition, time).await?,
            };
            positions.push((info.partition, offset.clamp(info.earliest, info.latest)));
        }
        Ok(positions)
    }

    async fn describe(&self, topic: &TopicName) -> Result<TopicDescription, BusError> {
        self.partition_count(topic).await?;
        let mut found = self.storage.describe(Some(topic)).await?;
        found.pop().ok_or_else(|| BusError::UnknownTopic(topic.clone()))
    }
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
impl<S: Storage> DeadLetterSink for Inner<S> {
    async fn dead_letter(&self, topic: &TopicName, key: Option<Arc<str>>, letter: EventSchema) -> Result<(), BusError> {
        let dlq = self.ensure_dlq(topic).await?;
        self.append_event(&dlq, key, letter).await.map(drop)
    }
}

#[async_trait]
impl<S: Storage> EventBus for LocalBus<S> {
    fn backend(&self) -> BackendKind {
        self.inner.storage.kind()
    }

    async fn start(&self) -> Result<(), BusError> {
        if self.inner.lifecycle.start(&self.spawner()).await {
            tracing::info!(backend = %self.backend(), "Event bus started");
        }
        Ok(())
    }

    async fn stop(&self) -> Result<(), BusError> {
        if self.inner.lifecycle.stop().await {
            tracing::info!(backend = %self.backend(), "Event bus stopped");
        }
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.inner.lifecycle.is_running()
    }

    async fn publish_batch(
        &self,
        topic: &TopicName,
        events: Vec<EventSchema>,
        keys: Option<Vec<String>>,
    ) -> Result<Vec<Published>, BusError> {
        self.ensure_running()?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let records = self.records(topic, events, keys).await?;
        self.inner.storage.append(topic, records).await
    }

    async fn publish_bytes(&self, topic: &TopicName, key: Option<&str>, value: Bytes) -> Result<Published, BusError> {
        self.ensure_running()?;
        let max = self.inner.config.max_message_bytes;
        if value.len() > max {
            return Err(BusError::MessageTooLarge { size: value.len(), max });
        }
        let partitions = self.inner.partition_count(topic).await?;
        let record = NewRecord {
            partition: self.inner.partition(key, partitions),
            key: key.map(Arc::from),
            payload: Payload::Bytes(value),
        };
        let mut published = self.inner.storage.append(topic, vec![record]).await?;
        Ok(published.remove(0))
    }

    async fn subscribe(&self, subscription: Subscription, handler: Arc<dyn Handler>) -> Result<(), BusError> {
        for topic in &subscription.topics {
            self.inner.partition_count(topic).await?;
        }
        self.inner.lifecycle.subscribe(self, subscription, handler, &self.spawner()).await
    }

    async fn status(&self) -> Result<BusStatus, BusError> {
        let topics = self.inner.storage.describe(None).await?;
        Ok(BusStatus::of(self.backend(), self.is_running(), &topics, None))
    }

    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError> {
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(BusError::InvalidPartitions(partitions));
        }
        self.inner.storage.create_topic(name, partitions).await?;
        self.inner.storage.ensure_topics(name.with_dlq(partitions).split_off(1)).await
    }

    async fn list_topics(&self) -> Result<Vec<TopicDescription>, BusError> {
        self.inner.storage.describe(None).await
    }

    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, BusError> {
        self.inner.describe(name).await
    }

    async fn group_offsets(&self, group: &GroupId, topic: &TopicName) -> Result<Vec<GroupOffset>, BusError> {
        let description = self.inner.describe(topic).await?;
        let committed = self.inner.storage.committed(group, topic).await?;
        Ok(description
            .partitions
            .iter()
            .filter_map(|info| {
                let offset = *committed.get(&info.partition)?;
                Some(GroupOffset { partition: info.partition, offset, lag: info.latest.0.saturating_sub(offset.0) })
            })
            .collect())
    }

    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError> {
        self.inner.storage.delete_group(group).await
    }

    async fn reset_offsets(
        &self,
        group: &GroupId,
        topic: &TopicName,
        to: StartPosition,
    ) -> Result<Vec<GroupOffset>, BusError> {
        let positions = self.inner.resolve(group, topic, to).await?;
        self.inner.storage.commit(group, topic, positions).await?;
        self.group_offsets(group, topic).await
    }
}
