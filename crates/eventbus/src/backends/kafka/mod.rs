//! `kafka`: the bus on a Kafka cluster through rdkafka (librdkafka).
//!
//! - Publishing waits for the broker's acknowledgement (`acks=all`, idempotent producer) and
//!   partitions with murmur2, so a key lands where the other backends put it.
//! - Messages carry the seed's flat EventSchema JSON as the value and CloudEvents binary-mode
//!   `ce_*` headers; consumers read binary and structured mode.
//! - Consumers store an offset only after the handler is done with the message; librdkafka
//!   commits stored offsets every 500 ms, on rebalance and on close (at least once).

mod admin;
mod config;
mod consumer;
mod outbox;

pub use config::{KafkaConfig, Secret};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::{
    BackendKind, BusError, BusStatus, EventBus, GroupId, GroupOffset, Handler, Offset, Partition, Published,
    StartPosition, Subscription, TopicDescription,
};
use crate::envelope::{EventSchema, Header, to_binary};
use crate::lifecycle::Lifecycle;
use crate::local::LocalConfig;
use crate::processor::DeadLetterSink;
use crate::topics::{DLQ_PARTITIONS, MAX_PARTITIONS, Topic, TopicName};

/// Errors of the Kafka backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// No broker answered in time. Check `brokers`, the network, and the security settings.
    #[error("cannot reach Kafka at {brokers} within {timeout:?}: {source}")]
    Unreachable { brokers: String, timeout: Duration, source: rdkafka::error::KafkaError },
    /// The broker refused to create a topic.
    #[error("cannot create topic `{topic}`: {reason}")]
    CreateTopic { topic: String, reason: String },
    /// The broker refused to delete a group, e.g. because it still has live members.
    #[error("cannot delete group `{group}`: {reason}")]
    DeleteGroup { group: String, reason: String },
    /// The broker did not acknowledge a message within `delivery_timeout_ms`.
    #[error("message to `{topic}` not acknowledged: {source}")]
    Delivery { topic: String, source: rdkafka::error::KafkaError },
    /// Any other client error.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// A blocking client call could not run.
    #[error("kafka client task failed: {0}")]
    Task(String),
}

/// The bus on Kafka. Cheap to clone; clones share the producer and consumers.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: KafkaConfig,
    local: LocalConfig,
    /// Replaced after a failed delivery: a fresh producer gets a new producer id, which brokers
    /// that cannot resume an idempotent producer's sequence after a restart need.
    producer: RwLock<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    /// Metadata and watermarks; belongs to no group.
    meta: Arc<BaseConsumer>,
    partitions: RwLock<HashMap<TopicName, u32>>,
    lifecycle: Lifecycle,
    /// Where publishes wait for the broker; `None` sends directly.
    outbox: Option<outbox::Outbox>,
}

impl KafkaBus {
    /// Connects, checks that a broker answers within `request_timeout_ms`, and creates the catalog
    /// topics and their dead-letter topics that are missing.
    pub async fn connect(config: KafkaConfig, local: LocalConfig) -> Result<Self, BusError> {
        let producer: FutureProducer = config.producer().create().map_err(KafkaError::Client)?;
        let admin: AdminClient<DefaultClientContext> = config.client().create().map_err(KafkaError::Client)?;
        let meta: BaseConsumer = config.client().create().map_err(KafkaError::Client)?;
        let outbox = match &config.outbox_dir {
            Some(dir) => Some(outbox::Outbox::open(dir).await?),
            None => None,
        };
        let inner = Arc::new(Inner {
            config,
            local,
            producer: RwLock::new(producer),
            admin,
            meta: Arc::new(meta),
            partitions: RwLock::default(),
            lifecycle: Lifecycle::new(),
            outbox,
        });
        inner.ping().await?;
        inner.ensure_topics(Topic::bootstrap().collect()).await?;
        outbox::spawn(&inner);
        Ok(Self { inner })
    }

    /// Events waiting in the local outbox for the broker; answers while the broker is down.
    pub async fn outbox_backlog(&self) -> Result<u64, BusError> {
        match &self.inner.outbox {
            Some(outbox) => outbox.backlog().await,
            None => Ok(0),
        }
    }

