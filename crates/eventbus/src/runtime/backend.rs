//! What a backend gives the bus: topics, appends, group offsets, and a task that consumes a
//! subscription. The rules every backend obeys on top of these are written once, in
//! [`Bus`](super::policy::Bus).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::dispatch::Dispatcher;
use super::position::Position;
use super::record::{NewRecord, StoredRecord};
use crate::bus::{BackendKind, BusError, GroupId, Offset, Partition, Published, Subscription, TopicDescription};
use crate::topics::TopicName;

/// What groups committed, as [`Backend::groups`] lists it: group → topic → partition → position.
/// A group with members and nothing committed has no topics.
pub type GroupCommits = BTreeMap<GroupId, BTreeMap<TopicName, HashMap<Partition, Position>>>;

/// The primitives of one backend. [`Bus`](super::policy::Bus) checks every argument before it
/// calls them: topics exist, partitions are in range, messages fit.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Whether appended events should arrive as their flat JSON (a store that keeps bytes)
    /// rather than as events.
    fn stores_bytes(&self) -> bool;

    /// Creates a topic; `TopicExists` if it is there already.
    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError>;

    /// Creates whichever of these topics do not exist yet.
    async fn ensure_topics(&self, topics: Vec<(TopicName, u32)>) -> Result<(), BusError>;

    /// The partition count of a topic; `None` if there is no such topic.
    async fn partition_count(&self, name: &TopicName) -> Result<Option<u32>, BusError>;

    /// One topic, or all of them when `name` is `None`, sorted by name.
    async fn describe(&self, name: Option<&TopicName>) -> Result<Vec<TopicDescription>, BusError>;

    /// Appends records, each to its topic, in order; all or none are stored. Returns one result
    /// per record, in order.
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Published>, BusError>;

    /// For each partition of `topic`, the first offset appended at or after `time`. A partition
    /// left out has none.
    async fn offsets_for_time(
        &self,
        topic: &TopicDescription,
        time: DateTime<Utc>,
    ) -> Result<HashMap<Partition, Offset>, BusError>;

    /// Where `group` is in the partitions of `topic`, as it committed: the next offset to read,
    /// and the offsets above it finished already.
    async fn committed(
        &self,
        group: &GroupId,
        topic: &TopicDescription,
    ) -> Result<HashMap<Partition, Position>, BusError>;

    /// Commits positions for `group`.
    async fn commit(
        &self,
        group: &GroupId,
        topic: &TopicName,
        positions: Vec<(Partition, Position)>,
    ) -> Result<(), BusError>;

    /// Every group of the store or cluster (at most `max`, by id) with what it committed in
    /// each topic: the groups of other processes too.
    async fn groups(&self, max: usize) -> Result<GroupCommits, BusError>;

    /// Deletes the group's committed offsets.
    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError>;

    /// Up to `max` records of a partition from `from` on; fewer, or none, at its end. Reads
    /// outside any group: nothing is committed.
    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BusError>;

    /// Starts the task that consumes one subscription until its stop signal turns true.
    fn spawn_consumer(self: Arc<Self>, consumer: Consumer) -> JoinHandle<()>;

    /// Runs after the consumers stopped: sends what still waits to be sent.
    async fn flush(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// Events waiting in a local outbox for the broker; `None` where there is no outbox.
    async fn outbox_backlog(&self) -> Result<Option<u64>, BusError> {
        Ok(None)
    }
}

/// What a consumer task runs with.
pub struct Consumer {
    /// The topics, group and start position.
    pub subscription: Subscription,
    /// Where the task hands the records it reads: they are handled concurrently, with per-key
    /// order, and it says what to commit.
    pub dispatcher: Dispatcher,
    /// Turns true when the bus stops.
    pub stop: watch::Receiver<bool>,
}
