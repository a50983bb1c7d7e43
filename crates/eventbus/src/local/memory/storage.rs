use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use crate::bus::{BackendKind, BusError, GroupId, Offset, Partition, PartitionInfo, Published, TopicDescription};
use crate::envelope::EventSchema;
use crate::local::consumer;
use crate::local::ends::PartitionEnds;
use crate::local::storage::Storage;
use crate::runtime::{Backend, Consumer, GroupCommits, NewRecord, Payload, Position, StoredRecord};
use crate::topics::TopicName;

/// Partitioned logs in memory.
pub struct MemoryStorage {
    topics: RwLock<BTreeMap<TopicName, Arc<TopicLog>>>,
    offsets: Mutex<HashMap<(GroupId, TopicName), HashMap<Partition, Position>>>,
    ends: PartitionEnds,
    /// Records kept per partition; the oldest go first. `None` keeps everything.
    retention: Option<usize>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new(None)
    }
}

struct TopicLog {
    partitions: Vec<Mutex<PartitionLog>>,
}

/// One partition: the retained records, the first of which has offset `start`.
#[derive(Default)]
struct PartitionLog {
    start: u64,
    records: VecDeque<StoredRecord>,
}

impl PartitionLog {
    fn end(&self) -> u64 {
        self.start + self.records.len() as u64
    }
}

impl MemoryStorage {
    /// Storage keeping at most `retention` records per partition (`None`: all of them).
    pub fn new(retention: Option<usize>) -> Self {
        Self { topics: RwLock::default(), offsets: Mutex::default(), ends: PartitionEnds::default(), retention }
    }

    fn topic(&self, name: &TopicName) -> Result<Arc<TopicLog>, BusError> {
        let topics = self.topics.read().expect("topics lock");
        topics.get(name).cloned().ok_or_else(|| BusError::UnknownTopic(name.clone()))
    }

    pub(crate) fn events(&self, topic: Option<&TopicName>) -> Vec<(TopicName, Arc<EventSchema>)> {
        let topics = self.topics.read().expect("topics lock");
        let mut out = Vec::new();
        for (name, log) in topics.iter().filter(|(name, _)| topic.is_none_or(|t| t == *name)) {
            let mut records: Vec<StoredRecord> =
                log.partitions.iter().flat_map(|p| p.lock().expect("partition lock").records.clone()).collect();
            records.sort_by_key(|r| (r.timestamp, r.partition, r.offset));
            out.extend(records.into_iter().filter_map(|r| match r.payload {
                Payload::Event(event) | Payload::Encoded { event, .. } => Some((name.clone(), event)),
                Payload::Bytes(bytes) | Payload::Rejected { bytes, .. } => {
                    EventSchema::from_json(&bytes).ok().map(|e| (name.clone(), Arc::new(e)))
                }
            }));
        }
        out
    }
}

#[async_trait]
impl Backend for MemoryStorage {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    fn stores_bytes(&self) -> bool {
        false
    }

    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError> {
        let mut topics = self.topics.write().expect("topics lock");
        if topics.contains_key(name) {
            return Err(BusError::TopicExists(name.clone()));
        }
        let log = TopicLog { partitions: (0..partitions).map(|_| Mutex::default()).collect() };
        topics.insert(name.clone(), Arc::new(log));
        self.ends.advance((0..partitions).map(|p| (name.clone(), Partition(p), 0)));
        Ok(())
    }

