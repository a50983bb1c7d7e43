//! The storage under the local backends: partitioned, append-only logs with committed group
//! offsets, which a polling consumer reads. `memory` keeps them in RAM, `log` in RAM with a
//! tracing line per append, `embedded` in SQLite.

use std::time::Duration;

use async_trait::async_trait;

use super::ends::PartitionEnds;
use crate::bus::{BusError, GroupId, Partition};
use crate::runtime::Backend;
use crate::topics::TopicName;

/// What a member of a group holds after [`Storage::claim`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// The partitions it consumes now.
    pub held: Vec<(TopicName, Partition)>,
    /// The partitions it still holds but that fall to another member now.
    pub revoked: Vec<(TopicName, Partition)>,
}

/// A [`Backend`] whose logs this process reads itself, with the polling consumer of the local
/// backends.
#[async_trait]
pub trait Storage: Backend {
    /// Joins `group` as `owner`, or renews its membership, and claims its share of `partitions`
    /// among the group's live members (the same partitions for every member): the partitions it
    /// holds now, renewed, and those it holds but must give up to another member, which it
    /// releases with [`Storage::release`] once their records in flight are finished. A partition
    /// held by another member is taken only when that member released it or its lease lapsed.
    /// Storage that only one process sees gives every partition.
    async fn claim(
        &self,
        _group: &GroupId,
        _owner: &str,
        partitions: &[(TopicName, Partition)],
    ) -> Result<Claim, BusError> {
        Ok(Claim { held: partitions.to_vec(), revoked: Vec::new() })
    }

    /// Gives up `partitions` of `group` that `owner` holds.
    async fn release(
        &self,
        _group: &GroupId,
        _owner: &str,
        _partitions: &[(TopicName, Partition)],
    ) -> Result<(), BusError> {
        Ok(())
    }

    /// Leaves `group`: gives up the membership of `owner` and every partition it holds.
    async fn leave(&self, _group: &GroupId, _owner: &str) -> Result<(), BusError> {
        Ok(())
    }

    /// How long a membership or a partition lasts without renewal; `None` where there are no
    /// leases.
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
