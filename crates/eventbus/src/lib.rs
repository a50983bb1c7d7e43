#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`envelope`]: the seed's `EventSchema`, CloudEvents 1.0 (structured JSON and Kafka binary
//!   headers), masking of personal data.
//! - [`money`]: decimal amounts with an ISO 4217 currency.
//! - [`topics`]: topic names and the catalog.
//! - `bus`: the [`EventBus`] trait and its types.
//! - `partitioner`: Kafka's murmur2 rule.
//! - `storage`, `local`, `consumer`: the engine under the local backends: partitioned logs, the
//!   bus over them, and the consumer runtime (groups, retry, dead letters, dedup).
//! - [`backends`]: `memory`, `log` and `embedded`, one folder each.

pub mod backends;
mod bus;
mod consumer;
pub mod envelope;
mod lifecycle;
mod local;
pub mod money;
mod partitioner;
mod processor;
mod storage;
pub mod topics;

pub use backends::embedded::{EmbeddedBus, EmbeddedConfig, EmbeddedError, SyncMode};
#[cfg(feature = "kafka")]
pub use backends::kafka::{KafkaBus, KafkaConfig, KafkaError, Secret};
pub use backends::log::LogBus;
pub use backends::memory::MemoryBus;
pub use bus::{
    BackendKind, BusError, BusStatus, EventBus, GroupId, GroupOffset, Handler, HandlerError, Message, Offset,
    Partition, PartitionInfo, Published, RetryPolicy, StartPosition, Subscription, TopicDescription, handler_fn,
};
pub use envelope::{EventId, EventSchema, EventType};
pub use local::{DEFAULT_MAX_MESSAGE_BYTES, LocalBus, LocalConfig};
pub use money::{Currency, Money, MoneyError};
pub use partitioner::{murmur2, partition_for_key};
pub use processor::DEAD_LETTERED;
pub use topics::{Topic, TopicName};
