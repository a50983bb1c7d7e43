//! The storage under the local backends: partitioned, append-only logs with committed group
//! offsets. `memory` keeps them in RAM, `embedded` in SQLite; [`crate::LocalBus`] builds the
//! `EventBus` on top of either.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::bus::{BackendKind, BusError, GroupId, Offset, Partition, Published, TopicDescription};
use crate::envelope::EventSchema;
use crate::topics::TopicName;

/// A message value: an event as published in this process, or bytes read from disk or written
/// by another producer.
#[derive(Clone, Debug)]
pub enum Payload {
    Event(Arc<EventSchema>),
    Bytes(Bytes),
    /// Bytes already found not to be an event, with the reason (Kafka decodes with the headers).
    Rejected {
        bytes: Bytes,
        reason: String,
    },
}

/// A message to append.
#[derive(Clone, Debug)]
pub struct NewRecord {
    pub partition: Partition,
    pub key: Option<Arc<str>>,
    pub payload: Payload,
}

/// A message read back, with its place and append time.
#[derive(Clone, Debug)]
pub struct StoredRecord {
    pub partition: Partition,
    pub offset: Offset,
    pub timestamp: DateTime<Utc>,
    pub key: Option<Arc<str>>,
    pub payload: Payload,
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;

    /// Whether records are kept as flat JSON bytes (on disk) rather than as events in memory.
    fn stores_bytes(&self) -> bool;

    /// Creates a topic; `TopicExists` if it is there already.
    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError>;

    /// Creates whichever of these topics do not exist yet.
    async fn ensure_topics(&self, topics: Vec<(TopicName, u32)>) -> Result<(), BusError>;

    async fn partition_count(&self, name: &TopicName) -> Result<Option<u32>, BusError>;

    /// One topic, or all of them when `name` is `None`, sorted by name.
    async fn describe(&self, name: Option<&TopicName>) -> Result<Vec<TopicDescription>, BusError>;

    /// Appends records in order; all or none are stored.
    async fn append(&self, topic: &TopicName, records: Vec<NewRecord>) -> Result<Vec<Published>, BusError>;

    /// Up to `max` records from `from` on; fewer, or none, at the end of the partition.
    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BusError>;

    /// The first offset appended at or after `time`; the end of the partition if none was.
    async fn offset_for_time(
        &self,
        topic: &TopicName,
        partition: Partition,
        time: DateTime<Utc>,
    ) -> Result<Offset, BusError>;

    async fn committed(&self, group: &GroupId, topic: &TopicName) -> Result<HashMap<Partition, Offset>, BusError>;

    async fn commit(
        &self,
        group: &GroupId,
        topic: &TopicName,
        offsets: Vec<(Partition, Offset)>,
    ) -> Result<(), BusError>;

    /// Deletes the group's committed offsets (and any lease it holds).
    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError>;

    /// Makes `owner` the one consumer of `group` on `topics` across processes, or renews that;
    /// false while another owner holds them. Storage that only one process sees always agrees.
    async fn acquire_lease(&self, _group: &GroupId, _topics: &[TopicName], _owner: &str) -> Result<bool, BusError> {
        Ok(true)
    }

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
