//! [`EmbeddedStorage`]: the store as the bus sees it. Reads run on pooled connections on the
//! blocking pool; every write goes to the writer thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::EmbeddedConfig;
use super::error::EmbeddedError;
use super::schema;
use super::sql::{self, AppendRecord, TopicRow};
use super::writer::{self, Reply, WriteOp};
use crate::bus::{BackendKind, BusError, GroupId, Offset, Partition, PartitionInfo, Published, TopicDescription};
use crate::local::consumer;
use crate::local::ends::PartitionEnds;
use crate::local::storage::{Claim, Storage};
use crate::runtime::{Backend, Consumer, GroupCommits, NewRecord, Payload, Position, StoredRecord};
use crate::topics::TopicName;

/// Read connections kept open for reuse.
const READERS: usize = 2;

/// Durable partitioned logs in a SQLite file.
pub struct EmbeddedStorage {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteOp>,
    /// Moved by the writer after each commit that appended, and by refreshes from the file.
    ends: Arc<PartitionEnds>,
}

struct Shared {
    path: PathBuf,
    config: EmbeddedConfig,
    readers: Mutex<Vec<Connection>>,
    topics: RwLock<HashMap<TopicName, TopicRow>>,
}

impl EmbeddedStorage {
    /// Opens or creates the store, checks its format, and starts the writer thread.
    pub fn open(config: EmbeddedConfig) -> Result<Self, EmbeddedError> {
        crate::private::dir(&config.data_dir)
            .map_err(|source| EmbeddedError::Io { path: config.data_dir.clone(), source })?;
        let path = config.db_path();
        let mut conn = sql::connect(&config, &path)?;
        crate::private::file(&path).map_err(|source| EmbeddedError::Io { path: path.clone(), source })?;
        schema::migrate(&mut conn).map_err(|error| match error {
            schema::MigrateError::Sqlite(error) => EmbeddedError::classify(&path, error),
            schema::MigrateError::Format { found } => {
                EmbeddedError::Format { path: path.clone(), found, expected: schema::FORMAT }
            }
        })?;
        let readers = (0..READERS).map(|_| sql::connect(&config, &path)).collect::<Result<Vec<_>, _>>()?;
        let ends = Arc::new(PartitionEnds::default());
        let writer = writer::spawn(conn, path.clone(), config.retention, Arc::clone(&ends))?;
        let shared =
            Arc::new(Shared { path: path.clone(), config, readers: Mutex::new(readers), topics: RwLock::default() });
        tracing::info!(path = %path.display(), "Embedded store opened");
        Ok(Self { shared, writer, ends })
    }

    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> WriteOp) -> Result<T, EmbeddedError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(op(reply)).map_err(|_| EmbeddedError::WriterGone)?;
        answer.await.map_err(|_| EmbeddedError::WriterGone)?
    }

    /// Runs `f` on a pooled read connection on the blocking pool.
    async fn read_with<T, F>(&self, f: F) -> Result<T, EmbeddedError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let pooled = shared.readers.lock().expect("readers lock").pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => sql::connect(&shared.config, &shared.path)?,
            };
            let result = f(&conn).map_err(|e| EmbeddedError::classify(&shared.path, e));
            shared.readers.lock().expect("readers lock").push(conn);
            result
        })
        .await?
    }

    async fn topic(&self, name: &TopicName) -> Result<Option<TopicRow>, EmbeddedError> {
        if let Some(row) = self.shared.topics.read().expect("topics lock").get(name) {
            return Ok(Some(*row));
        }
        let key = name.to_string();
        let row = self.read_with(move |conn| sql::topic(conn, &key)).await?;
        if let Some(row) = row {
            self.shared.topics.write().expect("topics lock").insert(name.clone(), row);
        }
        Ok(row)
    }

    async fn known_topic(&self, name: &TopicName) -> Result<TopicRow, BusError> {
        self.topic(name).await?.ok_or_else(|| BusError::UnknownTopic(name.clone()))
    }

    /// The partitions by their topics' row ids, and the names of those topics by id.
    async fn partition_ids(
        &self,
        partitions: &[(TopicName, Partition)],
    ) -> Result<(Vec<sql::PartitionId>, HashMap<i64, TopicName>), BusError> {
        let mut names = HashMap::new();
        let mut ids = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let id = self.known_topic(topic).await?.id;
            names.entry(id).or_insert_with(|| topic.clone());
            ids.push((id, *partition));
        }
        Ok((ids, names))
    }
}

#[async_trait]
impl Backend for EmbeddedStorage {
    fn kind(&self) -> BackendKind {
        BackendKind::Embedded
    }

    fn stores_bytes(&self) -> bool {
        true
    }

    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError> {
        let topics = vec![(name.clone(), partitions)];
        let existing = self.write(|reply| WriteOp::CreateTopics { topics, reply }).await?;
        if existing.is_empty() { Ok(()) } else { Err(BusError::TopicExists(name.clone())) }
    }

    async fn ensure_topics(&self, topics: Vec<(TopicName, u32)>) -> Result<(), BusError> {
        self.write(|reply| WriteOp::CreateTopics { topics, reply }).await?;
        Ok(())
    }

    async fn partition_count(&self, name: &TopicName) -> Result<Option<u32>, BusError> {
        Ok(self.topic(name).await?.map(|row| row.partitions))
    }

