use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use crate::bus::{BackendKind, BusError, GroupId, Offset, Partition, Published, TopicDescription};
use crate::envelope::{EventSchema, mask_map};
use crate::local::consumer;
use crate::local::ends::PartitionEnds;
use crate::local::memory::MemoryStorage;
use crate::local::storage::Storage;
use crate::runtime::{Backend, Consumer, GroupCommits, NewRecord, Payload, Position, StoredRecord};
use crate::topics::TopicName;

/// Memory storage that logs each append.
#[derive(Default)]
pub struct LogStorage {
    memory: MemoryStorage,
}

fn log_record(topic: &TopicName, record: &NewRecord, published: &Published) {
    let parsed;
    let event: &EventSchema = match &record.payload {
        Payload::Event(event) | Payload::Encoded { event, .. } => event,
        Payload::Bytes(bytes) | Payload::Rejected { bytes, .. } => match EventSchema::from_json(bytes) {
            Ok(event) => {
                parsed = event;
                &parsed
            }
            Err(error) => {
                tracing::info!(target: "eventbus::published", %topic, partition = %published.partition, offset = ?published.offset, bytes = bytes.len(), %error, "Published a message that is not an event");
                return;
            }
        },
    };
    let data = serde_json::Value::Object(mask_map(event.data.as_map()));
    tracing::info!(
        target: "eventbus::published",
        %topic,
        partition = %published.partition,
        offset = ?published.offset,
        key = record.key.as_deref(),
        event_id = event.event_id.as_ref().map(tracing::field::display),
        event_type = %event.event_type,
        entity_type = %event.entity_type,
        entity_id = %event.entity_id,
        source = event.source(),
        version = event.version(),
        data = %data,
        "Event published"
    );
}

#[async_trait]
impl Backend for LogStorage {
    fn kind(&self) -> BackendKind {
        BackendKind::Log
    }

    fn stores_bytes(&self) -> bool {
        self.memory.stores_bytes()
    }

    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError> {
        self.memory.create_topic(name, partitions).await
    }

    async fn ensure_topics(&self, topics: Vec<(TopicName, u32)>) -> Result<(), BusError> {
        self.memory.ensure_topics(topics).await
    }

    async fn partition_count(&self, name: &TopicName) -> Result<Option<u32>, BusError> {
        self.memory.partition_count(name).await
    }

    async fn describe(&self, name: Option<&TopicName>) -> Result<Vec<TopicDescription>, BusError> {
        self.memory.describe(name).await
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Published>, BusError> {
        let logged = records.clone();
        let published = self.memory.append(records).await?;
        for (record, published) in logged.iter().zip(&published) {
            log_record(&record.topic, record, published);
        }
        Ok(published)
    }

    async fn offsets_for_time(
        &self,
        topic: &TopicDescription,
        time: DateTime<Utc>,
    ) -> Result<HashMap<Partition, Offset>, BusError> {
        self.memory.offsets_for_time(topic, time).await
    }

    async fn committed(
        &self,
        group: &GroupId,
        topic: &TopicDescription,
    ) -> Result<HashMap<Partition, Position>, BusError> {
        self.memory.committed(group, topic).await
    }

    async fn commit(
        &self,
        group: &GroupId,
        topic: &TopicName,
        positions: Vec<(Partition, Position)>,
    ) -> Result<(), BusError> {
        self.memory.commit(group, topic, positions).await
    }

    async fn groups(&self, max: usize) -> Result<GroupCommits, BusError> {
        self.memory.groups(max).await
    }

    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError> {
        self.memory.delete_group(group).await
    }

    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BusError> {
        self.memory.read(topic, partition, from, max).await
    }

    fn spawn_consumer(self: Arc<Self>, consumer: Consumer) -> JoinHandle<()> {
        consumer::spawn(self, consumer)
    }
}

#[async_trait]
impl Storage for LogStorage {
    fn ends(&self) -> &PartitionEnds {
        self.memory.ends()
    }

    fn poll_interval(&self) -> Duration {
        self.memory.poll_interval()
    }
}
