use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{oneshot, watch};

use super::config::{EmbeddedConfig, SyncMode};
use super::{EmbeddedError, schema};
use crate::bus::{BackendKind, BusError, GroupId, Offset, Partition, PartitionInfo, Published, TopicDescription};
use crate::storage::{NewRecord, Payload, Storage, StoredRecord};
use crate::topics::TopicName;

/// Operations the writer thread takes at most in one transaction.
const MAX_GROUP: usize = 4096;
/// Records retention deletes from one partition in one pass.
const RETENTION_CHUNK: u64 = 10_000;
/// How long the writer waits for work before it looks at retention again.
const IDLE_WAKEUP: Duration = Duration::from_secs(10);

/// Durable partitioned logs in a SQLite file.
pub struct EmbeddedStorage {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteOp>,
}

struct Shared {
    path: PathBuf,
    config: EmbeddedConfig,
    readers: Mutex<Vec<Connection>>,
    topics: RwLock<HashMap<TopicName, TopicRow>>,
    changes: watch::Sender<u64>,
}

#[derive(Clone, Copy)]
struct TopicRow {
    id: i64,
    partitions: u32,
}

type Reply<T> = oneshot::Sender<Result<T, EmbeddedError>>;

enum WriteOp {
    Append {
        topic_id: i64,
        records: Vec<(Partition, Option<Arc<str>>, Bytes)>,
        reply: Reply<Vec<Published>>,
    },
    Commit {
        group: GroupId,
        topic_id: i64,
        offsets: Vec<(Partition, Offset)>,
        reply: Reply<()>,
    },
    /// Creates the topics that are missing; replies with the names that existed already.
    /// Takes or renews a group's lease on topics unless another owner holds it unexpired.
    Lease {
        group: GroupId,
        topic_ids: Vec<i64>,
        owner: String,
        expires_ms: i64,
        reply: Reply<bool>,
    },
    /// Deletes a group's offsets and leases.
    DeleteGroup {
        group: GroupId,
        reply: Reply<()>,
    },
    /// Gives a lease up.
    Release {
        group: GroupId,
        topic_ids: Vec<i64>,
        owner: String,
        reply: Reply<()>,
    },
    /// Deletes a partition's records before an offset (the Kafka outbox after relaying).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    Truncate {
        topic_id: i64,
        partition: Partition,
        before: Offset,
        reply: Reply<()>,
    },
    CreateTopics {
        topics: Vec<(TopicName, u32)>,
        reply: Reply<Vec<TopicName>>,
    },
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn connect(config: &EmbeddedConfig, path: &Path) -> Result<Connection, EmbeddedError> {
    let classify = |e| EmbeddedError::classify(path, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
    conn.busy_timeout(config.busy_timeout).map_err(classify)?;
    // Keep a cached statement's plan: without this, a statement with a bound `LIMIT ?` is
    // prepared again on every use, and consumers run such reads for every partition they poll.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(classify)?;
    let sync = match config.sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    // Reading the journal mode touches the file header: a file that is not a database fails here.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)).map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), %mode, "Store is not in WAL mode");
    }
    conn.execute_batch(&format!("PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;")).map_err(classify)?;
    Ok(conn)
}

