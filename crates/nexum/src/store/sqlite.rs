//! The embedded event store: one SQLite file in WAL mode. One writer thread does every write;
//! reads use a connection of their own.
//!
//! The outbox is the tail of the event log: the events after the relay's cursor. One writer
//! assigns positions in commit order, so the tail has no gaps, and an event is in the outbox the
//! moment its commit is. The relay's acknowledgement moves the cursor, through the same writer.
//!
//! # Group commit
//!
//! The writer takes every commit waiting for it, up to [`MAX_GROUP`], into one transaction, so
//! they share one disk sync. It is the one serial part of the service, so it does as little per
//! commit as it can:
//!
//! 1. It keeps the stored version of the streams it read or wrote lately ([`StreamVersions`]),
//!    and checks each commit in arrival order against them and the commits accepted before it in
//!    the group: no query per expected stream. Another process may write the file too: `PRAGMA
//!    data_version`, read once the transaction holds the write lock, tells when anyone else
//!    committed, and the writer then forgets every version it knew.
//! 2. A commit that fails its checks (`Conflict`, `Incomplete`) fails alone before it writes
//!    anything, so the group needs no savepoint per commit, which would make SQLite copy every
//!    page a commit changes into a statement journal. If a write fails all the same (an event id
//!    stored already: `DuplicateEvent`, or a failing disk), the writer rolls the group back and
//!    writes it again with a savepoint per commit, so that commit alone fails.
//! 3. It numbers each event in its streams in memory and writes each stream's version once, when
//!    the group ends: the day's audit stream is in every commit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use eventbus::{EventId, TopicName};

