//! The local backends: partitioned logs in this process or on this machine, read by a polling
//! consumer. Each is a [`Storage`] under the shared [`Bus`](crate::runtime::Bus).
//!
//! - `storage`: the [`Storage`] trait, a [`Backend`](crate::runtime::Backend) that can be read.
//! - `consumer`: the consumer loop: group leases across processes, cursors per partition, offset
//!   commits after the handler.
//! - `memory`, `log`, `embedded`: one folder per storage.

mod consumer;
pub mod embedded;
pub mod log;
pub mod memory;
mod storage;

pub use storage::Storage;
