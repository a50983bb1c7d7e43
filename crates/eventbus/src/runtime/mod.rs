//! What every backend shares: the settings, the records, the rules of the bus (written once over
//! any [`Backend`]), what happens to each consumed message, and starting and stopping.
//!
//! - `config`: [`BusConfig`].
//! - `record`: the records backends append and read back.
//! - `backend`: the [`Backend`] trait, the primitives a backend provides.
//! - `policy`: [`Bus`], the `EventBus` over any backend.
//! - `processor`: one message from delivery to done: decode, dedup, retry, dead letter.
//! - `lifecycle`: start, stop and subscribe, never interleaved.

mod backend;
mod config;
mod lifecycle;
mod policy;
mod processor;
mod record;

pub use backend::{Backend, Consumer};
pub use config::{BusConfig, DEFAULT_MAX_MESSAGE_BYTES};
pub use policy::Bus;
pub(crate) use policy::start_offsets;
pub use processor::{DEAD_LETTERED, Processor};
pub(crate) use processor::{STORAGE_RETRY, Stopped, wait_or_stop};
pub use record::{NewRecord, Payload, StoredRecord};
