//! Topics, metadata, watermarks and group offsets: the `kafka-topics` and
//! `kafka-consumer-groups` side of the backend.

use std::collections::HashMap;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use super::{Inner, KafkaError};
use crate::bus::{BusError, GroupId, GroupOffset, Offset, Partition, PartitionInfo, StartPosition, TopicDescription};
use crate::topics::TopicName;

impl Inner {
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
    pub(super) async fn ensure_topics(&self, topics: Vec<(TopicName, u32)>) -> Result<(), BusError> {
        let existing: std::collections::HashSet<String> = self.metadata_topics().await?.into_keys().collect();
        let missing: Vec<_> = topics.into_iter().filter(|(name, _)| !existing.contains(name.as_str())).collect();
        for (name, partitions) in missing {
            match self.create_topic(&name, partitions).await {
                Ok(()) | Err(BusError::TopicExists(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    pub(super) async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError> {
        let replication = TopicReplication::Fixed(self.config.replication_factor);
        let topic = NewTopic::new(name.as_str(), partitions as i32, replication);
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout()));
        let results = self.admin.create_topics([&topic], &options).await.map_err(KafkaError::Client)?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return Err(BusError::TopicExists(name.clone())),
                Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, reason: code.to_string() }.into()),
            }
        }
        // The broker may need a moment before metadata shows the new topic.
        for _ in 0..50 {
            if self.metadata_topics().await?.contains_key(name.as_str()) {
                self.partitions.write().expect("partitions lock").insert(name.clone(), partitions);
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(KafkaError::CreateTopic { topic: name.to_string(), reason: "not visible in metadata after 5 s".into() }
            .into())
    }

    /// Topic name → partition count, for every topic the cluster reports.
    async fn metadata_topics(&self) -> Result<HashMap<String, u32>, BusError> {
        let timeout = self.config.request_timeout();
        self.blocking(move |meta| {
            let metadata = meta.fetch_metadata(None, timeout).map_err(KafkaError::Client)?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| (t.name().to_owned(), t.partitions().len() as u32))
                .collect())
        })
        .await
    }

    /// The partition count of a topic; creates the topic if auto-create is on.
    pub(super) async fn partition_count(&self, topic: &TopicName) -> Result<u32, BusError> {
        if let Some(&n) = self.partitions.read().expect("partitions lock").get(topic) {
            return Ok(n);
        }
        let n = match self.metadata_topics().await?.get(topic.as_str()) {
            Some(&n) => n,
            None if self.local.auto_create_topics => {
                let n = topic.auto_partitions(self.local.default_partitions);
                self.ensure_topics(topic.with_dlq(n)).await?;
                n
            }
            None => return Err(BusError::UnknownTopic(topic.clone())),
        };
        self.partitions.write().expect("partitions lock").insert(topic.clone(), n);
        Ok(n)
    }

    /// One topic, or every topic but Kafka's internal ones, with watermarks per partition.
    pub(super) async fn describe(&self, only: Option<&TopicName>) -> Result<Vec<TopicDescription>, BusError> {
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

    pub(super) async fn delete_group(&self, group: &GroupId) -> Result<(), BusError> {
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout()));
        let results = self.admin.delete_groups(&[group.as_str()], &options).await.map_err(KafkaError::Client)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((name, code)) => {
                    return Err(KafkaError::DeleteGroup { group: name, reason: code.to_string() }.into());
                }
            }
        }
        Ok(())
    }

    /// A consumer of `group` that never joins it: for reading and writing its offsets.
    fn group_client(&self, group: &GroupId) -> Result<BaseConsumer, BusError> {
        Ok(self.config.consumer(group.as_str()).create().map_err(KafkaError::Client)?)
    }

    pub(super) async fn group_offsets(&self, group: &GroupId, topic: &TopicName) -> Result<Vec<GroupOffset>, BusError> {
        let description =
            self.describe(Some(topic)).await?.pop().ok_or_else(|| BusError::UnknownTopic(topic.clone()))?;
        let client = self.group_client(group)?;
        let timeout = self.config.request_timeout();
        let name = topic.to_string();
        let committed = tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in &description.partitions {
                tpl.add_partition(&name, p.partition.0 as i32);
            }
            let committed = client.committed_offsets(tpl, timeout).map_err(KafkaError::Client)?;
            let offsets = description
                .partitions
                .iter()
                .filter_map(|info| {
                    let elem = committed.find_partition(&name, info.partition.0 as i32)?;
                    let KafkaOffset::Offset(offset) = elem.offset() else { return None };
                    let offset = Offset(offset.max(0) as u64);
                    Some(GroupOffset { partition: info.partition, offset, lag: info.latest.0.saturating_sub(offset.0) })
                })
                .collect::<Vec<_>>();
            Ok::<_, BusError>(offsets)
        })
        .await
        .map_err(|e| KafkaError::Task(e.to_string()))??;
        Ok(committed)
    }

    /// Where `start` points in each partition of `topic`, for `group`.
    pub(super) async fn resolve(
        &self,
        group: &GroupId,
        topic: &TopicName,
        start: StartPosition,
    ) -> Result<Vec<(Partition, Offset)>, BusError> {
        let description =
            self.describe(Some(topic)).await?.pop().ok_or_else(|| BusError::UnknownTopic(topic.clone()))?;
        let committed: HashMap<Partition, Offset> = match start {
            StartPosition::Committed => {
                self.group_offsets(group, topic).await?.into_iter().map(|o| (o.partition, o.offset)).collect()
            }
            _ => HashMap::new(),
        };
        let by_time = match start {
            StartPosition::Timestamp(time) => {
                self.offsets_for_time(topic, &description, time.timestamp_millis()).await?
            }
            _ => HashMap::new(),
        };
        Ok(description
            .partitions
            .iter()
            .map(|info| {
                let offset = match start {
                    StartPosition::Committed => committed.get(&info.partition).copied().unwrap_or(info.earliest),
                    StartPosition::Earliest => info.earliest,
                    StartPosition::Latest => info.latest,
                    StartPosition::Offset(n) => n,
                    StartPosition::Timestamp(_) => by_time.get(&info.partition).copied().unwrap_or(info.latest),
                };
                (info.partition, offset.clamp(info.earliest, info.latest))
            })
            .collect())
    }

    async fn offsets_for_time(
        &self,
        topic: &TopicName,
        description: &TopicDescription,
        millis: i64,
    ) -> Result<HashMap<Partition, Offset>, BusError> {
        let timeout = self.config.request_timeout();
        let name = topic.to_string();
        let partitions: Vec<Partition> = description.partitions.iter().map(|p| p.partition).collect();
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
    pub(super) async fn commit(
        &self,
        group: &GroupId,
        topic: &TopicName,
        offsets: Vec<(Partition, Offset)>,
    ) -> Result<(), BusError> {
        let client = self.group_client(group)?;
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for (partition, offset) in offsets {
                tpl.add_partition_offset(&name, partition.0 as i32, KafkaOffset::Offset(offset.0 as i64))
                    .map_err(KafkaError::Client)?;
            }
            client.commit(&tpl, CommitMode::Sync).map_err(KafkaError::Client)?;
            Ok::<_, BusError>(())
        })
        .await
        .map_err(|e| KafkaError::Task(e.to_string()))?
    }
}