    fn spawner(&self) -> impl Fn(Subscription, Arc<dyn Handler>, watch::Receiver<bool>) -> JoinHandle<()> + Sync {
        let inner = Arc::clone(&self.inner);
        move |subscription, handler, stop| tokio::spawn(consumer::run(Arc::clone(&inner), subscription, handler, stop))
    }

    fn ensure_running(&self) -> Result<(), BusError> {
        self.inner.lifecycle.ensure_running()
    }
}

/// A message ready for the producer.
struct Outgoing {
    key: Option<String>,
    value: Vec<u8>,
    headers: Vec<Header>,
}

impl Inner {
    /// Runs a blocking client call on the blocking pool.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, BusError>
    where
        T: Send + 'static,
        F: FnOnce(&BaseConsumer) -> Result<T, BusError> + Send + 'static,
    {
        let meta = Arc::clone(&self.meta);
        tokio::task::spawn_blocking(move || f(&meta)).await.map_err(|e| KafkaError::Task(e.to_string()))?
    }

    fn encode(&self, mut event: EventSchema, key: Option<String>) -> Result<Outgoing, BusError> {
        event.complete();
        let key = key.or_else(|| event.default_key().map(str::to_owned));
        let (headers, value) = to_binary(&event)?;
        let max = self.local.max_message_bytes;
        if value.len() > max {
            return Err(BusError::MessageTooLarge { size: value.len(), max });
        }
        Ok(Outgoing { key, value, headers })
    }

    fn producer(&self) -> FutureProducer {
        self.producer.read().expect("producer lock").clone()
    }

    /// Starts over with a new producer (and producer id) after deliveries failed.
    fn renew_producer(&self) {
        match self.config.producer().create::<FutureProducer>() {
            Ok(producer) => *self.producer.write().expect("producer lock") = producer,
            Err(error) => tracing::error!(%error, "Cannot create a new Kafka producer; keeping the old one"),
        }
    }

    /// Sends messages in order, all in flight at once, and waits for every acknowledgement.
    async fn send_each(&self, messages: Vec<(TopicName, Outgoing)>) -> Vec<Result<Published, BusError>> {
        let timeout = Duration::from_millis(self.config.delivery_timeout_ms);
        let producer = self.producer();
        let sends = messages.iter().map(|(topic, m)| {
            let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
            for h in &m.headers {
                headers = headers.insert(KafkaHeader { key: &h.name, value: Some(h.value.as_bytes()) });
            }
            let mut record = FutureRecord::<str, [u8]>::to(topic.as_str()).payload(&m.value).headers(headers);
            if let Some(key) = &m.key {
                record = record.key(key.as_str());
            }
            producer.send(record, timeout)
        });
        let results = futures::future::join_all(sends).await;
        results
            .into_iter()
            .zip(&messages)
            .map(|(result, (topic, _))| match result {
                Ok(delivery) => Ok(Published::at(Partition(delivery.partition as u32), Offset(delivery.offset as u64))),
                Err((source, _)) => Err(KafkaError::Delivery { topic: topic.to_string(), source }.into()),
            })
            .collect()
    }

    /// Delivers messages to `topic`: through the outbox if there is one (an outage then yields
    /// `Published` without an offset once `delivery_timeout_ms` passes), else directly.
    async fn deliver(&self, topic: &TopicName, messages: Vec<Outgoing>) -> Result<Vec<Published>, BusError> {
        let partitions = self.partition_count(topic).await?;
        let Some(outbox) = &self.outbox else {
            let tagged = messages.into_iter().map(|m| (topic.clone(), m)).collect();
            return self.send_each(tagged).await.into_iter().collect();
        };
        let expected: Vec<Partition> = messages
            .iter()
            .map(|m| m.key.as_ref().map_or(Partition(0), |k| crate::partition_for_key(k.as_bytes(), partitions)))
            .collect();
        let offsets = outbox.append(messages.into_iter().map(|m| (topic.clone(), m)).collect()).await?;
        let timeout = Duration::from_millis(self.config.delivery_timeout_ms);
        let acknowledged = outbox.wait(&offsets, timeout).await;
        Ok(acknowledged
            .into_iter()
            .zip(expected)
            .map(|(published, partition)| published.unwrap_or(Published { partition, offset: None }))
            .collect())
    }
}

