//! `kafka`: the bus on a Kafka cluster through rdkafka (librdkafka).
//!
//! - Publishing waits for the broker's acknowledgement (`acks=all`, idempotent producer) and
//!   partitions with murmur2, so a key lands where the other backends put it.
//! - Messages carry the seed's flat EventSchema JSON as the value and CloudEvents binary-mode
//!   `ce_*` headers; consumers read binary and structured mode.
//! - Consumers store an offset only after the handler is done with the message; librdkafka
//!   commits stored offsets every 500 ms, on rebalance and on close (at least once).
//! - With an outbox directory, publishes are durable on local disk first and a relay sends them
//!   in order, so a broker outage delays events without failing the caller.
//!
//! - With an outbox, the partition counts last seen are kept beside it, so that a bus started
//!   during an outage still takes events for the topics it knew (`known`).
//!
//! Files: `config` (settings and the librdkafka properties they make), `error`, `admin` (topics,
//! metadata, watermarks, group offsets), `consumer` (the consumer loop), `outbox` (the durable
//! outbox and its relay), `known` (the partition counts last seen), `read` (a partition read
//! outside any group).

mod admin;
mod config;
mod consumer;
mod error;
mod known;
mod outbox;
mod read;

pub use config::{KafkaConfig, Secret};
pub use error::KafkaError;
pub use outbox::OutboxError;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::task::JoinHandle;

use crate::bus::{BackendKind, BusError, GroupId, Offset, Partition, Published, TopicDescription};
use crate::envelope::{Header, binary_headers, to_binary};
use crate::runtime::{Backend, Bus, BusConfig, Consumer, GroupCommits, NewRecord, Payload, Position, StoredRecord};
use crate::topics::TopicName;

/// The bus on Kafka. Cheap to clone; clones share the producer and consumers.
pub type KafkaBus = Bus<Kafka>;

impl Bus<Kafka> {
    /// Connects, checks that a broker answers within `request_timeout_ms`, and creates the catalog
    /// topics and their dead-letter topics that are missing. With an outbox that has seen the
    /// cluster before, a broker that does not answer is not fatal: the bus starts on the
    /// partition counts last seen, and events wait in the outbox until a broker answers.
    pub async fn connect(config: KafkaConfig, bus: BusConfig) -> Result<Self, BusError> {
        let kafka = Arc::new(Kafka::new(config).await?);
        if let Err(error) = kafka.ping().await {
            if !kafka.known.as_ref().is_some_and(known::KnownPartitions::any) {
                return Err(error);
            }
            tracing::warn!(
                %error,
                "Kafka does not answer: starting on the partition counts last seen; events wait in the outbox until a broker answers"
            );
        }
        kafka.warm_up_producer();
        let opened = Self::open(Arc::clone(&kafka), bus).await?;
        outbox::spawn(&kafka);
        Ok(opened)
    }

    /// Whether a bus (of this process or another) holds the outbox in `dir` now. A Kafka bus owns
    /// its outbox until it is dropped; another bus on the same directory waits for it up to 10 s,
    /// then is refused with [`OutboxError::InUse`].
    pub fn outbox_in_use(dir: &std::path::Path) -> bool {
        outbox::in_use(dir)
    }
}

/// The Kafka backend: a producer, an admin client, a metadata client and, if configured, the
/// durable local outbox.
pub struct Kafka {
    config: KafkaConfig,
    /// Replaced after a failed delivery: a fresh producer gets a new producer id, which brokers
    /// that cannot resume an idempotent producer's sequence after a restart need.
    producer: RwLock<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    /// Metadata and watermarks; belongs to no group.
    meta: Arc<BaseConsumer>,
    /// Where publishes wait for the broker; `None` sends directly.
    outbox: Option<Arc<outbox::Outbox>>,
    /// The partition counts last seen, kept beside the outbox.
    known: Option<known::KnownPartitions>,
}

/// With an outbox, only its relay produces, and it retries until the broker takes a message.
fn producer_config(config: &KafkaConfig) -> rdkafka::ClientConfig {
    match config.outbox_dir {
        Some(_) => config.relay_producer(),
        None => config.producer(),
    }
}

