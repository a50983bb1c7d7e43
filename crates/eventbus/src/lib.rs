#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! The modules depend on each other in one direction, from the leaves down to Kafka:
//!
//! - leaves:
//!   - [`envelope`]: the seed's `EventSchema`, CloudEvents 1.0 (structured JSON and Kafka binary
//!     headers), masking of personal data.
//!   - [`money`]: decimal amounts with an ISO 4217 currency.
//!   - [`topics`]: topic names and the catalog.
//!   - `partitioner`: Kafka's murmur2 rule.
//! - `bus`: the [`EventBus`] trait and its vocabulary (ids, subscriptions, messages, status,
//!   [`BusError`]). It names no backend.
//! - [`dlq`]: the records of dead-letter topics, the state folded from them, and what operators
//!   do with it (list, show, redrive, discard).
//! - `runtime`: what every backend shares: [`BusConfig`], the records, the [`Backend`] trait, the
//!   rules of the bus written once over any backend ([`Bus`]), the processor (retry, dead letters,
//!   dedup) and the lifecycle.
//! - `local`: the [`Storage`] the local backends share, their polling consumer, and one folder per
//!   storage: `memory`, `log`, `embedded`.
//! - `kafka` (feature `kafka`): [`KafkaBus`] on rdkafka, fronted by a durable local outbox.
//! - [`trace`]: the `publish` and `handle` spans, linked through the events' `traceparent`.

mod bus;
pub mod dlq;
pub mod envelope;
#[cfg(feature = "kafka")]
mod kafka;
pub mod liveness;
mod local;
pub mod money;
mod partitioner;
pub mod private;
mod runtime;
pub mod topics;
pub mod trace;

pub use bus::{
    BackendKind, BusError, BusStatus, DeadLetterPolicy, EventBus, GroupDescription, GroupId, GroupOffset, GroupTopic,
    Handler, HandlerError, MAX_GROUPS, Message, Offset, Partition, PartitionInfo, Publication, Published, Record,
    RecordValue, RetryPolicy, StartPosition, Subscription, TopicDescription, handler_fn,
};
pub use dlq::DEAD_LETTERED;
pub use envelope::{EventId, EventSchema, EventType};
#[cfg(feature = "kafka")]
pub use kafka::{Kafka, KafkaBus, KafkaConfig, KafkaError, OutboxError, Secret};
pub use local::embedded::{EmbeddedBus, EmbeddedConfig, EmbeddedError, EmbeddedStorage, SyncMode};
pub use local::log::{LogBus, LogStorage};
pub use local::memory::{MemoryBus, MemoryStorage};
pub use local::{PartitionEnds, Storage};
pub use money::{Currency, Money, MoneyError};
pub use partitioner::{murmur2, partition_for_key};
pub use runtime::{
    Backend, Bus, BusConfig, Consumer, DEFAULT_DEDUP_WINDOW, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_SCHEDULE_AHEAD, DEFAULT_MAX_SCHEDULED, DELIVER_AT, Dispatcher, MAX_FINISHED_TEXT, NewRecord,
    PAST_GRACE, Payload, Position, Processor, SCHEDULE_TOPIC, SCHEDULED_FOR, ScheduleError, StoredRecord,
};
pub use topics::{Topic, TopicName};