    async fn ensure_topics(&self, wanted: Vec<(TopicName, u32)>) -> Result<(), BusError> {
        for (name, partitions) in wanted {
            match self.create_topic(&name, partitions).await {
                Ok(()) | Err(BusError::TopicExists(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn partition_count(&self, name: &TopicName) -> Result<Option<u32>, BusError> {
        let topics = self.topics.read().expect("topics lock");
        Ok(topics.get(name).map(|log| log.partitions.len() as u32))
    }

    async fn describe(&self, name: Option<&TopicName>) -> Result<Vec<TopicDescription>, BusError> {
        let topics = self.topics.read().expect("topics lock");
        Ok(topics
            .iter()
            .filter(|(topic, _)| name.is_none_or(|n| n == *topic))
            .map(|(topic, log)| TopicDescription {
                name: topic.clone(),
                partitions: log
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, log)| {
                        let log = log.lock().expect("partition lock");
                        PartitionInfo {
                            partition: Partition(i as u32),
                            earliest: Offset(log.start),
                            latest: Offset(log.end()),
                        }
                    })
                    .collect(),
            })
            .collect())
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Published>, BusError> {
        // Every topic is looked up first: a record for an unknown topic fails the whole append.
        let mut logs: Vec<(TopicName, Arc<TopicLog>)> = Vec::new();
        for record in &records {
            if !logs.iter().any(|(topic, _)| *topic == record.topic) {
                logs.push((record.topic.clone(), self.topic(&record.topic)?));
            }
        }
        let now = Utc::now();
        let retention = self.retention;
        let mut published = Vec::with_capacity(records.len());
        let mut moved = Vec::new();
        let mut records = records.into_iter().peekable();
        // Runs of records for the same partition are appended under one lock.
        while let Some(first) = records.next() {
            let (topic, partition) = (first.topic.clone(), first.partition);
            let log = &logs.iter().find(|(name, _)| *name == topic).expect("looked up above").1;
            let mut log = log.partitions[partition.0 as usize].lock().expect("partition lock");
            let mut push = |record: NewRecord, log: &mut PartitionLog| {
                let offset = Offset(log.end());
                let timestamp = log.records.back().map_or(now, |last| last.timestamp.max(now));
                log.records.push_back(StoredRecord {
                    partition,
                    offset,
                    timestamp,
                    key: record.key,
                    payload: record.payload,
                });
                if retention.is_some_and(|max| log.records.len() > max) {
                    log.records.pop_front();
                    log.start += 1;
                }
                published.push(Published::at(partition, offset));
            };
            push(first, &mut log);
            while let Some(next) = records.next_if(|r| r.topic == topic && r.partition == partition) {
                push(next, &mut log);
            }
            moved.push((topic, partition, log.end()));
        }
        self.ends.advance(moved);
        Ok(published)
    }

    async fn offsets_for_time(
        &self,
        topic: &TopicDescription,
        time: DateTime<Utc>,
    ) -> Result<HashMap<Partition, Offset>, BusError> {
        let log = self.topic(&topic.name)?;
        Ok(log
            .partitions
            .iter()
            .enumerate()
            .map(|(i, log)| {
                let log = log.lock().expect("partition lock");
                let offset = log.start + log.records.partition_point(|r| r.timestamp < time) as u64;
                (Partition(i as u32), Offset(offset))
            })
            .collect())
    }

    async fn committed(
        &self,
        group: &GroupId,
        topic: &TopicDescription,
    ) -> Result<HashMap<Partition, Position>, BusError> {
        let offsets = self.offsets.lock().expect("offsets lock");
        Ok(offsets.get(&(group.clone(), topic.name.clone())).cloned().unwrap_or_default())
    }

    async fn commit(
        &self,
        group: &GroupId,
        topic: &TopicName,
        commits: Vec<(Partition, Position)>,
    ) -> Result<(), BusError> {
        let mut offsets = self.offsets.lock().expect("offsets lock");
        offsets.entry((group.clone(), topic.clone())).or_default().extend(commits);
        Ok(())
    }

    async fn groups(&self, max: usize) -> Result<GroupCommits, BusError> {
        let offsets = self.offsets.lock().expect("offsets lock");
        let mut groups = GroupCommits::new();
        for ((group, topic), positions) in offsets.iter().filter(|(_, positions)| !positions.is_empty()) {
            if groups.len() >= max && !groups.contains_key(group) {
                // Keep the `max` first ids: drop the last one if this one sorts before it.
                match groups.keys().next_back() {
                    Some(last) if group < last => {
                        let last = last.clone();
                        groups.remove(&last);
                    }
                    _ => continue,
                }
            }
            groups.entry(group.clone()).or_default().insert(topic.clone(), positions.clone());
        }
        Ok(groups)
    }

    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError> {
        self.offsets.lock().expect("offsets lock").retain(|(g, _), _| g != group);
        Ok(())
    }

    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BusError> {
        let log = self.topic(topic)?;
        let log = log.partitions.get(partition.0 as usize).ok_or_else(|| BusError::UnknownTopic(topic.clone()))?;
        let log = log.lock().expect("partition lock");
        let skip = from.0.saturating_sub(log.start).min(log.records.len() as u64) as usize;
        let end = skip.saturating_add(max).min(log.records.len());
        Ok(log.records.range(skip..end).cloned().collect())
    }

    fn spawn_consumer(self: Arc<Self>, consumer: Consumer) -> JoinHandle<()> {
        consumer::spawn(self, consumer)
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn ends(&self) -> &PartitionEnds {
        &self.ends
    }

    fn poll_interval(&self) -> Duration {
        // Only this process appends, and every append moves `ends`; the timer is a safety net.
        Duration::from_millis(500)
    }
}
