//! `embedded`, the default: durable logs in SQLite (WAL mode) under a data directory.
//!
//! - Writes go through one writer thread per process that commits everything waiting in one
//!   transaction (group commit), so `publish` returns `Ok` only after the fsync.
//! - Several processes may share a data directory: SQLite serialises their writes, and idle
//!   consumers poll for records appended by the others.
//! - Retention, if set, deletes records older than it from the head of each partition.
//!
//! Files: `config` (settings), `error`, `schema` (tables and format check), `sql` (every
//! statement), `writer` (the writer thread), `storage` (the [`Backend`](crate::runtime::Backend)
//! and [`Storage`](crate::local::Storage) the bus uses).

mod config;
mod error;
mod schema;
mod sql;
mod storage;
mod writer;

pub use config::{EmbeddedConfig, SyncMode};
pub use error::EmbeddedError;
pub use storage::EmbeddedStorage;

use std::sync::Arc;

use crate::bus::BusError;
use crate::runtime::{Bus, BusConfig};

/// The default, durable backend.
pub type EmbeddedBus = Bus<EmbeddedStorage>;

impl Bus<EmbeddedStorage> {
    /// Opens (or creates) the store under `embedded.data_dir`.
    pub async fn embedded(config: BusConfig, embedded: EmbeddedConfig) -> Result<Self, BusError> {
        let storage = tokio::task::spawn_blocking(move || EmbeddedStorage::open(embedded))
            .await
            .map_err(EmbeddedError::Task)??;
        Self::open(Arc::new(storage), config).await
    }
}

#[cfg(test)]
mod tests;
