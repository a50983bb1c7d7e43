//! The local backends: partitioned logs in this process or on this machine, read by a polling
//! consumer. Each is a [`Storage`] under the shared [`Bus`](crate::runtime::Bus).
//!
//! - `storage`: the [`Storage`] trait, a [`Backend`](crate::runtime::Backend) that can be read.
//! - `ends`: the end of each partition as this process knows it, and the consumers to wake when
//!   it moves.
//! - `consumer`: the consumer loop: group leases across processes, reading the partitions that
//!   moved into the shared dispatcher, committing what it finished.
//! - `memory`, `log`, `embedded`: one folder per storage.

mod consumer;
pub mod embedded;
mod ends;
pub mod log;
pub mod memory;
mod storage;

pub use ends::PartitionEnds;
pub use storage::Storage;
