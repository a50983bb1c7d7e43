//! The storage under the local backends: partitioned, append-only logs with committed group
//! offsets, which a polling consumer reads. `memory` keeps them in RAM, `log` in RAM with a
//! tracing line per append, `embedded` in SQLite.

use std::time::Duration;

use async_trait::async_trait;

use super::ends::PartitionEnds;
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

    /// The end of each partition as this process knows it, moved by its own appends, and the
    /// signal that wakes the consumers of the topics appended to.
    fn ends(&self) -> &PartitionEnds;

    /// Reads the ends of the partitions of `topics` from the store, so that [`Storage::ends`]
    /// covers what other processes appended. Storage that only this process writes has nothing
    /// to read.
    async fn refresh_ends(&self, _topics: &[TopicName]) -> Result<(), BusError> {
        Ok(())
    }

    /// How often an idle consumer looks for records appended by other processes.
    fn poll_interval(&self) -> Duration;
}
