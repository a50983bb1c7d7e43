//! `embedded`, the default: durable logs in SQLite (WAL mode) under a data directory.
//!
//! - Writes go through one writer thread per process that commits everything waiting in one
//!   transaction (group commit), so `publish` returns `Ok` only after the fsync.
//! - Several processes may share a data directory: SQLite serialises their writes, and idle
//!   consumers poll for records appended by the others.
//! - Retention, if set, deletes records older than it from the head of each partition.

mod config;
mod schema;
mod storage;

pub use config::{EmbeddedConfig, SyncMode};
pub use storage::EmbeddedStorage;

use std::path::PathBuf;

use crate::bus::BusError;
use crate::local::{LocalBus, LocalConfig};

/// The default, durable backend.
pub type EmbeddedBus = LocalBus<EmbeddedStorage>;

impl LocalBus<EmbeddedStorage> {
    /// Opens (or creates) the store under `embedded.data_dir`.
    pub async fn embedded(config: LocalConfig, embedded: EmbeddedConfig) -> Result<Self, BusError> {
        let storage = tokio::task::spawn_blocking(move || EmbeddedStorage::open(embedded))
            .await
            .map_err(|e| EmbeddedError::Thread(e.to_string()))??;
        Self::open(storage, config).await
    }
}

/// Errors of the embedded store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// The data directory cannot be created or opened. Check the path and its permissions.
    #[error("cannot use data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The store file is not a SQLite database, or is damaged. Restore it from a backup or move it
    /// away to start empty.
    #[error("data directory {path} holds a corrupt store ({source}); restore it from a backup or move it away")]
    Corrupt { path: PathBuf, source: rusqlite::Error },
    /// Another process holds the store's write lock for longer than the busy timeout.
    #[error("data directory {path} is locked by another process ({source}); stop it or raise busy_timeout_ms")]
    Locked { path: PathBuf, source: rusqlite::Error },
    /// The store was written by a newer version of this program.
    #[error("data directory {path} has store format {found}; this program reads format {expected}")]
    Format { path: PathBuf, found: i64, expected: i64 },
    /// The transaction that held this write failed as a whole; the write was not stored.
    #[error("write transaction failed: {0}")]
    Transaction(#[source] std::sync::Arc<EmbeddedError>),
    /// Any other SQLite failure.
    #[error("embedded store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread is gone, which happens only if it panicked. Restart the process.
    #[error("embedded store writer stopped: {0}")]
    Thread(String),
}

impl EmbeddedError {
    /// Gives the raw SQLite error its meaning for the store at `path`.
    pub(crate) fn classify(path: &std::path::Path, error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseCorrupt, DatabaseLocked, NotADatabase};
        let path = path.to_path_buf();
        match error.sqlite_error_code() {
            Some(NotADatabase | DatabaseCorrupt) => Self::Corrupt { path, source: error },
            Some(DatabaseBusy | DatabaseLocked) => Self::Locked { path, source: error },
            _ => Self::Sqlite(error),
        }
    }
}

#[cfg(test)]
mod tests;
