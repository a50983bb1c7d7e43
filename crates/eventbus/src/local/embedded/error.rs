//! Errors of the embedded store, each with what to do about it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bus::BusError;

/// Errors of the embedded store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// The data directory cannot be created or opened. Check the path and its permissions.
    #[error("cannot use data directory {path}: {source}")]
    Io {
        /// The data directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The store file is not a SQLite database, or is damaged. Restore it from a backup or move it
    /// away to start empty.
    #[error("data directory {path} holds a corrupt store ({source}); restore it from a backup or move it away")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Another process holds the store's write lock for longer than the busy timeout.
    #[error("data directory {path} is locked by another process ({source}); stop it or raise busy_timeout_ms")]
    Locked {
        /// The store file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The store was written by a newer version of this program.
    #[error("data directory {path} has store format {found}; this program reads format {expected}")]
    Format {
        /// The store file.
        path: PathBuf,
        /// The format the store was written in.
        found: i64,
        /// The format this program reads.
        expected: i64,
    },
    /// The transaction that held this write failed as a whole; the write was not stored.
    #[error("write transaction failed: {0}")]
    Transaction(#[source] Arc<EmbeddedError>),
    /// Any other SQLite failure.
    #[error("embedded store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread could not be started: the process is out of threads or memory.
    #[error("cannot start the embedded store's writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The writer thread is gone, which happens only if it panicked. Restart the process.
    #[error("the embedded store's writer thread stopped")]
    WriterGone,
    /// A read on the blocking pool did not finish: it panicked or the runtime is shutting down.
    #[error("embedded store read failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl EmbeddedError {
    /// Gives the raw SQLite error its meaning for the store at `path`.
    pub(crate) fn classify(path: &Path, error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseCorrupt, DatabaseLocked, NotADatabase};
        let path = path.to_path_buf();
        match error.sqlite_error_code() {
            Some(NotADatabase | DatabaseCorrupt) => Self::Corrupt { path, source: error },
            Some(DatabaseBusy | DatabaseLocked) => Self::Locked { path, source: error },
            _ => Self::Sqlite(error),
        }
    }
}

impl From<EmbeddedError> for BusError {
    fn from(error: EmbeddedError) -> Self {
        BusError::Backend(Box::new(error))
    }
}
