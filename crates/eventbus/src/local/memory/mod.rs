//! `memory`: logs in RAM, for tests and development. Nothing survives the process.

mod storage;

use std::sync::Arc;

pub use storage::MemoryStorage;

use crate::bus::BusError;
use crate::envelope::EventSchema;
use crate::runtime::{Bus, BusConfig};
use crate::topics::TopicName;

/// The seed's `InMemoryEventBus`.
pub type MemoryBus = Bus<MemoryStorage>;

impl Bus<MemoryStorage> {
    /// A memory bus that keeps every event.
    pub async fn memory(config: BusConfig) -> Result<Self, BusError> {
        Self::open(Arc::new(MemoryStorage::default()), config).await
    }

    /// A memory bus that keeps the last `max_per_partition` events of each partition, like a
    /// size-based retention: memory stays bounded under a sustained load.
    pub async fn memory_bounded(config: BusConfig, max_per_partition: usize) -> Result<Self, BusError> {
        Self::open(Arc::new(MemoryStorage::new(Some(max_per_partition.max(1)))), config).await
    }

    /// Every event of `topic` (of all topics when `None`) with its topic, in append order per
    /// topic, as the seed's `get_events`.
    pub fn get_events(&self, topic: Option<&TopicName>) -> Vec<(TopicName, Arc<EventSchema>)> {
        self.inner().events(topic)
    }
}
