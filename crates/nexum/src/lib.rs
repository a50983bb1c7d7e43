#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`ids`] — typed ids of customers, accounts, transactions, loans, ...
//! - [`domain`] — the aggregates (customer, account, loan, collections case) and their
//!   vocabulary, each rebuilt by folding its stream.
//! - [`events`] — every event type with its topic, version and typed payload; the mapping to the
//!   seed's `EventSchema`, and upcasting of older versions.
//! - [`schemas`] — the JSON Schema of every event type, enforced when events are recorded or
//!   published.
//! - [`bank`] — the operations: decide, then commit events, links and audit atomically.
//! - [`store`] — the event store with its transactional outbox, in three implementations that pass
//!   one suite: `SqliteStore` (embedded), `PostgresStore` (production) and `MemoryStore` (tests).
//! - [`relay`] — publishes the outbox to the bus, in order, at least once.
//! - [`publisher`] — `NexumEventPublisher`, the seed's `on_*` methods.
//! - [`hooks`] — `create_event_enabled_banking_system`.
//! - [`consumer`] — a bus handler that receives typed, upcast events.
//! - [`commands`] — the command format and `NexumCommandHandler`, which carries commands out
//!   exactly once and answers each with its events or a rejection.
//! - [`projections`] — read models (balances, customers, loans, alerts) fed from the bus, in any
//!   order.
//! - [`sagas`] — the loan application and collections sagas, which drive the bank by commands.
//! - [`service`] — all of it running on a bus, as `eventbus serve` runs it.
//! - [`clock`] — the time services read: the system's, or a test's.
//! - [`testing`] — `BankTest`: given / when / then tests of the bank's rules over a
//!   `MemoryStore`.

pub mod bank;
pub mod clock;
pub mod commands;
pub mod consumer;
pub mod domain;
pub mod events;
pub mod hooks;
pub mod ids;
pub mod leadership;
pub mod projections;
pub mod publisher;
pub mod relay;
pub mod sagas;
pub mod schemas;
pub mod service;
pub mod store;
pub mod testing;

pub use bank::{Bank, BankError, Ctx};
pub use commands::{CommandOutcome, NexumCommandHandler};
pub use events::{Causation, NexumEvent, Payload};
pub use hooks::{EventEnabledBank, create_event_enabled_banking_system};
pub use projections::Projections;
pub use publisher::{NexumEventPublisher, PublishError};
pub use relay::{Relay, RelayConfig};
pub use store::{EventStore, SqliteStore, StoreError};