use super::{
    Commit, EventStore, ExpectedVersion, Lease, OutboxEntry, RecordedEvent, StoreError, StreamId, decode_event,
    decode_topic, now_ms,
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

type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// What the writer thread does.
enum Job {
    Commit(Encoded, Reply),
    /// Moves the relay's cursor to this position, if the lease still holds the role.
    Ack(u64, Lease, Reply),
    /// Takes or renews a lease for this many milliseconds: answers its epoch, or 0 while
    /// another holder's lease runs.
    Acquire {
        role: String,
        holder: String,
        ttl_ms: i64,
        reply: Reply,
    },
    /// Lets a lease lapse now.
    Release(Lease, Reply),
}

impl Job {
    fn reply(self) -> Reply {
        match self {
            Self::Commit(_, reply) | Self::Ack(_, _, reply) | Self::Release(_, reply) => reply,
            Self::Acquire { reply, .. } => reply,
        }
    }
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
-- Roles held by one process at a time (the relay's), with their fencing epoch.
CREATE TABLE IF NOT EXISTS leases (
    role TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
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
        // The store holds personal data: its file (and SQLite's -wal and -shm, which take its
        // mode) is the owner's alone.
        eventbus::private::file(path).map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
        writer.execute_batch(SCHEMA)?;
        let reader = open_connection(path, sync)?;
        let (sender, receiver) = mpsc::channel();
        thread::Builder::new()
            .name("nexum-store-writer".into())
            .spawn(move || write_loop(writer, receiver))
            .expect("spawning a thread only fails when the process is out of resources");
        Ok(Self { writer: sender, reader: Arc::new(Mutex::new(reader)) })
    }

    /// Hands a job to the writer thread and waits for its answer.
    async fn write(&self, job: impl FnOnce(Reply) -> Job) -> Result<u64, StoreError> {
        let (reply, result) = oneshot::channel();
        self.writer.send(job(reply)).map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_with<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(&self.reader);
        // A read cancelled because the runtime is shutting down is the store going away, not a
        // panic of this process.
        tokio::task::spawn_blocking(move || read(&reader.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|_| StoreError::Closed)?
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

/// The writer thread's connection, and what it knows of the stored stream versions.
struct Writer {
    connection: Connection,
    versions: StreamVersions,
}

fn write_loop(connection: Connection, receiver: mpsc::Receiver<Job>) {
    let mut writer = Writer { connection, versions: StreamVersions::default() };
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        match write_group(&mut writer, &group) {
            Ok(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    let _ = job.reply().send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, jobs = group.len(), "Event store transaction failed");
                // Whatever the failed transaction read or wrote, it is not worth trusting.
                writer.versions.forget();
                let error = Arc::new(error);
                for job in group {
                    let _ = job.reply().send(Err(StoreError::Transaction(Arc::clone(&error))));
                }
            }
        }
    }
}

/// Writes the jobs in one transaction, in order; a failing commit fails alone and writes
/// nothing. The outer error means the transaction itself failed and nothing was written.
fn write_group(writer: &mut Writer, jobs: &[Job]) -> Result<Vec<Result<u64, StoreError>>, rusqlite::Error> {
    if let Some(results) = try_group(writer, jobs, Isolation::None)? {
        return Ok(results);
    }
    // Rare: an event id stored already, or a failing disk. Only savepoints can keep the other
    // commits of the group. Should the failure come from a version the writer got wrong, its
    // versions are read again.
    writer.versions.forget();
    let results = try_group(writer, jobs, Isolation::Savepoints)?;
    Ok(results.expect("with savepoints, a failed write fails its commit, not the group"))
}

/// How a group keeps a commit's failure from the others.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// None: a commit's checks are made before it writes anything, so most failures need no
    /// undo. A write that fails all the same fails the whole group.
    None,
    /// Each commit writes in its own savepoint, so a failed write leaves nothing of it. It costs:
    /// SQLite copies each page the commit changes into its statement journal.
    Savepoints,
}

/// Writes the jobs in one transaction, in order. `None` when a write failed without
/// savepoints: then the transaction was rolled back and nothing was written.
fn try_group(
    writer: &mut Writer,
    jobs: &[Job],
    isolation: Isolation,
) -> Result<Option<Vec<Result<u64, StoreError>>>, rusqlite::Error> {
    let Writer { connection, versions } = writer;
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // The transaction holds the write lock: what it sees now stays true until it ends.
    versions.refresh(&transaction)?;
    let mut group = Group::new(&transaction)?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let result = match job {
            Job::Ack(position, lease, _) => {
                if group.holds(lease)? {
                    group.statements.ack.execute([to_integer(*position)])?;
                    Ok(*position)
                } else {
                    Err(StoreError::Fenced { role: lease.role.clone(), epoch: lease.epoch })
                }
            }
            Job::Acquire { role, holder, ttl_ms, .. } => Ok(group.acquire(role, holder, *ttl_ms)?),
            Job::Release(lease, _) => {
                if group.holds(lease)? {
                    group.statements.lapse.execute([&lease.role])?;
                }
                Ok(0)
            }
            Job::Commit(commit, _) => match group.plan(versions, commit) {
                // Checked before anything of it was written.
                Err(error) => Err(error),
                Ok(plan) if isolation == Isolation::Savepoints => group.write_isolated(&transaction, commit, plan)?,
                Ok(plan) => match group.write(&transaction, commit, &plan) {
                    Ok(last) => {
                        group.written.extend(plan.after);
                        Ok(last)
                    }
                    // Dropping the transaction rolls it back.
                    Err(_) => return Ok(None),
                },
            },
        };
        results.push(result);
    }
    let written = group.finish()?;
    transaction.commit()?;
    versions.committed(written);
    Ok(Some(results))
}

/// Streams whose versions the writer keeps at most; past it, it forgets them all and reads them
/// again as commits need them. Most streams (a transaction's, a command's) are written once.
const MAX_KNOWN_STREAMS: usize = 1 << 16;

/// The stored versions of the streams the writer read or wrote lately, so that it checks a
/// commit's expected versions in memory. This writer is the only one of this store, but another
/// process may open the same file: `PRAGMA data_version` tells when another connection committed,
/// and then the writer forgets everything it knew.
#[derive(Default)]
struct StreamVersions {
    known: HashMap<String, u64>,
    /// `PRAGMA data_version` at the writer's last transaction.
    data_version: Option<i64>,
}

impl StreamVersions {
    /// Forgets everything if another connection committed since the last call. Call it inside
    /// the write transaction, so that nobody else commits until it ends.
    fn refresh(&mut self, transaction: &Connection) -> rusqlite::Result<()> {
        let now = transaction.prepare_cached("PRAGMA data_version")?.query_row([], |row| row.get::<_, i64>(0))?;
        if self.data_version != Some(now) {
            self.known.clear();
            self.data_version = Some(now);
        }
        Ok(())
    }

    fn get(&self, stream: &str) -> Option<u64> {
        self.known.get(stream).copied()
    }

    fn remember(&mut self, stream: &str, version: u64) {
        match self.known.get_mut(stream) {
            Some(known) => *known = version,
            None => {
                self.known.insert(stream.to_owned(), version);
            }
        }
    }

    /// Takes in the versions a group transaction has committed.
    fn committed(&mut self, written: HashMap<&str, u64>) {
        if self.known.len() + written.len() > MAX_KNOWN_STREAMS {
            self.known.clear();
        }
        for (stream, version) in written {
            self.remember(stream, version);
        }
    }

    fn forget(&mut self) {
        self.known.clear();
        self.data_version = None;
    }
}

/// One group transaction in the making: its statements, and the version each stream its commits
/// wrote is at now. `streams` is written once per stream, when the group ends.
struct Group<'t, 'j> {
    statements: Statements<'t>,
    written: HashMap<&'j str, u64>,
}

/// What one commit writes, decided before it writes anything.
struct Plan<'j> {
    /// The version of each event in each of its streams, event after event, in the order of
    /// their `streams`.
    versions: Vec<u64>,
    /// Each stream the commit writes, with its version after the commit.
    after: Vec<(&'j str, u64)>,
}

impl<'t, 'j> Group<'t, 'j> {
    fn new(transaction: &'t Connection) -> rusqlite::Result<Self> {
        Ok(Self { statements: Statements::prepare(transaction)?, written: HashMap::new() })
    }

    /// The version of `stream` after the commits of the group so far.
    fn current(&mut self, versions: &mut StreamVersions, stream: &str) -> rusqlite::Result<u64> {
        if let Some(version) = self.written.get(stream).copied().or_else(|| versions.get(stream)) {
            return Ok(version);
        }
        // Nothing of the group is in `streams` yet: this is the version stored.
        let stored = self.statements.version_of.query_row([stream], |row| row.get::<_, i64>(0)).optional()?;
        let stored = stored.map_or(0, |version| version as u64);
        versions.remember(stream, stored);
        Ok(stored)
    }

    /// Checks `commit`'s expected versions, then that its events are complete, and numbers its
    /// events in their streams. Writes nothing.
    fn plan(&mut self, versions: &mut StreamVersions, commit: &'j Encoded) -> Result<Plan<'j>, StoreError> {
        for (stream, expected) in &commit.expected {
            let actual = self.current(versions, stream.as_str())?;
            if !expected.matches(actual) {
                return Err(StoreError::Conflict { stream: stream.clone(), expected: *expected, actual });
            }
        }
        let mut plan = Plan { versions: Vec::new(), after: Vec::new() };
        for event in &commit.events {
            event.event_id()?;
            for stream in &event.streams {
                let stream = stream.as_str();
                // A commit writes a handful of streams: a scan beats hashing.
                let version = match plan.after.iter_mut().find(|(written, _)| *written == stream) {
                    Some((_, after)) => {
                        *after += 1;
                        *after
                    }
                    None => {
                        let version = self.current(versions, stream)? + 1;
                        plan.after.push((stream, version));
                        version
                    }
                };
                plan.versions.push(version);
            }
        }
        Ok(plan)
    }

    /// Writes `commit` as planned in a savepoint, so that a failing write (an event id stored
    /// already) leaves nothing of it. The outer error means the savepoint itself failed.
    fn write_isolated(
        &mut self,
        transaction: &Connection,
        commit: &Encoded,
        plan: Plan<'j>,
    ) -> rusqlite::Result<Result<u64, StoreError>> {
        transaction.execute_batch("SAVEPOINT a_commit")?;
        let result = self.write(transaction, commit, &plan);
        match result {
            Ok(_) => self.written.extend(plan.after),
            Err(_) => transaction.execute_batch("ROLLBACK TO a_commit")?,
        }
        transaction.execute_batch("RELEASE a_commit")?;
        Ok(result)
    }

    /// Inserts `commit`'s events and their links at the versions planned; returns the position
    /// of its last event.
    fn write(&mut self, transaction: &Connection, commit: &Encoded, plan: &Plan<'_>) -> Result<u64, StoreError> {
        let mut versions = plan.versions.as_slice();
        let mut last = 0;
        for event in &commit.events {
            let event_id = event.event_id()?;
            let (own, rest) = versions.split_at(event.streams.len());
            versions = rest;
            let inserted = event_id.with_str(|event_id| {
                self.statements.insert_event.execute(params![
                    event_id,
                    event.streams[0].as_str(),
                    to_integer(own[0]),
                    event.topic.as_str(),
                    event.key,
                    event.payload
                ])
            });
            match inserted {
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                    return Err(StoreError::DuplicateEvent(event_id.clone()));
                }
                other => other?,
            };
            let position = transaction.last_insert_rowid();
            for (stream, version) in event.streams.iter().zip(own) {
                self.statements.link.execute(params![stream.as_str(), to_integer(*version), position])?;
            }
            last = position as u64;
        }
        Ok(last)
    }

    /// Whether `lease` is its role's current one: its holder and epoch.
    fn holds(&mut self, lease: &Lease) -> rusqlite::Result<bool> {
        let current =
            self.statements.lease_of.query_row([&lease.role], |row| Ok((row.get(0)?, row.get(1)?))).optional()?;
        Ok(current.is_some_and(|(holder, epoch): (String, i64)| holder == lease.holder && epoch as u64 == lease.epoch))
    }

    /// Takes or renews `role` for `holder`: its epoch, or 0 while another holder's lease runs.
    fn acquire(&mut self, role: &str, holder: &str, ttl_ms: i64) -> rusqlite::Result<u64> {
        let now = now_ms();
        let current = self
            .statements
            .lease_of
            .query_row([role], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)))
            .optional()?;
        let epoch = match current {
            Some((current, epoch, until)) if current == holder && until > now => epoch,
            Some((_, _, until)) if until > now => return Ok(0),
            Some((_, epoch, _)) => epoch + 1,
            None => 1,
        };
        self.statements.set_lease.execute(params![role, holder, epoch, now.saturating_add(ttl_ms)])?;
        Ok(epoch as u64)
    }

    /// Stores the new version of each stream the group wrote, and returns them.
    fn finish(mut self) -> rusqlite::Result<HashMap<&'j str, u64>> {
        for (stream, version) in &self.written {
            self.statements.set_version.execute(params![stream, to_integer(*version)])?;
        }
        Ok(self.written)
    }
}

