//! Topics, metadata, watermarks and group offsets: the `kafka-topics` and
//! `kafka-consumer-groups` side of the backend.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use super::{Kafka, KafkaError};
use crate::bus::{BusError, GroupId, Offset, Partition, PartitionInfo, TopicDescription};
use crate::runtime::{GroupCommits, Position};
use crate::topics::TopicName;

/// How long a created topic may take to show in the metadata.
const VISIBLE_WITHIN: Duration = Duration::from_secs(5);

impl Kafka {
    /// Fails with `Unreachable` unless a broker answers within the request timeout.
    pub(super) async fn ping(&self) -> Result<(), BusError> {
        let timeout = self.config.request_timeout();
        let brokers = self.config.brokers.clone();
        self.blocking(move |meta| {
            meta.fetch_metadata(None, timeout)
                .map(drop)
                .map_err(|source| KafkaError::Unreachable { brokers, timeout, source }.into())
        })
        .await
    }

    /// Creates whichever of these topics are missing.
    pub(super) async fn ensure(&self, topics: Vec<(TopicName, u32)>) -> Result<(), BusError> {
        let existing: HashSet<String> = self.metadata_topics().await?.into_keys().collect();
        let missing: Vec<_> = topics.into_iter().filter(|(name, _)| !existing.contains(name.as_str())).collect();
        for (name, partitions) in missing {
            match self.create(&name, partitions).await {
                Ok(()) | Err(BusError::TopicExists(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Creates a topic and waits until the metadata shows it.
    pub(super) async fn create(&self, name: &TopicName, partitions: u32) -> Result<(), BusError> {
        let replication = TopicReplication::Fixed(self.config.replication_factor);
        let mut topic = NewTopic::new(name.as_str(), partitions as i32, replication);
        if name.as_str() == crate::SCHEDULE_TOPIC {
            // Its entries wait for their time, however far ahead: none may expire first.
            topic = topic.set("retention.ms", "-1").set("retention.bytes", "-1");
        }
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout()));
        let results = self.admin.create_topics([&topic], &options).await.map_err(KafkaError::Client)?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return Err(BusError::TopicExists(name.clone())),
                Err((topic, source)) => return Err(KafkaError::CreateTopic { topic, source }.into()),
            }
        }
        // The broker may need a moment before metadata shows the new topic.
        let step = Duration::from_millis(100);
        for _ in 0..VISIBLE_WITHIN.as_millis() / step.as_millis() {
            if self.metadata_topics().await?.contains_key(name.as_str()) {
                return Ok(());
            }
            tokio::time::sleep(step).await;
        }
        Err(KafkaError::TopicNotVisible { topic: name.to_string(), waited: VISIBLE_WITHIN }.into())
    }

    /// Topic name → partition count, for every topic the cluster reports; what the outbox
    /// remembers if no broker answers.
    pub(super) async fn metadata_topics(&self) -> Result<HashMap<String, u32>, BusError> {
        let timeout = self.config.request_timeout();
        let fetched = self
            .blocking(move |meta| {
                let metadata = meta.fetch_metadata(None, timeout).map_err(KafkaError::Client)?;
                Ok(metadata
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| (t.name().to_owned(), t.partitions().len() as u32))
                    .collect())
            })
            .await;
        match (fetched, &self.known) {
            (Ok(topics), Some(known)) => {
                known.remember(&topics);
                Ok(topics)
            }
            (Err(error), Some(known)) if known.any() => {
                tracing::warn!(%error, "Kafka does not answer: using the partition counts last seen");
                Ok(known.all())
            }
            (fetched, _) => fetched,
        }
    }

    /// One topic, or every topic but Kafka's internal ones, with watermarks per partition.
    pub(super) async fn watermarks(&self, only: Option<&TopicName>) -> Result<Vec<TopicDescription>, BusError> {
        let timeout = self.config.request_timeout();
        let only = only.map(|t| t.to_string());
        self.blocking(move |meta| {
            let metadata = meta.fetch_metadata(only.as_deref(), timeout).map_err(KafkaError::Client)?;
            let mut topics = Vec::new();
            for topic in metadata.topics() {
                if topic.error().is_some() || topic.partitions().is_empty() || topic.name().starts_with("__") {
                    continue;
                }
                let Ok(name) = TopicName::new(topic.name()) else { continue };
                let mut partitions = Vec::new();
                for p in topic.partitions() {
                    let (low, high) =
                        meta.fetch_watermarks(topic.name(), p.id(), timeout).map_err(KafkaError::Client)?;
                    partitions.push(PartitionInfo {
                        partition: Partition(p.id() as u32),
                        earliest: Offset(low.max(0) as u64),
                        latest: Offset(high.max(0) as u64),
                    });
                }
                partitions.sort_by_key(|p| p.partition);
                topics.push(TopicDescription { name, partitions });
            }
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(topics)
        })
        .await
    }

