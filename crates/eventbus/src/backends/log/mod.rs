//! `log`: every publish becomes a structured `tracing` line (target `eventbus::published`), with
//! personal data masked. Events are still delivered in-process, from memory.

mod storage;

pub use storage::LogStorage;

use crate::bus::BusError;
use crate::local::{LocalBus, LocalConfig};

/// The seed's `LogEventBus`.
pub type LogBus = LocalBus<LogStorage>;

impl LocalBus<LogStorage> {
    pub async fn log(config: LocalConfig) -> Result<Self, BusError> {
        Self::open(LogStorage::default(), config).await
    }
}

#[cfg(test)]
mod tests;
