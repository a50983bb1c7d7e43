//! The embedded event store: one SQLite file in WAL mode. A writer thread takes the commits
//! that arrive together into one transaction (group commit), each inside its own savepoint, so a
//! conflicting commit fails alone and the others share one disk sync.
//!
//! The outbox is the tail of the event log: the events after the relay's cursor. One writer
//! assigns positions in commit order, so the tail has no gaps, and an event is in the outbox the
//! moment its commit is. The relay's acknowledgement moves the cursor, through the same writer.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use eventbus::{EventId, TopicName};

use super::{
    Commit, EventStore, ExpectedVersion, OutboxEntry, RecordedEvent, StoreError, StreamId, decode_event, decode_topic,
};

/// A commit taken apart on the caller's thread: its events encoded, the rest of them dropped
/// there, so the one writer thread only writes.
struct Encoded {
    expected: Vec<(StreamId, ExpectedVersion)>,
    events: Vec<EncodedEvent>,
}

/// The columns of one event to store.
struct EncodedEvent {
    /// Checked by the writer, after the commit's versions, as the other stores check it.
    event_id: Option<EventId>,
    /// Its own stream first, then those it is linked into.
    streams: Vec<StreamId>,
    topic: TopicName,
    key: String,
    payload: Vec<u8>,
}

impl Encoded {
    fn new(commit: Commit) -> Self {
        let events = commit
            .events
            .into_iter()
            .map(|new| EncodedEvent {
                payload: new.event.to_json(),
                event_id: new.event.event_id,
                streams: std::iter::once(new.stream).chain(new.links).collect(),
                topic: new.topic,
                key: new.key,
            })
            .collect();
        Self { expected: commit.expected, events }
    }
}

impl EncodedEvent {
    fn event_id(&self) -> Result<&EventId, StoreError> {
        self.event_id.as_ref().ok_or(StoreError::Incomplete("event_id"))
    }
}

/// What the writer thread does.
enum Job {
    Commit(Encoded, oneshot::Sender<Result<u64, StoreError>>),
    /// Moves the relay's cursor to this position.
    Ack(u64, oneshot::Sender<Result<u64, StoreError>>),
}

/// Commits the writer takes at most into one transaction.
const MAX_GROUP: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    stream TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_events (
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (stream, version)
) WITHOUT ROWID;
-- The last position the relay has published.
CREATE TABLE IF NOT EXISTS relay_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT OR IGNORE INTO relay_cursor (id, position) VALUES (1, 0);
";

/// How hard SQLite pushes each commit to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// Every commit survives a power cut (`synchronous=FULL`). The default.
    #[default]
    Full,
    /// Every commit survives a crash of the process; the last ones may be lost in a power cut
    /// (`synchronous=NORMAL`).
    Normal,
}

/// The embedded event store.
pub struct SqliteStore {
    writer: mpsc::Sender<Job>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (or creates) the store in the file at `path`.
    pub fn open(path: &Path, sync: SqliteSync) -> Result<Self, StoreError> {
        let writer = open_connection(path, sync)?;
        writer.execute_batch(SCHEMA)?;
        let reader = open_connection(path, sync)?;
        let (sender, receiver) = mpsc::channel();
        thread::Builder::new()
            .name("nexum-store-writer".into())
            .spawn(move || write_loop(writer, receiver))
            .expect("spawning a thread only fails when the process is out of resources");
        Ok(Self { writer: sender, reader: Arc::new(Mutex::new(reader)) })
    }

    async fn read_with<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || read(&reader.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .expect("store reads do not panic")
    }
}

fn open_connection(path: &Path, sync: SqliteSync) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    // Keep a cached statement's plan: without this, the statements with a bound `LIMIT ?`
    // (`read_all`, `outbox_pending`) are prepared again on every use.
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", if sync == SqliteSync::Full { "FULL" } else { "NORMAL" })?;
    Ok(connection)
}

fn write_loop(mut connection: Connection, receiver: mpsc::Receiver<Job>) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        match write_group(&mut connection, &group) {
            Ok(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    let (Job::Commit(_, reply) | Job::Ack(_, reply)) = job;
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, jobs = group.len(), "Event store transaction failed");
                let error = Arc::new(error);
                for job in group {
                    let (Job::Commit(_, reply) | Job::Ack(_, reply)) = job;
                    let _ = reply.send(Err(StoreError::Transaction(Arc::clone(&error))));
                }
            }
        }
    }
}

/// Writes each commit in its own savepoint of one transaction. The outer error means the
/// transaction itself failed and nothing was written.
fn write_group(connection: &mut Connection, jobs: &[Job]) -> Result<Vec<Result<u64, StoreError>>, rusqlite::Error> {
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(jobs.len());
    {
        let mut statements = Statements::prepare(&transaction)?;
        for job in jobs {
            let commit = match job {
                Job::Commit(commit, _) => commit,
                Job::Ack(position, _) => {
                    statements.ack.execute([to_integer(*position)])?;
                    results.push(Ok(*position));
                    continue;
                }
            };
            // A savepoint rolled back leaves nothing of a failed commit.
            transaction.execute_batch("SAVEPOINT a_commit")?;
            let result = write_commit(&transaction, &mut statements, commit);
            if result.is_err() {
                transaction.execute_batch("ROLLBACK TO a_commit")?;
            }
            transaction.execute_batch("RELEASE a_commit")?;
            results.push(result);
        }
    }
    transaction.commit()?;
    Ok(results)
}

