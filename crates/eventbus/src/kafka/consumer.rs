//! The Kafka consumer loop: one rdkafka consumer per subscription, in its group. Each message goes
//! through the shared [`Processor`]; its offset is stored only afterwards, and librdkafka commits
//! stored offsets periodically, on rebalance and on close.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use tokio::task::JoinHandle;

use super::{Kafka, KafkaError};
use crate::bus::{BusError, Offset, Partition, Subscription};
use crate::envelope::{Header, from_binary};
use crate::runtime::{Consumer, Payload, STORAGE_RETRY, Stopped, StoredRecord, wait_or_stop};
use crate::topics::TopicName;

async fn connect(kafka: &Kafka, subscription: &Subscription) -> Result<StreamConsumer, BusError> {
    let consumer: StreamConsumer =
        kafka.config.consumer(subscription.group.as_str()).create().map_err(KafkaError::Client)?;
    let topics: Vec<&str> = subscription.topics.iter().map(TopicName::as_str).collect();
    consumer.subscribe(&topics).map_err(KafkaError::Client)?;
    Ok(consumer)
}

/// Starts the task that runs one subscription until its stop signal.
pub(super) fn spawn(kafka: Arc<Kafka>, consumer: Consumer) -> JoinHandle<()> {
    tokio::spawn(run(kafka, consumer))
}

async fn run(kafka: Arc<Kafka>, consumer: Consumer) {
    let Consumer { subscription, mut processor, mut stop } = consumer;
    let group = subscription.group.clone();
    let consumer = loop {
        match connect(&kafka, &subscription).await {
            Ok(consumer) => break consumer,
            Err(error) => {
                tracing::error!(%group, %error, "Cannot start the Kafka consumer; retrying");
                if wait_or_stop(&mut stop, STORAGE_RETRY).await {
                    return;
                }
            }
        }
    };
    let max = processor.max_message_bytes();
    tracing::info!(%group, "Kafka consumer started");
    loop {
        let received = tokio::select! {
            received = consumer.recv() => received,
            _ = stop.changed() => break,
        };
        let (topic, record) = match received {
            Ok(message) => match record_of(&message, max) {
                Some(found) => found,
                None => continue,
            },
            Err(error) => {
                tracing::warn!(%group, %error, "Kafka consumer error");
                if wait_or_stop(&mut stop, STORAGE_RETRY).await {
                    break;
                }
                continue;
            }
        };
        let (partition, offset) = (record.partition, record.offset);
        match processor.process(&topic, record, &mut stop).await {
            Ok(()) => {
                // librdkafka stores offset + 1, the next offset to read.
                if let Err(error) = consumer.store_offset(topic.as_str(), partition.0 as i32, offset.0 as i64) {
                    // The partition was revoked meanwhile; its new owner reads the message again.
                    tracing::warn!(%topic, %partition, %offset, %error, "Offset not stored");
                }
            }
            Err(Stopped) => break,
        }
    }
    // Closing commits the stored offsets and leaves the group; it blocks, so not on the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    tracing::info!(%group, "Kafka consumer stopped");
}

/// The message as a record. A value of binary- or structured-mode CloudEvents is decoded here,
/// where the headers are; one that cannot be decoded or is too large is kept as bytes with the
/// reason, for the dead-letter topic.
fn record_of(message: &BorrowedMessage<'_>, max: usize) -> Option<(TopicName, StoredRecord)> {
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
