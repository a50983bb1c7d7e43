//! The settings every backend shares.

/// Kafka's default `message.max.bytes`, about 1 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Records a subscription handles at once unless it says otherwise. A handler that commits to a
/// store with group commit (the bank's) carries out about as many records per disk sync as it has
/// in flight: with 64, commands published by another process into `eventbus serve` went through
/// at 0.61 of the bank's own rate, with 256 at 0.85 (`eventbus-bench serve`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Settings every backend shares: how topics come to exist and how large a message may be.
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
        }
    }
}