/// The writer's statements, looked up in the connection's cache once per group rather than once
/// per row.
struct Statements<'t> {
    version_of: rusqlite::CachedStatement<'t>,
    insert_event: rusqlite::CachedStatement<'t>,
    bump: rusqlite::CachedStatement<'t>,
    link: rusqlite::CachedStatement<'t>,
    ack: rusqlite::CachedStatement<'t>,
}

impl<'t> Statements<'t> {
    fn prepare(transaction: &'t Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            version_of: transaction.prepare_cached("SELECT version FROM streams WHERE stream = ?1")?,
            insert_event: transaction.prepare_cached(
                "INSERT INTO events (event_id, stream, version, topic, key, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            bump: transaction.prepare_cached(
                "INSERT INTO streams (stream, version) VALUES (?1, 1)
                 ON CONFLICT (stream) DO UPDATE SET version = version + 1 RETURNING version",
            )?,
            link: transaction
                .prepare_cached("INSERT INTO stream_events (stream, version, position) VALUES (?1, ?2, ?3)")?,
            ack: transaction.prepare_cached("UPDATE relay_cursor SET position = max(position, ?1) WHERE id = 1")?,
        })
    }
}

fn write_commit(tx: &Connection, statements: &mut Statements<'_>, commit: &Encoded) -> Result<u64, StoreError> {
    for (stream, expected) in &commit.expected {
        let actual =
            statements.version_of.query_row([stream.as_str()], |row| row.get::<_, i64>(0)).optional()?.unwrap_or(0)
                as u64;
        if !expected.matches(actual) {
            return Err(StoreError::Conflict { stream: stream.clone(), expected: *expected, actual });
        }
    }
    let mut last = 0;
    for event in &commit.events {
        let event_id = event.event_id()?;
        let versions = event
            .streams
            .iter()
            .map(|stream| statements.bump.query_row([stream.as_str()], |row| row.get::<_, i64>(0)))
            .collect::<Result<Vec<_>, _>>()?;
        let inserted = statements.insert_event.execute(params![
            event_id.as_str(),
            event.streams[0].as_str(),
            versions[0],
            event.topic.as_str(),
            event.key,
            event.payload
        ]);
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                return Err(StoreError::DuplicateEvent(event_id.clone()));
            }
            other => other?,
        };
        let position = tx.last_insert_rowid();
        for (stream, version) in event.streams.iter().zip(&versions) {
            statements.link.execute(params![stream.as_str(), version, position])?;
        }
        last = position as u64;
    }
    Ok(last)
}

/// A position, version or count as an SQLite integer; past `i64::MAX` it means "no end".
fn to_integer(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

fn recorded(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, i64, String, Vec<u8>)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn to_recorded(
    (position, stream, version, topic, payload): (i64, String, i64, String, Vec<u8>),
) -> Result<RecordedEvent, StoreError> {
    let position = position as u64;
    Ok(RecordedEvent {
        position,
        stream: StreamId::from_name(stream),
        version: version as u64,
        topic: decode_topic(position, &topic)?,
        event: decode_event(position, &payload)?,
    })
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn commit(&self, commit: Commit) -> Result<u64, StoreError> {
        let (reply, result) = oneshot::channel();
        // Encoding happens here, on the caller's thread: the one writer thread only writes.
        self.writer.send(Job::Commit(Encoded::new(commit), reply)).map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    async fn read(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.clone();
        self.read_with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT e.position, s.stream, s.version, e.topic, e.payload
                 FROM stream_events s JOIN events e ON e.position = s.position
                 WHERE s.stream = ?1 AND s.version >= ?2 ORDER BY s.version",
            )?;
            let rows = statement.query_map(params![stream.as_str(), to_integer(from_version)], recorded)?;
            rows.map(|row| to_recorded(row?)).collect()
        })
        .await
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT position, stream, version, topic, payload FROM events
                 WHERE position >= ?1 ORDER BY position LIMIT ?2",
            )?;
            let rows = statement.query_map(params![to_integer(from_position), to_integer(limit)], recorded)?;
            rows.map(|row| to_recorded(row?)).collect()
        })
        .await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let stream = stream.clone();
        self.read_with(move |connection| {
            let version = connection
                .prepare_cached("SELECT version FROM streams WHERE stream = ?1")?
                .query_row([stream.as_str()], |row| row.get::<_, i64>(0))
                .optional()?;
            Ok(version.unwrap_or(0) as u64)
        })
        .await
    }

    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read_with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT position, topic, key, payload FROM events
                 WHERE position > (SELECT position FROM relay_cursor WHERE id = 1) ORDER BY position LIMIT ?1",
            )?;
            let rows = statement.query_map([to_integer(limit)], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get(2)?, row.get::<_, Vec<u8>>(3)?))
            })?;
            rows.map(|row| {
                let (position, topic, key, payload) = row?;
                let position = position as u64;
                Ok(OutboxEntry {
                    id: position,
                    topic: decode_topic(position, &topic)?,
                    key,
                    event: decode_event(position, &payload)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn outbox_ack(&self, id: u64) -> Result<(), StoreError> {
        let (reply, result) = oneshot::channel();
        self.writer.send(Job::Ack(id, reply)).map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?.map(drop)
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.read_with(|connection| {
            let pending = connection.query_row(
                "SELECT count(*) FROM events WHERE position > (SELECT position FROM relay_cursor WHERE id = 1)",
                [],
                |row| row.get::<_, i64>(0),
            )?;
            Ok(pending as u64)
        })
        .await
    }
}
