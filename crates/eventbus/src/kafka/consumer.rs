//! The Kafka consumer loop: one rdkafka consumer per subscription, in its group. Records go to
//! the shared [`Dispatcher`](crate::runtime::Dispatcher), which handles them concurrently with
//! per-key order. The positions it reports are stored with `rd_kafka_offsets_store`: the
//! watermark as the offset, and the finished records above it as the commit's metadata.
//! librdkafka commits what is stored every 500 ms, on rebalance and on close (at least once).
//!
//! Rebalances reach the loop through the consumer's context, and the loop applies them before
//! any record fetched after them: a partition revoked is no longer committed by this consumer,
//! and a partition assigned resumes at its committed position (finished records skipped).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Kafka, KafkaError};
use crate::GroupId;
use crate::bus::{BusError, Offset, Partition, Subscription};
use crate::envelope::{Header, from_binary};
use crate::runtime::{Consumer, Dispatcher, Payload, Position, STORAGE_RETRY, StoredRecord, wait_or_stop};
use crate::topics::TopicName;

/// Rebalance events waiting for the loop, at most; the loop takes them before every record.
const REBALANCE_QUEUE: usize = 1024;

/// A change of the partitions this consumer reads.
#[derive(Debug)]
enum Rebalanced {
    Assigned(Vec<(TopicName, Partition)>),
    Revoked(Vec<(TopicName, Partition)>),
}

/// Hands rebalances over to the consumer loop.
struct Context {
    rebalances: mpsc::Sender<Rebalanced>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.send(Rebalanced::Revoked(partitions_of(partitions)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => self.send(Rebalanced::Assigned(partitions_of(partitions))),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "Kafka rebalance failed"),
        }
    }
}

impl Context {
    fn send(&self, rebalanced: Rebalanced) {
        if self.rebalances.try_send(rebalanced).is_err() {
            tracing::error!("Rebalance events are not taken in; the consumer resumes partitions from their commits");
        }
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<(TopicName, Partition)> {
    list.elements()
        .iter()
        .filter_map(|e| Some((TopicName::new(e.topic()).ok()?, Partition(u32::try_from(e.partition()).ok()?))))
        .collect()
}

type KafkaConsumer = StreamConsumer<Context>;

fn connect(
    kafka: &Kafka,
    subscription: &Subscription,
) -> Result<(Arc<KafkaConsumer>, mpsc::Receiver<Rebalanced>), BusError> {
    let (rebalances, events) = mpsc::channel(REBALANCE_QUEUE);
    let mut config = kafka.config.consumer(subscription.group.as_str());
    if let Some(instance) = &kafka.config.group_instance_id {
        config.set("group.instance.id", format!("{instance}.{}", subscription.group));
    }
    let consumer: KafkaConsumer = config.create_with_context(Context { rebalances }).map_err(KafkaError::Client)?;
    let topics: Vec<&str> = subscription.topics.iter().map(TopicName::as_str).collect();
    consumer.subscribe(&topics).map_err(KafkaError::Client)?;
    Ok((Arc::new(consumer), events))
}

/// Starts the task that runs one subscription until its stop signal.
pub(super) fn spawn(kafka: Arc<Kafka>, consumer: Consumer) -> JoinHandle<()> {
    tokio::spawn(run(kafka, consumer))
}

async fn run(kafka: Arc<Kafka>, consumer: Consumer) {
    let Consumer { subscription, mut dispatcher, mut stop } = consumer;
    let group = subscription.group.clone();
    let (consumer, mut rebalances) = loop {
        match connect(&kafka, &subscription) {
            Ok(connected) => break connected,
            Err(error) => {
                tracing::error!(%group, %error, "Cannot start the Kafka consumer; retrying");
                if wait_or_stop(&mut stop, STORAGE_RETRY).await {
                    return;
                }
            }
        }
    };
    let timeout = kafka.config.request_timeout();
    let max = dispatcher.max_message_bytes();
    // Partitions whose committed position this consumer has resumed since they were assigned.
    let mut resumed: HashSet<(TopicName, Partition)> = HashSet::new();
    tracing::info!(%group, "Kafka consumer started");
    while !*stop.borrow() {
        tokio::select! {
            received = consumer.recv(), if dispatcher.room() > 0 => {
                // Rebalances served by the poll that fetched this record come first.
                while let Ok(rebalanced) = rebalances.try_recv() {
                    apply(&group, rebalanced, &mut dispatcher, &mut resumed);
                }
                match received {
                    Ok(message) => {
                        if let Some((topic, record)) = record_of(&message, max) {
                            drop(message);
                            let place = (topic.clone(), record.partition);
                            if !resumed.contains(&place) {
                                let position = committed(&consumer, &topic, record.partition, timeout).await;
                                let position = position.unwrap_or(Position::at(record.offset));
                                resumed.insert(place);
                                // A fetch that began past the group's commit (a broker that
                                // answered the assignment with another offset) goes back to it,
                                // or the records between would never be handled.
                                let back = position.next;
                                dispatcher.resume(&topic, record.partition, position);
                                if record.offset > back && seek(&consumer, &topic, record.partition, back, timeout).await {
                                    continue;
                                }
                            }
                            dispatcher.push(&topic, record);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%group, %error, "Kafka consumer error");
                        wait_or_stop(&mut stop, STORAGE_RETRY).await;
                    }
                }
            }
            Some(rebalanced) = rebalances.recv() => apply(&group, rebalanced, &mut dispatcher, &mut resumed),
            () = dispatcher.finished(), if dispatcher.is_busy() => {}
            _ = stop.changed() => {}
        }
        store(&consumer, &mut dispatcher, &resumed);
    }
    // Stopping: let the records in flight end, store what they finished; closing commits it.
    dispatcher.drain().await;
    store(&consumer, &mut dispatcher, &resumed);
    // Closing leaves the group; it blocks, so not on the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    tracing::info!(%group, "Kafka consumer stopped");
}

fn apply(
    group: &GroupId,
    rebalanced: Rebalanced,
    dispatcher: &mut Dispatcher,
    resumed: &mut HashSet<(TopicName, Partition)>,
) {
    tracing::info!(%group, ?rebalanced, "Kafka group rebalanced");
    match rebalanced {
        // Resumed from its commit when its first record comes.
        Rebalanced::Assigned(partitions) => {
            dispatcher.joined();
            for place in partitions {
                resumed.remove(&place);
            }
        }
        // Its records in flight finish, but its new owner commits it from now on.
        Rebalanced::Revoked(partitions) => {
            for (topic, partition) in partitions {
                dispatcher.forget(&topic, partition);
                resumed.remove(&(topic, partition));
            }
        }
    }
}

/// The group's committed position in one partition, finished records included; `None` if the
/// broker does not say within `timeout` (the partition then resumes where the consumer is).
async fn committed(
    consumer: &Arc<KafkaConsumer>,
    topic: &TopicName,
    partition: Partition,
    timeout: Duration,
) -> Option<Position> {
    let (consumer, name) = (Arc::clone(consumer), topic.to_string());
    let fetched = tokio::task::spawn_blocking(move || {
        let mut list = TopicPartitionList::new();
        list.add_partition(&name, partition.0 as i32);
        let committed = consumer.committed_offsets(list, timeout).ok()?;
        let element = committed.find_partition(&name, partition.0 as i32)?;
        let KafkaOffset::Offset(offset) = element.offset() else { return None };
        Some(Position::with_finished_text(Offset(offset.max(0) as u64), element.metadata()))
    })
    .await;
    fetched.ok().flatten()
}

/// Moves the fetch position of one assigned partition back to `offset`; records fetched before
/// are dropped by librdkafka. False (logged) if it could not.
async fn seek(
    consumer: &Arc<KafkaConsumer>,
    topic: &TopicName,
    partition: Partition,
    offset: Offset,
    timeout: Duration,
) -> bool {
    tracing::info!(%topic, partition = partition.0, offset = offset.0, "The fetch began past the commit; seeking back");
    let (consumer, name) = (Arc::clone(consumer), topic.to_string());
    let sought = tokio::task::spawn_blocking(move || {
        consumer.seek(&name, partition.0 as i32, KafkaOffset::Offset(offset.0 as i64), timeout)
    })
    .await;
    match sought {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%topic, partition = partition.0, %error, "Cannot seek back to the commit");
            false
        }
        Err(error) => {
            tracing::warn!(%topic, partition = partition.0, %error, "The seek task failed");
            false
        }
    }
}