    pub(super) async fn remove_group(&self, group: &GroupId) -> Result<(), BusError> {
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout()));
        let results = self.admin.delete_groups(&[group.as_str()], &options).await.map_err(KafkaError::Client)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((group, source)) => return Err(KafkaError::DeleteGroup { group, source }.into()),
            }
        }
        Ok(())
    }

    /// Every group the cluster lists (ListGroups: the first `max` by id), with the offsets each
    /// committed in the partitions of the topics the metadata shows (OffsetFetch, one request
    /// per group). Kafka's internal topics are left out.
    pub(super) async fn list_groups(&self, max: usize) -> Result<GroupCommits, BusError> {
        let timeout = self.config.request_timeout();
        let mut ids: Vec<GroupId> = self
            .blocking(move |meta| {
                let list = meta.fetch_group_list(None, timeout).map_err(KafkaError::Client)?;
                Ok(list.groups().iter().filter_map(|g| GroupId::new(g.name()).ok()).collect::<Vec<_>>())
            })
            .await?;
        ids.sort();
        ids.dedup();
        ids.truncate(max);
        let topics: Vec<(String, u32)> =
            self.metadata_topics().await?.into_iter().filter(|(name, _)| !name.starts_with("__")).collect();
        // Client settings only: each client is created, asked and dropped in turn below.
        let clients: Vec<_> = ids.into_iter().map(|group| (self.config.consumer(group.as_str()), group)).collect();
        tokio::task::spawn_blocking(move || {
            let mut groups = GroupCommits::new();
            let mut tpl = TopicPartitionList::new();
            for (name, partitions) in &topics {
                for p in 0..*partitions {
                    tpl.add_partition(name, p as i32);
                }
            }
            for (settings, group) in clients {
                let client: BaseConsumer = settings.create().map_err(KafkaError::Client)?;
                let committed = client.committed_offsets(tpl.clone(), timeout).map_err(KafkaError::Client)?;
                let entry = groups.entry(group).or_default();
                for elem in committed.elements() {
                    let KafkaOffset::Offset(offset) = elem.offset() else { continue };
                    let Ok(topic) = TopicName::new(elem.topic()) else { continue };
                    let position = Position::with_finished_text(Offset(offset.max(0) as u64), elem.metadata());
                    entry.entry(topic).or_default().insert(Partition(elem.partition() as u32), position);
                }
            }
            Ok(groups)
        })
        .await
        .map_err(KafkaError::Task)?
    }

    /// A consumer of `group` that never joins it: for reading and writing its offsets.
    fn group_client(&self, group: &GroupId) -> Result<BaseConsumer, BusError> {
        Ok(self.config.consumer(group.as_str()).create().map_err(KafkaError::Client)?)
    }

    /// The offsets `group` committed in the partitions of `topic`.
    pub(super) async fn committed_offsets(
        &self,
        group: &GroupId,
        topic: &TopicDescription,
    ) -> Result<HashMap<Partition, Position>, BusError> {
        let client = self.group_client(group)?;
        let timeout = self.config.request_timeout();
        let name = topic.name.to_string();
        let partitions: Vec<Partition> = topic.partitions.iter().map(|p| p.partition).collect();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(&name, p.0 as i32);
            }
            let committed = client.committed_offsets(tpl, timeout).map_err(KafkaError::Client)?;
            Ok(partitions
                .iter()
                .filter_map(|p| {
                    let elem = committed.find_partition(&name, p.0 as i32)?;
                    let KafkaOffset::Offset(offset) = elem.offset() else { return None };
                    Some((*p, Position::with_finished_text(Offset(offset.max(0) as u64), elem.metadata())))
                })
                .collect())
        })
        .await
        .map_err(KafkaError::Task)?
    }

    /// For each partition of `topic`, the first offset at or after `millis` since the epoch.
    pub(super) async fn offsets_at(
        &self,
        topic: &TopicDescription,
        millis: i64,
    ) -> Result<HashMap<Partition, Offset>, BusError> {
        let timeout = self.config.request_timeout();
        let name = topic.name.to_string();
        let partitions: Vec<Partition> = topic.partitions.iter().map(|p| p.partition).collect();
        self.blocking(move |meta| {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition_offset(&name, p.0 as i32, KafkaOffset::Offset(millis)).map_err(KafkaError::Client)?;
            }
            let found = meta.offsets_for_times(tpl, timeout).map_err(KafkaError::Client)?;
            Ok(found
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    KafkaOffset::Offset(o) if o >= 0 => Some((Partition(e.partition() as u32), Offset(o as u64))),
                    _ => None,
                })
                .collect())
        })
        .await
    }

    /// Commits offsets for a group that has no live member, like `--reset-offsets --execute`.
    pub(super) async fn commit_offsets(
        &self,
        group: &GroupId,
        topic: &TopicName,
        positions: Vec<(Partition, Position)>,
    ) -> Result<(), BusError> {
        let client = self.group_client(group)?;
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for (partition, position) in positions {
                let mut element = tpl.add_partition(&name, partition.0 as i32);
                element.set_offset(KafkaOffset::Offset(position.next.0 as i64)).map_err(KafkaError::Client)?;
                element.set_metadata(position.finished_text());
            }
            client.commit(&tpl, CommitMode::Sync).map_err(KafkaError::Client)?;
            Ok::<_, BusError>(())
        })
        .await
        .map_err(KafkaError::Task)?
    }
}