#[async_trait]
impl DeadLetterSink for Inner {
    async fn dead_letter(&self, topic: &TopicName, key: Option<Arc<str>>, letter: EventSchema) -> Result<(), BusError> {
        let dlq = topic.dlq();
        if self.partition_count(&dlq).await.is_err() {
            self.ensure_topics(vec![(dlq.clone(), DLQ_PARTITIONS)]).await?;
        }
        let message = self.encode(letter, key.map(|k| k.to_string()))?;
        self.deliver(&dlq, vec![message]).await.map(drop)
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    fn backend(&self) -> BackendKind {
        BackendKind::Kafka
    }

    async fn start(&self) -> Result<(), BusError> {
        if self.inner.lifecycle.start(&self.spawner()).await {
            tracing::info!(brokers = %self.inner.config.brokers, "Kafka event bus started");
        }
        Ok(())
    }

    /// Stops the consumers (they commit what they stored) and flushes the producer.
    async fn stop(&self) -> Result<(), BusError> {
        if !self.inner.lifecycle.stop().await {
            return Ok(());
        }
        let producer = self.inner.producer();
        let timeout = self.inner.config.request_timeout();
        tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, timeout))
            .await
            .map_err(|e| KafkaError::Task(e.to_string()))?
            .map_err(KafkaError::Client)?;
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
        if let Some(keys) = keys.as_ref().filter(|keys| keys.len() != events.len()) {
            return Err(BusError::KeyCountMismatch { keys: keys.len(), events: events.len() });
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = keys.map(Vec::into_iter);
        let messages = events
            .into_iter()
            .map(|event| self.inner.encode(event, keys.as_mut().and_then(Iterator::next)))
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.deliver(topic, messages).await
    }

    async fn publish_bytes(&self, topic: &TopicName, key: Option<&str>, value: Bytes) -> Result<Published, BusError> {
        self.ensure_running()?;
        let max = self.inner.local.max_message_bytes;
        if value.len() > max {
            return Err(BusError::MessageTooLarge { size: value.len(), max });
        }
        let message = Outgoing { key: key.map(str::to_owned), value: value.to_vec(), headers: Vec::new() };
        let mut published = self.inner.deliver(topic, vec![message]).await?;
        Ok(published.remove(0))
    }

    async fn subscribe(&self, subscription: Subscription, handler: Arc<dyn Handler>) -> Result<(), BusError> {
        for topic in &subscription.topics {
            self.inner.partition_count(topic).await?;
        }
        self.inner.lifecycle.subscribe(self, subscription, handler, &self.spawner()).await
    }

    async fn status(&self) -> Result<BusStatus, BusError> {
        let topics = self.inner.describe(None).await?;
        let backlog = match &self.inner.outbox {
            Some(outbox) => Some(outbox.backlog().await?),
            None => None,
        };
        Ok(BusStatus::of(BackendKind::Kafka, self.is_running(), &topics, backlog))
    }

    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError> {
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(BusError::InvalidPartitions(partitions));
        }
        self.inner.create_topic(name, partitions).await?;
        self.inner.ensure_topics(name.with_dlq(partitions).split_off(1)).await
    }

    async fn list_topics(&self) -> Result<Vec<TopicDescription>, BusError> {
        self.inner.describe(None).await
    }

    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, BusError> {
        self.inner.partition_count(name).await?;
        self.inner.describe(Some(name)).await?.pop().ok_or_else(|| BusError::UnknownTopic(name.clone()))
    }

    async fn group_offsets(&self, group: &GroupId, topic: &TopicName) -> Result<Vec<GroupOffset>, BusError> {
        self.inner.group_offsets(group, topic).await
    }

    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError> {
        self.inner.delete_group(group).await
    }

    async fn reset_offsets(
        &self,
        group: &GroupId,
        topic: &TopicName,
        to: StartPosition,
    ) -> Result<Vec<GroupOffset>, BusError> {
        let positions = self.inner.resolve(group, topic, to).await?;
        self.inner.commit(group, topic, positions).await?;
        self.inner.group_offsets(group, topic).await
    }
}

#[cfg(test)]
mod tests;
