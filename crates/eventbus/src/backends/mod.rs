//! The backends. Each folder has the same files: `mod.rs` (the public type and how to open it)
//! and `storage.rs` (where records live), plus `tests.rs` for what only that backend does.

pub mod embedded;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod log;
pub mod memory;
