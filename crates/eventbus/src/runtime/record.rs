//! Records as the backends carry them: what is appended, and what is read back.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::bus::{Offset, Partition, Record, RecordValue};
use crate::envelope::EventSchema;
use crate::topics::TopicName;

/// A message value: an event as published in this process, or bytes read from disk or written
/// by another producer.
#[derive(Clone, Debug)]
pub enum Payload {
    /// An event built in this process; backends that keep events in memory store it as it is.
    Event(Arc<EventSchema>),
    /// An event built in this process with its flat JSON, encoded once, for backends that store
    /// or send bytes.
    Encoded {
        /// The event.
        event: Arc<EventSchema>,
        /// Its flat JSON.
        json: Bytes,
    },
    /// Bytes as stored or received: flat EventSchema JSON, or whatever another producer sent.
    Bytes(Bytes),
    /// Bytes already found not to be an event, with the reason (Kafka decodes with the headers).
    Rejected {
        /// The value as received.
        bytes: Bytes,
        /// Why it is not an event.
        reason: String,
    },
}

/// A message to append.
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// The topic it goes to.
    pub topic: TopicName,
    /// Where the bus put it: murmur2 of the key, or round robin without one.
    pub partition: Partition,
    /// The partition key, if any.
    pub key: Option<Arc<str>>,
    /// The value.
    pub payload: Payload,
}

/// A message read back, with its place and append time.
#[derive(Clone, Debug)]
pub struct StoredRecord {
    /// The partition it was read from.
    pub partition: Partition,
    /// Its offset in that partition.
    pub offset: Offset,
    /// When it was appended.
    pub timestamp: DateTime<Utc>,
    /// The partition key, if any.
    pub key: Option<Arc<str>>,
    /// The value.
    pub payload: Payload,
}

impl StoredRecord {
    /// The record as [`EventBus::read`](crate::EventBus::read) gives it: its value decoded.
    pub(crate) fn into_record(self, topic: &TopicName) -> Record {
        let value = match self.payload {
            Payload::Event(event) | Payload::Encoded { event, .. } => RecordValue::Event(event),
            Payload::Rejected { bytes, reason } => RecordValue::Invalid { bytes, reason },
            Payload::Bytes(bytes) => match EventSchema::from_json(&bytes) {
                Ok(event) => RecordValue::Event(Arc::new(event)),
                Err(error) => RecordValue::Invalid { bytes, reason: error.to_string() },
            },
        };
        Record {
            topic: topic.clone(),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key,
            value,
        }
    }
}