/// A message ready for the producer.
#[derive(Clone, Debug, PartialEq)]
struct Outgoing {
    key: Option<String>,
    value: Bytes,
    headers: Vec<Header>,
}

impl Outgoing {
    /// The producer's record of this message to `topic`; the producer copies what it keeps.
    fn record<'a>(&'a self, topic: &'a TopicName) -> FutureRecord<'a, str, [u8]> {
        let mut headers = OwnedHeaders::new_with_capacity(self.headers.len());
        for h in &self.headers {
            headers = headers.insert(KafkaHeader { key: &h.name, value: Some(h.value.as_bytes()) });
        }
        let record = FutureRecord::to(topic.as_str()).payload(&self.value[..]).headers(headers);
        match &self.key {
            Some(key) => record.key(key.as_str()),
            None => record,
        }
    }
}

impl Kafka {
    async fn new(config: KafkaConfig) -> Result<Self, BusError> {
        let producer: FutureProducer = producer_config(&config).create().map_err(KafkaError::Client)?;
        let admin: AdminClient<DefaultClientContext> = config.client().create().map_err(KafkaError::Client)?;
        let meta: BaseConsumer = config.client().create().map_err(KafkaError::Client)?;
        let (outbox, known) = match &config.outbox_dir {
            Some(dir) => (Some(Arc::new(outbox::Outbox::open(dir).await?)), Some(known::KnownPartitions::load(dir))),
            None => (None, None),
        };
        Ok(Self { config, producer: RwLock::new(producer), admin, meta: Arc::new(meta), outbox, known })
    }

    /// Runs a blocking client call on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, BusError>
    where
        T: Send + 'static,
        F: FnOnce(&BaseConsumer) -> Result<T, BusError> + Send + 'static,
    {
        let meta = Arc::clone(&self.meta);
        tokio::task::spawn_blocking(move || f(&meta)).await.map_err(KafkaError::Task)?
    }

    fn producer(&self) -> FutureProducer {
        self.producer.read().expect("producer lock").clone()
    }

    /// Connects the producer now, in the background: an idempotent producer connects and
    /// acquires its producer id only when its first message comes, which cost the first publish
    /// of a process about 0.8 s (librdkafka's timers).
    fn warm_up_producer(&self) {
        let producer = self.producer();
        let timeout = self.config.request_timeout();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = producer.client().fetch_metadata(None, timeout) {
                tracing::debug!(%error, "The producer could not connect ahead of the first publish");
            }
        });
    }

    /// Starts over with a new producer (and producer id) after deliveries failed.
    fn renew_producer(&self) {
        match producer_config(&self.config).create::<FutureProducer>() {
            Ok(producer) => {
                *self.producer.write().expect("producer lock") = producer;
                self.warm_up_producer();
            }
            Err(error) => tracing::error!(%error, "Cannot create a new Kafka producer; keeping the old one"),
        }
    }

    /// Sends messages in order, all in flight at once, and waits for every acknowledgement.
    async fn send_each(&self, messages: Vec<(TopicName, Outgoing)>) -> Vec<Result<Published, BusError>> {
        let timeout = Duration::from_millis(self.config.delivery_timeout_ms);
        let producer = self.producer();
        let sends = messages.iter().map(|(topic, m)| producer.send(m.record(topic), timeout));
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
}

/// The message for a record: an event's flat JSON with its CloudEvents headers, or raw bytes as
/// they were given.
fn outgoing(record: NewRecord) -> Result<Outgoing, BusError> {
    let key = record.key.map(|k| k.to_string());
    Ok(match record.payload {
        Payload::Event(event) => {
            let (headers, value) = to_binary(&event)?;
            Outgoing { key, value: Bytes::from(value), headers }
        }
        Payload::Encoded { event, json } => Outgoing { key, value: json, headers: binary_headers(&event)? },
        Payload::Bytes(bytes) | Payload::Rejected { bytes, .. } => Outgoing { key, value: bytes, headers: Vec::new() },
    })
}

