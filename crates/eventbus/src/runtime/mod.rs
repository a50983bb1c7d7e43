//! What every backend shares: the settings, the records, the rules of the bus (written once over
//! any [`Backend`]), what happens to each consumed message, and starting and stopping.
//!
//! - `config`: [`BusConfig`].
//! - `record`: the records backends append and read back.
//! - `backend`: the [`Backend`] trait, the primitives a backend provides.
//! - `policy`: [`Bus`], the `EventBus` over any backend.
//! - `processor`: one message from delivery to done: decode, dedup, park, retry, letter.
//! - `letter_log`: where letters are written and read back, and the waits around it.
//! - `letters`: a subscription's dead letters while it runs: parked keys, retry stages.
//! - `follower`: folds what others write to the dead-letter topics and acts on due letters:
//!   redrives, releases of parked records, retry stages.
//! - `dispatch`: the consumer runtime: records handled concurrently with per-key order, and the
//!   watermark per partition that is committed.
//! - `position`: a group's committed place in a partition, with the records finished above it.
//! - `lifecycle`: start, stop and subscribe, never interleaved.
//! - `schedule`: events held until their `deliver_at`, and the scheduler that delivers them.

mod backend;
mod config;
mod dispatch;
mod follower;
mod letter_log;
mod letters;
mod lifecycle;
mod policy;
mod position;
mod processor;
mod record;
mod schedule;

pub use backend::{Backend, Consumer, GroupCommits};
pub use config::{BusConfig, DEFAULT_DEDUP_WINDOW, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_MESSAGE_BYTES};
pub use dispatch::Dispatcher;
pub(crate) use letter_log::{STORAGE_RETRY, wait_or_stop};
pub use policy::Bus;
pub(crate) use policy::resume_positions;
pub use position::{MAX_FINISHED_TEXT, Position};
pub use processor::Processor;
pub use record::{NewRecord, Payload, StoredRecord};
pub use schedule::{
    DEFAULT_MAX_SCHEDULE_AHEAD, DEFAULT_MAX_SCHEDULED, DELIVER_AT, PAST_GRACE, SCHEDULE_TOPIC, SCHEDULED_FOR,
    ScheduleError,
};
