//! The settings every backend shares.

/// Kafka's default `message.max.bytes`, about 1 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

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
}

impl Default for BusConfig {
    fn default() -> Self {
        Self { auto_create_topics: false, default_partitions: 1, max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES }
    }
}