#[async_trait]
impl Backend for Kafka {
    fn kind(&self) -> BackendKind {
        BackendKind::Kafka
    }

    fn stores_bytes(&self) -> bool {
        true
    }

    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError> {
        self.create(name, partitions).await
    }

    async fn ensure_topics(&self, topics: Vec<(TopicName, u32)>) -> Result<(), BusError> {
        self.ensure(topics).await
    }

    async fn partition_count(&self, name: &TopicName) -> Result<Option<u32>, BusError> {
        // Seen at this bus's start (which reads every topic's count) or since: no round trip.
        if let Some(n) = self.known.as_ref().and_then(|known| known.get(name.as_str())) {
            return Ok(Some(n));
        }
        Ok(self.metadata_topics().await?.get(name.as_str()).copied())
    }

    async fn describe(&self, name: Option<&TopicName>) -> Result<Vec<TopicDescription>, BusError> {
        self.watermarks(name).await
    }

    /// Delivers records through the outbox if there is one (an outage then yields `Published`
    /// without an offset once `delivery_timeout_ms` passes), else directly.
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Published>, BusError> {
        // Until the broker acknowledges, a keyed event is where its key maps; an unkeyed one is
        // placed by the producer and reads partition 0.
        let expected: Vec<Partition> =
            records.iter().map(|r| if r.key.is_some() { r.partition } else { Partition(0) }).collect();
        let tagged = records
            .into_iter()
            .map(|record| Ok((record.topic.clone(), outgoing(record)?)))
            .collect::<Result<Vec<_>, BusError>>()?;
        let Some(outbox) = &self.outbox else {
            return self.send_each(tagged).await.into_iter().collect();
        };
        let offsets = outbox.append(tagged).await?;
        let timeout = Duration::from_millis(self.config.delivery_timeout_ms);
        let acknowledged = outbox.wait(&offsets, timeout).await;
        Ok(acknowledged
            .into_iter()
            .zip(expected)
            .map(|(published, partition)| published.unwrap_or(Published::pending(partition)))
            .collect())
    }

    async fn offsets_for_time(
        &self,
        topic: &TopicDescription,
        time: DateTime<Utc>,
    ) -> Result<HashMap<Partition, Offset>, BusError> {
        self.offsets_at(topic, time.timestamp_millis()).await
    }

    async fn committed(
        &self,
        group: &GroupId,
        topic: &TopicDescription,
    ) -> Result<HashMap<Partition, Position>, BusError> {
        self.committed_offsets(group, topic).await
    }

    async fn commit(
        &self,
        group: &GroupId,
        topic: &TopicName,
        positions: Vec<(Partition, Position)>,
    ) -> Result<(), BusError> {
        self.commit_offsets(group, topic, positions).await
    }

    async fn groups(&self, max: usize) -> Result<GroupCommits, BusError> {
        self.list_groups(max).await
    }

    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError> {
        self.remove_group(group).await
    }

    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BusError> {
        self.read_partition(topic, partition, from, max).await
    }

    fn spawn_consumer(self: Arc<Self>, consumer: Consumer) -> JoinHandle<()> {
        consumer::spawn(self, consumer)
    }

    /// Flushes the producer for up to `request_timeout_ms`: what it holds is sent before the bus
    /// reports stopped. With an outbox, what the broker did not take by then is not lost: it
    /// waits on disk and goes out at the next start.
    async fn flush(&self) -> Result<(), BusError> {
        let producer = self.producer();
        let timeout = self.config.request_timeout();
        let flushed = tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, timeout))
            .await
            .map_err(KafkaError::Task)?;
        match (flushed, &self.outbox) {
            (Ok(()), _) => Ok(()),
            (Err(error), Some(outbox)) => {
                tracing::warn!(%error, backlog = outbox.backlog(), "Stopped before the broker took everything; the rest waits in the outbox");
                Ok(())
            }
            (Err(error), None) => Err(KafkaError::Client(error).into()),
        }
    }

    async fn outbox_backlog(&self) -> Result<Option<u64>, BusError> {
        match &self.outbox {
            Some(outbox) => Ok(Some(outbox.backlog())),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