    async fn describe(&self, name: Option<&TopicName>) -> Result<Vec<TopicDescription>, BusError> {
        let filter = name.map(|n| n.to_string());
        let rows = self.read_with(move |conn| sql::partitions(conn, filter)).await?;
        let mut topics: Vec<TopicDescription> = Vec::new();
        for (topic, partition, earliest, latest) in rows {
            let info =
                PartitionInfo { partition: Partition(partition), earliest: Offset(earliest), latest: Offset(latest) };
            match topics.last_mut() {
                Some(last) if last.name.as_str() == topic => last.partitions.push(info),
                _ => {
                    let name = TopicName::new(&topic).map_err(BusError::InvalidTopic)?;
                    topics.push(TopicDescription { name, partitions: vec![info] });
                }
            }
        }
        Ok(topics)
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Published>, BusError> {
        let mut rows: Vec<(TopicName, i64)> = Vec::new();
        let mut appends = Vec::with_capacity(records.len());
        for record in records {
            let topic_id = match rows.iter().find(|(topic, _)| *topic == record.topic) {
                Some((_, id)) => *id,
                None => {
                    let id = self.known_topic(&record.topic).await?.id;
                    rows.push((record.topic.clone(), id));
                    id
                }
            };
            let value = match record.payload {
                Payload::Encoded { json: bytes, .. } | Payload::Bytes(bytes) | Payload::Rejected { bytes, .. } => bytes,
                Payload::Event(event) => Bytes::from(event.to_json()),
            };
            appends.push(AppendRecord {
                topic_id,
                topic: record.topic,
                partition: record.partition,
                key: record.key,
                value,
            });
        }
        Ok(self.write(|reply| WriteOp::Append { records: appends, reply }).await?)
    }

    async fn offsets_for_time(
        &self,
        topic: &TopicDescription,
        time: DateTime<Utc>,
    ) -> Result<HashMap<Partition, Offset>, BusError> {
        let row = self.known_topic(&topic.name).await?;
        let target = time.timestamp_millis();
        let partitions: Vec<Partition> = topic.partitions.iter().map(|p| p.partition).collect();
        let offsets = self
            .read_with(move |conn| {
                partitions
                    .into_iter()
                    .map(|partition| Ok((partition, sql::first_at_or_after(conn, row.id, partition, target)?)))
                    .collect()
            })
            .await?;
        Ok(offsets)
    }

    async fn committed(
        &self,
        group: &GroupId,
        topic: &TopicDescription,
    ) -> Result<HashMap<Partition, Position>, BusError> {
        let row = self.known_topic(&topic.name).await?;
        let group = group.to_string();
        Ok(self.read_with(move |conn| sql::committed(conn, &group, row.id)).await?)
    }

    async fn commit(
        &self,
        group: &GroupId,
        topic: &TopicName,
        positions: Vec<(Partition, Position)>,
    ) -> Result<(), BusError> {
        let row = self.known_topic(topic).await?;
        let group = group.clone();
        self.write(|reply| WriteOp::Commit { group, topic_id: row.id, positions, reply }).await?;
        Ok(())
    }

    async fn groups(&self, max: usize) -> Result<GroupCommits, BusError> {
        Ok(self.read_with(move |conn| sql::groups(conn, max)).await?)
    }

    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError> {
        let group = group.clone();
        Ok(self.write(|reply| WriteOp::DeleteGroup { group, reply }).await?)
    }

    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BusError> {
        let row = self.known_topic(topic).await?;
        Ok(self.read_with(move |conn| sql::read(conn, row.id, partition, from, max)).await?)
    }

    fn spawn_consumer(self: Arc<Self>, consumer: Consumer) -> JoinHandle<()> {
        consumer::spawn(self, consumer)
    }
}

#[async_trait]
impl Storage for EmbeddedStorage {
    async fn claim(
        &self,
        group: &GroupId,
        owner: &str,
        partitions: &[(TopicName, Partition)],
    ) -> Result<Claim, BusError> {
        let (ids, names) = self.partition_ids(partitions).await?;
        let ttl_ms = i64::try_from(self.shared.config.lease_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let (group, owner) = (group.clone(), owner.to_owned());
        let (held, revoked) =
            self.write(|reply| WriteOp::Claim { group, owner, partitions: ids, ttl_ms, reply }).await?;
        let named = |ids: Vec<sql::PartitionId>| -> Vec<(TopicName, Partition)> {
            ids.into_iter().filter_map(|(id, partition)| names.get(&id).map(|name| (name.clone(), partition))).collect()
        };
        Ok(Claim { held: named(held), revoked: named(revoked) })
    }

    async fn release(
        &self,
        group: &GroupId,
        owner: &str,
        partitions: &[(TopicName, Partition)],
    ) -> Result<(), BusError> {
        let (partitions, _) = self.partition_ids(partitions).await?;
        let (group, owner) = (group.clone(), owner.to_owned());
        Ok(self.write(|reply| WriteOp::Release { group, owner, partitions, reply }).await?)
    }

    async fn leave(&self, group: &GroupId, owner: &str) -> Result<(), BusError> {
        let (group, owner) = (group.clone(), owner.to_owned());
        Ok(self.write(|reply| WriteOp::Leave { group, owner, reply }).await?)
    }

    fn lease_ttl(&self) -> Option<Duration> {
        Some(self.shared.config.lease_ttl)
    }

    fn ends(&self) -> &PartitionEnds {
        &self.ends
    }

    async fn refresh_ends(&self, topics: &[TopicName]) -> Result<(), BusError> {
        let mut rows = Vec::with_capacity(topics.len());
        for topic in topics {
            rows.push((topic.clone(), self.known_topic(topic).await?.id));
        }
        let ids: Vec<i64> = rows.iter().map(|(_, id)| *id).collect();
        let ends = self.read_with(move |conn| sql::ends(conn, &ids)).await?;
        self.ends.advance(ends.into_iter().filter_map(|(id, partition, end)| {
            let topic = rows.iter().find(|(_, row)| *row == id)?.0.clone();
            Some((topic, partition, end))
        }));
        Ok(())
    }

    fn poll_interval(&self) -> Duration {
        self.shared.config.poll_interval
    }
}
