//! Errors of the durable outbox, each with what to do about it.

use std::io;
use std::path::PathBuf;

use crate::bus::BusError;

/// Errors of the durable local outbox in front of the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// A file of the outbox could not be read or written. Check the disk and the permissions.
    #[error("outbox file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A segment is damaged before its end, so entries after the damage cannot be trusted. The
    /// process refuses to start rather than skip them: save the file, then move it away.
    #[error("outbox segment {path} is damaged at byte {position}: {reason}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where the damage starts.
        position: u64,
        /// What is wrong there.
        reason: &'static str,
    },
    /// A segment was written by a newer format than this build reads.
    #[error("outbox segment {path} has format version {found}; this build reads version {expected}")]
    UnknownVersion {
        /// The segment.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this build writes and reads.
        expected: u32,
    },
    /// Another process (or another bus in this one) owns the outbox directory. Give each process
    /// an outbox directory of its own.
    #[error("outbox {dir} is in use by another bus (it holds {dir}/lock)")]
    InUse {
        /// The directory.
        dir: PathBuf,
    },
    /// An entry is larger than a frame can hold.
    #[error("an outbox entry of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The entry's size.
        size: usize,
        /// The largest entry a frame holds.
        limit: u32,
    },
    /// A write or sync failed earlier, so what the disk holds is unknown; the outbox takes no
    /// more appends. Restart the process: opening reads back what is on disk.
    #[error("the outbox stopped taking appends after a failed write: {reason}")]
    Stopped {
        /// The failure that stopped it.
        reason: String,
    },
    /// The writer thread is gone: the process is shutting down.
    #[error("the outbox writer is gone")]
    WriterGone,
    /// The outbox of the previous format (an embedded store) could not be read to move what it
    /// holds. It is left as it was.
    #[error("cannot move the events of the previous outbox format: {0}")]
    Legacy(#[source] BusError),
}

impl OutboxError {
    pub(super) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl From<OutboxError> for BusError {
    fn from(error: OutboxError) -> Self {
        BusError::Backend(Box::new(error))
    }
}
