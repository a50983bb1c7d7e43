//! Errors of the Kafka backend, each with what to do about it.

use std::time::Duration;

use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};

use crate::bus::BusError;

/// Errors of the Kafka backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// No broker answered in time. Check `brokers`, the network, and the security settings.
    #[error("cannot reach Kafka at {brokers} within {timeout:?}: {source}")]
    Unreachable {
        /// The bootstrap servers tried.
        brokers: String,
        /// How long the client waited.
        timeout: Duration,
        /// What the client said.
        source: ClientError,
    },
    /// The broker refused to create a topic, e.g. for a replication factor above its broker count.
    #[error("cannot create topic `{topic}`: {source}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        source: RDKafkaErrorCode,
    },
    /// The broker created the topic but its metadata did not show it in time. Try again.
    #[error("topic `{topic}` not visible in metadata after {waited:?}")]
    TopicNotVisible {
        /// The topic.
        topic: String,
        /// How long the client looked.
        waited: Duration,
    },
    /// The broker refused to delete a group, e.g. because it still has live members.
    #[error("cannot delete group `{group}`: {source}")]
    DeleteGroup {
        /// The group.
        group: String,
        /// The broker's error code.
        source: RDKafkaErrorCode,
    },
    /// The broker did not acknowledge a message within `delivery_timeout_ms`.
    #[error("message to `{topic}` not acknowledged: {source}")]
    Delivery {
        /// The topic.
        topic: String,
        /// What the client said.
        source: ClientError,
    },
    /// A partition was not read to the point asked for within `request_timeout_ms`.
    #[error("reading `{topic}` did not finish within {waited:?}")]
    ReadTimeout {
        /// The topic.
        topic: String,
        /// How long the reader waited.
        waited: Duration,
    },
    /// Any other client error.
    #[error("kafka: {0}")]
    Client(#[from] ClientError),
    /// A blocking client call on the blocking pool did not finish: it panicked, or the runtime
    /// is shutting down.
    #[error("kafka client task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<KafkaError> for BusError {
    fn from(error: KafkaError) -> Self {
        BusError::Backend(Box::new(error))
    }
}