impl EmbeddedStorage {
    /// Opens or creates the store, checks its format, and starts the writer thread.
    pub fn open(config: EmbeddedConfig) -> Result<Self, EmbeddedError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| EmbeddedError::Io { path: config.data_dir.clone(), source })?;
        let path = config.db_path();
        let mut conn = connect(&config, &path)?;
        let classify = |e| EmbeddedError::classify(&path, e);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(classify)?;
        tx.execute_batch(schema::CREATE).map_err(classify)?;
        let found: Option<i64> = tx
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| r.get(0))
            .optional()
            .map_err(classify)?;
        match found {
            None => {
                tx.execute("INSERT INTO meta (key, value) VALUES ('format', ?1)", [schema::FORMAT])
                    .map_err(classify)?;
            }
            Some(found) if found != schema::FORMAT => {
                return Err(EmbeddedError::Format { path, found, expected: schema::FORMAT });
            }
            Some(_) => {}
        }
        tx.commit().map_err(classify)?;

        let readers = (0..2).map(|_| connect(&config, &path)).collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            path: path.clone(),
            config,
            readers: Mutex::new(readers),
            topics: RwLock::default(),
            changes: watch::channel(0).0,
        });
        let (writer, ops) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("eventbus-writer".into())
            .spawn(move || write_loop(conn, ops, &writer_shared))
            .map_err(|e| EmbeddedError::Thread(e.to_string()))?;
        tracing::info!(path = %path.display(), "Embedded store opened");
        Ok(Self { shared, writer })
    }

    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> WriteOp) -> Result<T, EmbeddedError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(op(reply)).map_err(|_| EmbeddedError::Thread("writer thread is gone".into()))?;
        answer.await.map_err(|_| EmbeddedError::Thread("writer thread dropped a reply".into()))?
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
                None => connect(&shared.config, &shared.path)?,
            };
            let result = f(&conn).map_err(|e| EmbeddedError::classify(&shared.path, e));
            shared.readers.lock().expect("readers lock").push(conn);
            result
        })
        .await
        .map_err(|e| EmbeddedError::Thread(e.to_string()))?
    }

    async fn topic(&self, name: &TopicName) -> Result<Option<TopicRow>, EmbeddedError> {
        if let Some(row) = self.shared.topics.read().expect("topics lock").get(name) {
            return Ok(Some(*row));
        }
        let key = name.to_string();
        let row = self
            .read_with(move |conn| {
                conn.query_row("SELECT id, partitions FROM topics WHERE name = ?1", [key], |r| {
                    Ok(TopicRow { id: r.get(0)?, partitions: r.get(1)? })
                })
                .optional()
            })
            .await?;
        if let Some(row) = row {
            self.shared.topics.write().expect("topics lock").insert(name.clone(), row);
        }
        Ok(row)
    }

    async fn known_topic(&self, name: &TopicName) -> Result<TopicRow, BusError> {
        self.topic(name).await?.ok_or_else(|| BusError::UnknownTopic(name.clone()))
    }
}

impl EmbeddedStorage {
    /// Deletes the records of a partition before `before`, and moves its log start there.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) async fn truncate(
        &self,
        topic: &TopicName,
        partition: Partition,
        before: Offset,
    ) -> Result<(), BusError> {
        let row = self.known_topic(topic).await?;
        self.write(|reply| WriteOp::Truncate { topic_id: row.id, partition, before, reply }).await?;
        Ok(())
    }
}

