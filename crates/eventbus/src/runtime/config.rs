//! The settings every backend shares.

use std::time::Duration;

use super::schedule::{DEFAULT_MAX_SCHEDULE_AHEAD, DEFAULT_MAX_SCHEDULED};

/// Kafka's default `message.max.bytes`, about 1 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Records a subscription handles at once unless it says otherwise. A handler that commits to a
/// store with group commit (the bank's) carries out about as many records per disk sync as it has
/// in flight: with 64, commands published by another process into `eventbus serve` went through
/// at 0.61 of the bank's own rate, with 256 at 0.85 (`eventbus-bench serve`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Settings every backend shares: how topics come to exist, how large a message may be, how
/// records are consumed and how scheduled events are held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusConfig {
    /// Create an unknown topic on first publish or subscribe, like Kafka's
    /// `auto.create.topics.enable`. Off by default: a typo then fails loudly.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub default_partitions: u32,
    /// The largest message accepted, in bytes of flat JSON.
    pub max_message_bytes: usize,
    /// Records a subscription handles at once, across its partitions, unless the subscription
    /// sets its own ([`Subscription::with_max_in_flight`](crate::Subscription::with_max_in_flight)).
    /// Records of one key are handled one at a time whatever this is.
    pub max_in_flight: usize,
    /// Event ids each subscription remembers to drop a redelivered event (the last this many
    /// handled). About 100 bytes each; at 5,000 events/s the default covers 20 s.
    pub dedup_window: usize,
    /// Whether this bus delivers scheduled events (`metadata.deliver_at`) when they are due,
    /// while it runs. On by default; a process that only publishes and exits (the CLI's
    /// `publish`) turns it off, and the events it schedules are delivered by a bus that runs it.
    pub run_scheduler: bool,
    /// Scheduled events the scheduler holds, pending; a publish that would schedule more, in a
    /// process that runs the scheduler, is refused. About 1 KB each.
    pub max_scheduled: usize,
    /// How far ahead an event may be scheduled; a later `deliver_at` is refused.
    pub max_schedule_ahead: Duration,
}

/// The default of [`BusConfig::dedup_window`].
pub const DEFAULT_DEDUP_WINDOW: usize = 100_000;

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            auto_create_topics: false,
            default_partitions: 1,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            run_scheduler: true,
            max_scheduled: DEFAULT_MAX_SCHEDULED,
            max_schedule_ahead: DEFAULT_MAX_SCHEDULE_AHEAD,
        }
    }
}
