//! `memory`: logs in RAM, for tests and development. Nothing survives the process.

mod storage;

use std::sync::Arc;

pub use storage::MemoryStorage;

use crate::bus::BusError;
use crate::envelope::EventSchema;
use crate::local::{LocalBus, LocalConfig};
use crate::topics::TopicName;

/// The seed's `InMemoryEventBus`.
pub type MemoryBus = LocalBus<MemoryStorage>;

impl LocalBus<MemoryStorage> {
    pub async fn memory(config: LocalConfig) -> Result<Self, BusError> {
        Self::open(MemoryStorage::default(), config).await
    }

    /// Every event of `topic` (of all topics when `None`) with its topic, in append order per
    /// topic, as the seed's `get_events`.
    pub fn get_events(&self, topic: Option<&TopicName>) -> Vec<(TopicName, Arc<EventSchema>)> {
        self.storage().events(topic)
    }
}
