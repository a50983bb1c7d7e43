//! The storage under the local backends: partitioned, append-only logs with committed group
//! offsets, which a polling consumer reads. `memory` keeps them in RAM, `log` in RAM with a
//! tracing line per append, `embedded` in SQLite.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::bus::{BusError, GroupId, Offset, Partition};
use crate::runtime::{Backend, StoredRecord};
use crate::topics::TopicName;

/// A [`Backend`] whose logs this process reads itself, with the polling consumer of the local
/// backends.
#[async_trait]
pub trait Storage: Backend {
    /// Up to `max` records from `from` on; fewer, or none, at the end of the partition.
    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BusError>;

    /// Makes `owner` the one consumer of `group` on `topics` across processes, or renews that;
    /// false while another owner holds them. Storage that only one process sees always agrees.
    async fn acquire_lease(&self, _group: &GroupId, _topics: &[TopicName], _owner: &str) -> Result<bool, BusError> {
        Ok(true)
    }

    /// Gives up a lease taken with [`Storage::acquire_lease`].
    async fn release_lease(&self, _group: &GroupId, _topics: &[TopicName], _owner: &str) -> Result<(), BusError> {
        Ok(())
    }

    /// How long a lease lasts without renewal; `None` where there are no leases.
    fn lease_ttl(&self) -> Option<Duration> {
        None
    }

    /// Ticks whenever this process appends.
    fn changes(&self) -> watch::Receiver<u64>;

    /// How often an idle consumer looks for records appended by other processes.
    fn poll_interval(&self) -> Duration;
}