/// Stores the positions that changed, for librdkafka to commit: the watermark as the offset, the
/// finished records above it as the metadata.
fn store(consumer: &KafkaConsumer, dispatcher: &mut Dispatcher, resumed: &HashSet<(TopicName, Partition)>) {
    let positions = dispatcher.positions();
    if positions.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition, position) in positions {
        if !resumed.contains(&(topic.clone(), partition)) {
            continue;
        }
        let mut element = list.add_partition(topic.as_str(), partition.0 as i32);
        if element.set_offset(KafkaOffset::Offset(position.next.0 as i64)).is_ok() {
            element.set_metadata(position.finished_text());
        }
    }
    if let Err(error) = consumer.store_offsets(&list) {
        // A partition revoked meanwhile: its new owner reads its records again.
        tracing::warn!(%error, "Offsets not stored");
    }
}

/// The message as a record. A value of binary- or structured-mode CloudEvents is decoded here,
/// where the headers are; one that cannot be decoded or is too large is kept as bytes with the
/// reason, for the dead-letter topic.
pub(super) fn record_of(message: &BorrowedMessage<'_>, max: usize) -> Option<(TopicName, StoredRecord)> {
    let topic = TopicName::new(message.topic()).ok()?;
    let headers: Vec<Header> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|h| {
                    let value = std::str::from_utf8(h.value?).ok()?;
                    Some(Header { name: h.key.to_owned(), value: value.to_owned() })
                })
                .collect()
        })
        .unwrap_or_default();
    let value = message.payload().unwrap_or_default();
    let payload = if value.len() > max {
        Payload::Bytes(Bytes::copy_from_slice(value))
    } else {
        match from_binary(&headers, value) {
            Ok(event) => Payload::Event(Arc::new(event)),
            Err(error) => Payload::Rejected { bytes: Bytes::copy_from_slice(value), reason: error.to_string() },
        }
    };
    let millis = message.timestamp().to_millis().unwrap_or_else(|| Utc::now().timestamp_millis());
    let record = StoredRecord {
        partition: Partition(message.partition() as u32),
        offset: Offset(message.offset().max(0) as u64),
        timestamp: Utc.timestamp_millis_opt(millis).single().unwrap_or_default(),
        key: message.key().map(|k| Arc::from(String::from_utf8_lossy(k).as_ref())),
        payload,
    };
    Some((topic, record))
}