#[async_trait]
impl Storage for EmbeddedStorage {
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
        let rows = self
            .read_with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT t.name, p.partition, p.log_start, p.next_offset FROM topics t
                     JOIN partitions p ON p.topic_id = t.id
                     WHERE ?1 IS NULL OR t.name = ?1 ORDER BY t.name, p.partition",
                )?;
                let rows = stmt.query_map([filter], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get::<_, u64>(2)?, r.get::<_, u64>(3)?))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
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

    async fn append(&self, topic: &TopicName, records: Vec<NewRecord>) -> Result<Vec<Published>, BusError> {
        let row = self.known_topic(topic).await?;
        let records = records
            .into_iter()
            .map(|r| {
                let bytes = match r.payload {
                    Payload::Bytes(bytes) | Payload::Rejected { bytes, .. } => bytes,
                    Payload::Event(event) => Bytes::from(event.to_json()),
                };
                (r.partition, r.key, bytes)
            })
            .collect();
        let published = self.write(|reply| WriteOp::Append { topic_id: row.id, records, reply }).await?;
        Ok(published)
    }

    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BusError> {
        let row = self.known_topic(topic).await?;
        let records = self
            .read_with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT offset, ts_ms, key, value FROM records
                     WHERE topic_id = ?1 AND partition = ?2 AND offset >= ?3 ORDER BY offset LIMIT ?4",
                )?;
                let rows = stmt.query_map(params![row.id, partition.0, from.0, max as i64], |r| {
                    Ok(StoredRecord {
                        partition,
                        offset: Offset(r.get(0)?),
                        timestamp: Utc.timestamp_millis_opt(r.get(1)?).single().unwrap_or_default(),
                        key: r.get::<_, Option<String>>(2)?.map(Arc::from),
                        payload: Payload::Bytes(Bytes::from(r.get::<_, Vec<u8>>(3)?)),
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(records)
    }

    async fn offset_for_time(
        &self,
        topic: &TopicName,
        partition: Partition,
        time: DateTime<Utc>,
    ) -> Result<Offset, BusError> {
        let row = self.known_topic(topic).await?;
        let target = time.timestamp_millis();
        let offset = self.read_with(move |conn| first_at_or_after(conn, row.id, partition, target)).await?;
        Ok(offset)
    }

    async fn committed(&self, group: &GroupId, topic: &TopicName) -> Result<HashMap<Partition, Offset>, BusError> {
        let row = self.known_topic(topic).await?;
        let group = group.to_string();
        let offsets = self
            .read_with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT partition, offset FROM group_offsets WHERE group_id = ?1 AND topic_id = ?2",
                )?;
                let rows = stmt.query_map(params![group, row.id], |r| Ok((Partition(r.get(0)?), Offset(r.get(1)?))))?;
                rows.collect::<rusqlite::Result<HashMap<_, _>>>()
            })
            .await?;
        Ok(offsets)
    }

    async fn commit(
        &self,
        group: &GroupId,
        topic: &TopicName,
        offsets: Vec<(Partition, Offset)>,
    ) -> Result<(), BusError> {
        let row = self.known_topic(topic).await?;
        let group = group.clone();
        self.write(|reply| WriteOp::Commit { group, topic_id: row.id, offsets, reply }).await?;
        Ok(())
    }

    async fn acquire_lease(&self, group: &GroupId, topics: &[TopicName], owner: &str) -> Result<bool, BusError> {
        let mut topic_ids = Vec::with_capacity(topics.len());
        for topic in topics {
            topic_ids.push(self.known_topic(topic).await?.id);
        }
        let expires_ms = now_ms() + i64::try_from(self.shared.config.lease_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let (group, owner) = (group.clone(), owner.to_owned());
        Ok(self.write(|reply| WriteOp::Lease { group, topic_ids, owner, expires_ms, reply }).await?)
    }

    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError> {
        let group = group.clone();
        Ok(self.write(|reply| WriteOp::DeleteGroup { group, reply }).await?)
    }

    async fn release_lease(&self, group: &GroupId, topics: &[TopicName], owner: &str) -> Result<(), BusError> {
        let mut topic_ids = Vec::with_capacity(topics.len());
        for topic in topics {
            topic_ids.push(self.known_topic(topic).await?.id);
        }
        let (group, owner) = (group.clone(), owner.to_owned());
        Ok(self.write(|reply| WriteOp::Release { group, topic_ids, owner, reply }).await?)
    }

    fn lease_ttl(&self) -> Option<Duration> {
        Some(self.shared.config.lease_ttl)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    fn poll_interval(&self) -> Duration {
        self.shared.config.poll_interval
    }
}

/// The first offset with a timestamp at or after `target`. Timestamps never decrease within a
/// partition (each append takes the later of now and the last timestamp), so a binary search over
/// the retained offsets finds it.
fn first_at_or_after(conn: &Connection, topic_id: i64, partition: Partition, target: i64) -> rusqlite::Result<Offset> {
    let (mut low, mut high): (u64, u64) = conn.query_row(
        "SELECT log_start, next_offset FROM partitions WHERE topic_id = ?1 AND partition = ?2",
        params![topic_id, partition.0],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut stmt =
        conn.prepare_cached("SELECT ts_ms FROM records WHERE topic_id = ?1 AND partition = ?2 AND offset = ?3")?;
    while low < high {
        let mid = low + (high - low) / 2;
        let ts: Option<i64> = stmt.query_row(params![topic_id, partition.0, mid], |r| r.get(0)).optional()?;
        match ts {
            Some(ts) if ts < target => low = mid + 1,
            Some(_) => high = mid,
            // Deleted by retention meanwhile: everything before is older still.
            None => low = mid + 1,
        }
    }
    Ok(Offset(low))
}

/// The writer thread: takes every operation waiting, applies them in one transaction, commits
/// (one fsync for all), then answers each.
fn write_loop(mut conn: Connection, ops: mpsc::Receiver<WriteOp>, shared: &Shared) {
    // Retention runs ten times per retention period, at most every 10 s and at least every 100 ms.
    let retention_every = shared.config.retention.map(|r| (r / 10).clamp(Duration::from_millis(100), IDLE_WAKEUP));
    let mut last_retention: Option<Instant> = None;
    loop {
        if let Some(every) = retention_every
            && last_retention.is_none_or(|t| t.elapsed() >= every)
        {
            if let Err(error) = apply_retention(&mut conn, shared) {
                tracing::error!(%error, "Retention failed; will retry");
            }
            last_retention = Some(Instant::now());
        }
        let first = match ops.recv_timeout(retention_every.unwrap_or(IDLE_WAKEUP)) {
            Ok(op) => op,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        apply_batch(&mut conn, batch, shared);
    }
}

enum Outcome {
    Published(Reply<Vec<Published>>, Result<Vec<Published>, EmbeddedError>),
    Committed(Reply<()>, Result<(), EmbeddedError>),
    Created(Reply<Vec<TopicName>>, Result<Vec<TopicName>, EmbeddedError>),
    Leased(Reply<bool>, Result<bool, EmbeddedError>),
}

impl Outcome {
    fn failed(&self) -> bool {
        match self {
            Self::Published(_, r) => r.is_err(),
            Self::Committed(_, r) => r.is_err(),
            Self::Created(_, r) => r.is_err(),
            Self::Leased(_, r) => r.is_err(),
        }
    }

    /// Replaces a success by `error`: the transaction that held it did not commit.
    fn fail(self, error: &impl Fn() -> EmbeddedError) -> Self {
        match self {
            Self::Published(reply, r) => Self::Published(reply, r.and_then(|_| Err(error()))),
            Self::Committed(reply, r) => Self::Committed(reply, r.and_then(|_| Err(error()))),
            Self::Created(reply, r) => Self::Created(reply, r.and_then(|_| Err(error()))),
            Self::Leased(reply, r) => Self::Leased(reply, r.and_then(|_| Err(error()))),
        }
    }

    fn send(self) {
        // A caller that went away no longer needs its answer.
        let _ = match self {
            Self::Published(reply, r) => reply.send(r).map_err(drop),
            Self::Committed(reply, r) => reply.send(r).map_err(drop),
            Self::Created(reply, r) => reply.send(r).map_err(drop),
            Self::Leased(reply, r) => reply.send(r).map_err(drop),
        };
    }
}

fn apply_batch(conn: &mut Connection, batch: Vec<WriteOp>, shared: &Shared) {
    let classify = |e| EmbeddedError::classify(&shared.path, e);
    let shared_error = |e| {
        let error = Arc::new(classify(e));
        move || EmbeddedError::Transaction(Arc::clone(&error))
    };
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            tracing::error!(%error, "Cannot begin a write transaction");
            let error = shared_error(error);
            for op in batch {
                op_outcome_failed(op, &error).send();
            }
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut appended = false;
    for op in batch {
        // A savepoint per operation: one that fails leaves the others in the transaction.
        let outcome = match tx.savepoint() {
            Ok(sp) => {
                let outcome = apply_op(&sp, op).map_err_with(classify);
                if outcome.failed() {
                    drop(sp);
                } else if let Err(error) = sp.commit() {
                    tracing::error!(%error, "Savepoint release failed");
                }
                outcome
            }
            Err(error) => op_outcome_failed(op, &shared_error(error)),
        };
        appended |= matches!(&outcome, Outcome::Published(_, Ok(_)));
        outcomes.push(outcome);
    }
    match tx.commit() {
        Ok(()) => {
            for outcome in outcomes {
                outcome.send();
            }
            if appended {
                shared.changes.send_modify(|n| *n += 1);
            }
        }
        Err(error) => {
            tracing::error!(%error, "Write transaction failed to commit");
            let error = shared_error(error);
            for outcome in outcomes {
                outcome.fail(&error).send();
            }
        }
    }
}

fn op_outcome_failed(op: WriteOp, error: &impl Fn() -> EmbeddedError) -> Outcome {
    match op {
        WriteOp::Append { reply, .. } => Outcome::Published(reply, Err(error())),
        WriteOp::Commit { reply, .. } => Outcome::Committed(reply, Err(error())),
        WriteOp::CreateTopics { reply, .. } => Outcome::Created(reply, Err(error())),
        WriteOp::Truncate { reply, .. } | WriteOp::Release { reply, .. } | WriteOp::DeleteGroup { reply, .. } => {
            Outcome::Committed(reply, Err(error()))
        }
        WriteOp::Lease { reply, .. } => Outcome::Leased(reply, Err(error())),
    }
}

/// The raw outcome of one operation, with SQLite errors not yet given their meaning.
enum RawOutcome {
    Published(Reply<Vec<Published>>, rusqlite::Result<Vec<Published>>),
    Committed(Reply<()>, rusqlite::Result<()>),
    Created(Reply<Vec<TopicName>>, rusqlite::Result<Vec<TopicName>>),
    Leased(Reply<bool>, rusqlite::Result<bool>),
}

impl RawOutcome {
    fn map_err_with(self, classify: impl Fn(rusqlite::Error) -> EmbeddedError) -> Outcome {
        match self {
            Self::Published(reply, r) => Outcome::Published(reply, r.map_err(&classify)),
            Self::Committed(reply, r) => Outcome::Committed(reply, r.map_err(&classify)),
            Self::Created(reply, r) => Outcome::Created(reply, r.map_err(&classify)),
            Self::Leased(reply, r) => Outcome::Leased(reply, r.map_err(&classify)),
        }
    }
}

fn apply_op(conn: &Connection, op: WriteOp) -> RawOutcome {
    match op {
        WriteOp::Append { topic_id, records, reply } => RawOutcome::Published(reply, append(conn, topic_id, records)),
        WriteOp::Commit { group, topic_id, offsets, reply } => {
            RawOutcome::Committed(reply, commit(conn, &group, topic_id, &offsets))
        }
        WriteOp::CreateTopics { topics, reply } => RawOutcome::Created(reply, create_topics(conn, &topics)),
        WriteOp::Truncate { topic_id, partition, before, reply } => {
            RawOutcome::Committed(reply, truncate(conn, topic_id, partition, before))
        }
        WriteOp::Lease { group, topic_ids, owner, expires_ms, reply } => {
            RawOutcome::Leased(reply, lease(conn, &group, &topic_ids, &owner, expires_ms))
        }
        WriteOp::DeleteGroup { group, reply } => RawOutcome::Committed(reply, delete_group(conn, &group)),
        WriteOp::Release { group, topic_ids, owner, reply } => {
            RawOutcome::Committed(reply, release(conn, &group, &topic_ids, &owner))
        }
    }
}

/// Takes the lease on every topic, or on none if another owner holds any of them unexpired.
fn lease(
    conn: &Connection,
    group: &GroupId,
    topic_ids: &[i64],
    owner: &str,
    expires_ms: i64,
) -> rusqlite::Result<bool> {
    let now = now_ms();
    let mut held =
        conn.prepare_cached("SELECT owner, expires_ms FROM group_leases WHERE group_id = ?1 AND topic_id = ?2")?;
    for topic_id in topic_ids {
        let holder: Option<(String, i64)> =
            held.query_row(params![group.as_str(), topic_id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        if holder.is_some_and(|(holder, expires)| holder != owner && expires > now) {
            return Ok(false);
        }
    }
    let mut take = conn.prepare_cached(
        "INSERT INTO group_leases (group_id, topic_id, owner, expires_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (group_id, topic_id) DO UPDATE SET owner = excluded.owner, expires_ms = excluded.expires_ms",
    )?;
    for topic_id in topic_ids {
        take.execute(params![group.as_str(), topic_id, owner, expires_ms])?;
    }
    Ok(true)
}

fn delete_group(conn: &Connection, group: &GroupId) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM group_offsets WHERE group_id = ?1", [group.as_str()])?;
    conn.execute("DELETE FROM group_leases WHERE group_id = ?1", [group.as_str()])?;
    Ok(())
}

fn release(conn: &Connection, group: &GroupId, topic_ids: &[i64], owner: &str) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM group_leases WHERE group_id = ?1 AND topic_id = ?2 AND owner = ?3")?;
    for topic_id in topic_ids {
        stmt.execute(params![group.as_str(), topic_id, owner])?;
    }
    Ok(())
}

fn truncate(conn: &Connection, topic_id: i64, partition: Partition, before: Offset) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM records WHERE topic_id = ?1 AND partition = ?2 AND offset < ?3",
        params![topic_id, partition.0, before.0],
    )?;
    conn.execute(
        "UPDATE partitions SET log_start = MAX(log_start, MIN(?3, next_offset)) WHERE topic_id = ?1 AND partition = ?2",
        params![topic_id, partition.0, before.0],
    )?;
    Ok(())
}

fn append(
    conn: &Connection,
    topic_id: i64,
    records: Vec<(Partition, Option<Arc<str>>, Bytes)>,
) -> rusqlite::Result<Vec<Published>> {
    let now = now_ms();
    let mut heads: HashMap<Partition, (u64, i64)> = HashMap::new();
    let mut head_stmt =
        conn.prepare_cached("SELECT next_offset, last_ts_ms FROM partitions WHERE topic_id = ?1 AND partition = ?2")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO records (topic_id, partition, offset, ts_ms, key, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut published = Vec::with_capacity(records.len());
    for (partition, key, value) in records {
        let head = match heads.get_mut(&partition) {
            Some(head) => head,
            None => {
                let head = head_stmt.query_row(params![topic_id, partition.0], |r| Ok((r.get(0)?, r.get(1)?)))?;
                heads.entry(partition).or_insert(head)
            }
        };
        let (offset, last_ts) = *head;
        let ts = now.max(last_ts);
        insert.execute(params![topic_id, partition.0, offset, ts, key.as_deref(), &value[..]])?;
        *head = (offset + 1, ts);
        published.push(Published::at(partition, Offset(offset)));
    }
    let mut update = conn.prepare_cached(
        "UPDATE partitions SET next_offset = ?3, last_ts_ms = ?4 WHERE topic_id = ?1 AND partition = ?2",
    )?;
    for (partition, (next, ts)) in heads {
        update.execute(params![topic_id, partition.0, next, ts])?;
    }
    Ok(published)
}

fn commit(conn: &Connection, group: &GroupId, topic_id: i64, offsets: &[(Partition, Offset)]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO group_offsets (group_id, topic_id, partition, offset, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET offset = excluded.offset, updated_ms = excluded.updated_ms",
    )?;
    let now = now_ms();
    for (partition, offset) in offsets {
        stmt.execute(params![group.as_str(), topic_id, partition.0, offset.0, now])?;
    }
    Ok(())
}

fn create_topics(conn: &Connection, topics: &[(TopicName, u32)]) -> rusqlite::Result<Vec<TopicName>> {
    let mut existing = Vec::new();
    let now = now_ms();
    for (name, partitions) in topics {
        let found: Option<i64> =
            conn.query_row("SELECT id FROM topics WHERE name = ?1", [name.as_str()], |r| r.get(0)).optional()?;
        if found.is_some() {
            existing.push(name.clone());
            continue;
        }
        conn.execute(
            "INSERT INTO topics (name, partitions, created_ms) VALUES (?1, ?2, ?3)",
            params![name.as_str(), partitions, now],
        )?;
        let id = conn.last_insert_rowid();
        let mut stmt = conn.prepare_cached("INSERT INTO partitions (topic_id, partition) VALUES (?1, ?2)")?;
        for partition in 0..*partitions {
            stmt.execute(params![id, partition])?;
        }
    }
    Ok(existing)
}

/// Deletes, from the head of each partition, the records older than the retention period.
fn apply_retention(conn: &mut Connection, shared: &Shared) -> rusqlite::Result<()> {
    let Some(retention) = shared.config.retention else { return Ok(()) };
    let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let heads: Vec<(i64, u32, u64)> = {
        let mut stmt =
            tx.prepare("SELECT topic_id, partition, log_start FROM partitions WHERE next_offset > log_start")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?
    };
    let mut deleted = 0;
    for (topic_id, partition, log_start) in heads {
        // At most RETENTION_CHUNK records per partition per pass keeps the write lock short; the
        // next pass deletes more.
        let keep_from =
            first_at_or_after(&tx, topic_id, Partition(partition), cutoff)?.0.min(log_start + RETENTION_CHUNK);
        if keep_from > log_start {
            deleted += tx.execute(
                "DELETE FROM records WHERE topic_id = ?1 AND partition = ?2 AND offset < ?3",
                params![topic_id, partition, keep_from],
            )?;
            tx.execute(
                "UPDATE partitions SET log_start = ?3 WHERE topic_id = ?1 AND partition = ?2",
                params![topic_id, partition, keep_from],
            )?;
        }
    }
    tx.commit()?;
    if deleted > 0 {
        tracing::info!(deleted, "Retention deleted expired records");
    }
    Ok(())
}