/// The writer's statements, looked up in the connection's cache once per group rather than once
/// per row.
struct Statements<'t> {
    version_of: rusqlite::CachedStatement<'t>,
    insert_event: rusqlite::CachedStatement<'t>,
    link: rusqlite::CachedStatement<'t>,
    set_version: rusqlite::CachedStatement<'t>,
    ack: rusqlite::CachedStatement<'t>,
    lease_of: rusqlite::CachedStatement<'t>,
    set_lease: rusqlite::CachedStatement<'t>,
    lapse: rusqlite::CachedStatement<'t>,
}

impl<'t> Statements<'t> {
    fn prepare(transaction: &'t Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            version_of: transaction.prepare_cached("SELECT version FROM streams WHERE stream = ?1")?,
            insert_event: transaction.prepare_cached(
                "INSERT INTO events (event_id, stream, version, topic, key, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            link: transaction
                .prepare_cached("INSERT INTO stream_events (stream, version, position) VALUES (?1, ?2, ?3)")?,
            set_version: transaction.prepare_cached(
                "INSERT INTO streams (stream, version) VALUES (?1, ?2)
                 ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
            )?,
            ack: transaction.prepare_cached("UPDATE relay_cursor SET position = max(position, ?1) WHERE id = 1")?,
            lease_of: transaction.prepare_cached("SELECT holder, epoch, expires_ms FROM leases WHERE role = ?1")?,
            set_lease: transaction.prepare_cached(
                "INSERT INTO leases (role, holder, epoch, expires_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (role) DO UPDATE SET
                     holder = excluded.holder, epoch = excluded.epoch, expires_ms = excluded.expires_ms",
            )?,
            lapse: transaction.prepare_cached("UPDATE leases SET expires_ms = 0 WHERE role = ?1")?,
        })
    }
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
        // Encoding happens here, on the caller's thread: the one writer thread only writes.
        let encoded = Encoded::new(commit);
        self.write(|reply| Job::Commit(encoded, reply)).await
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

    async fn outbox_ack(&self, id: u64, lease: &Lease) -> Result<(), StoreError> {
        self.write(|reply| Job::Ack(id, lease.clone(), reply)).await.map(drop)
    }

    async fn acquire_lease(&self, role: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let (role, holder) = (role.to_owned(), holder.to_owned());
        let epoch =
            self.write(|reply| Job::Acquire { role: role.clone(), holder: holder.clone(), ttl_ms, reply }).await?;
        Ok((epoch > 0).then_some(Lease { role, holder, epoch }))
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.write(|reply| Job::Release(lease.clone(), reply)).await.map(drop)
    }

    async fn lease_of(&self, role: &str) -> Result<Option<Lease>, StoreError> {
        let role = role.to_owned();
        self.read_with(move |conn| {
            let row = conn
                .prepare_cached("SELECT holder, epoch FROM leases WHERE role = ?1 AND expires_ms > ?2")?
                .query_row(params![role, now_ms()], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
                .optional()?;
            Ok(row.map(|(holder, epoch)| Lease { role, holder, epoch: epoch as u64 }))
        })
        .await
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

#[cfg(test)]
mod tests {
    use eventbus::EventSchema;
    use serde_json::Map;

    use super::*;
    use crate::store::NewEvent;

    fn open(path: &Path) -> SqliteStore {
        SqliteStore::open(path, SqliteSync::Normal).expect("opening the SQLite store")
    }

    fn event() -> EventSchema {
        EventSchema::new("thing_happened", "thing", "a", Map::new())
    }

    /// A commit of `event` to `stream`, checking that the stream is at `expected`.
    fn commit_of(stream: &StreamId, expected: ExpectedVersion, event: EventSchema) -> Commit {
        let topic = TopicName::new("nexum.test.events").expect("a valid topic name");
        let mut commit = Commit::default().expect(stream.clone(), expected);
        commit.push(NewEvent::new(stream.clone(), topic, event));
        commit
    }

    /// A commit of a new event to `stream`, checking that the stream is at `expected`.
    fn commit_to(stream: &StreamId, expected: ExpectedVersion) -> Commit {
        commit_of(stream, expected, event())
    }

    fn versions_and_positions(events: &[RecordedEvent]) -> Vec<(u64, u64)> {
        events.iter().map(|e| (e.version, e.position)).collect()
    }

    #[tokio::test]
    async fn given_another_connection_wrote_a_stream_when_committing_then_its_version_is_checked_against_that_write() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("events.db");
        let (store, other) = (open(&path), open(&path));
        let s = StreamId::from_name("account-a");
        store.commit(commit_to(&s, ExpectedVersion::NoStream)).await.unwrap();
        other.commit(commit_to(&s, ExpectedVersion::Exact(1))).await.unwrap();

        let stale = store.commit(commit_to(&s, ExpectedVersion::Exact(1))).await;
        let fresh = store.commit(commit_to(&s, ExpectedVersion::Exact(2))).await;

        assert!(matches!(stale, Err(StoreError::Conflict { actual: 2, .. })), "{stale:?}");
        assert_eq!(fresh.unwrap(), 3);
        assert_eq!(versions_and_positions(&store.read(&s, 1).await.unwrap()), [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(other.stream_version(&s).await.unwrap(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn given_an_event_id_stored_by_an_earlier_group_when_a_group_repeats_it_then_that_commit_alone_fails() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = open(&dir.path().join("events.db"));
        let (a, b) = (StreamId::from_name("account-a"), StreamId::from_name("account-b"));
        let stored = event();
        store.commit(commit_of(&a, ExpectedVersion::NoStream, stored.clone())).await.unwrap();

        // Issued at once, so that the writer takes them into one group: the repeated id fails
        // the group's first try, without savepoints, and the writer writes it again with them.
        let (second, repeated, first_of_b, third) = tokio::join!(
            store.commit(commit_to(&a, ExpectedVersion::Exact(1))),
            store.commit(commit_of(&b, ExpectedVersion::Any, stored.clone())),
            store.commit(commit_to(&b, ExpectedVersion::NoStream)),
            store.commit(commit_to(&a, ExpectedVersion::Exact(2))),
        );
        let after = store.commit(commit_to(&b, ExpectedVersion::Exact(1))).await;

        assert!(matches!(&repeated, Err(StoreError::DuplicateEvent(id)) if Some(id) == stored.event_id.as_ref()));
        assert_eq!((second.unwrap(), first_of_b.unwrap(), third.unwrap(), after.unwrap()), (2, 3, 4, 5));
        assert_eq!(versions_and_positions(&store.read(&a, 1).await.unwrap()), [(1, 1), (2, 2), (3, 4)]);
        assert_eq!(versions_and_positions(&store.read(&b, 1).await.unwrap()), [(1, 3), (2, 5)]);
        assert_eq!(store.outbox_len().await.unwrap(), 5);
    }
}
