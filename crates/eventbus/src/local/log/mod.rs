//! `log`: every publish becomes a structured `tracing` line (target `eventbus::published`), with
//! personal data masked. Events are still delivered in-process, from memory.

mod storage;

use std::sync::Arc;

pub use storage::LogStorage;

use crate::bus::BusError;
use crate::runtime::{Bus, BusConfig};

/// The seed's `LogEventBus`.
pub type LogBus = Bus<LogStorage>;

impl Bus<LogStorage> {
    /// A log bus: memory storage that writes a tracing line per published event.
    pub async fn log(config: BusConfig) -> Result<Self, BusError> {
        Self::open(Arc::new(LogStorage::default()), config).await
    }
}

#[cfg(test)]
mod tests;
