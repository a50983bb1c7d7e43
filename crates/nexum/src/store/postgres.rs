//! The PostgreSQL event store: the tables of the SQLite store in one schema of a database. One
//! writer task, with a connection of its own, stores the commits that arrive together in one
//! transaction (group commit); reads use a small pool of other connections.
//!
//! # Why commits take a lock
//!
//! The global order must have no gaps, and nothing may appear in it behind a position that a
//! reader has already passed: the outbox relay and `read_all` readers remember where they are and
//! never look back. A sequence does not give that: a transaction that draws position 7 and
//! commits after the one that drew 8 lets a reader see 8 before 7 exists, and a rolled-back
//! transaction leaves a hole. So every transaction that writes events takes a transaction-level
//! advisory lock, derived from the schema name, before it reads anything, and draws its positions
//! from `max(position)` while holding it. PostgreSQL makes a commit visible before it releases the
//! transaction's locks, so the next transaction draws its positions after the previous one is
//! visible to everyone: positions are gap-free and become visible in order, even with several
//! processes writing to one schema.
//!
//! # Group commit
//!
//! Holding the lock, a transaction is the only writer of the schema, so one transaction per commit
//! would store one commit per WAL flush. Instead the writer takes every commit waiting for it, up
//! to [`MAX_GROUP`], into one transaction:
//!
//! 1. `BEGIN`, the lock, and under it the versions of every stream the group names, the last
//!    position, and which of the group's event ids are stored already: one pipelined round trip.
//! 2. In memory, each commit in arrival order is checked against that state and the commits
//!    accepted before it, so the second of two commits to a stream sees the first's version. A
//!    commit that fails its checks (`Conflict`, `DuplicateEvent`) is left out and fails alone.
//!    The others get their positions and versions.
//! 3. The accepted commits' rows, as one set of `UNNEST` inserts, and `COMMIT`: one more pipelined
//!    round trip and one WAL flush for the whole group.
//!
//! A commit that fails its checks never reaches the database, so no commit needs a savepoint: a
//! savepoint each would add a round trip per commit, and more than 64 subtransactions in one
//! transaction overflow PostgreSQL's per-session cache of them, which slows every other session's
//! snapshots while the transaction runs.
//!
//! If the transaction fails anyway (the database refused a row, or the connection broke), nothing
//! of the group was written, and the writer stores the group's commits again one transaction
//! each: a commit that the database refuses fails alone, and on a broken connection each commit
//! gets its own error at once. The writer reconnects when the next commits arrive, waiting longer
//! after each failed attempt. (A connection that breaks after `COMMIT` was sent leaves the outcome
//! unknown, as with any database: the group may be stored, and a retried commit of it then fails
//! with `DuplicateEvent`.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use eventbus::EventId;
use tokio::sync::{Mutex, MutexGuard, mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::{Commit, EventStore, Lease, OutboxEntry, RecordedEvent, StoreError, StreamId, decode_event, decode_topic};

/// Connections in the read pool of one store. The writer has one more, of its own.
const POOL_SIZE: usize = 4;

/// Commits the writer takes at most into one transaction.
const MAX_GROUP: usize = 1024;

/// Commits that may wait for the writer; beyond that, callers wait for room.
const QUEUE: usize = 4 * MAX_GROUP;

/// The writer's wait after its first failed attempt to reconnect; it doubles after each further
/// failure, up to [`RECONNECT_MAX`]. Commits fail at once while it waits.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The tables, as in the SQLite store. `{s}` is the quoted schema name.
///
/// `payload` is the event's JSON as bytes, not `jsonb`: `jsonb` reorders keys, and a stored
/// event must read back byte for byte. The outbox `id` is the event's position, so ids increase
/// in commit order and are never reused.
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS {s}.events (
    position bigint PRIMARY KEY,
    event_id text NOT NULL CONSTRAINT events_event_id_unique UNIQUE,
    stream text NOT NULL,
    version bigint NOT NULL,
    topic text NOT NULL,
    key text NOT NULL,
    payload bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.streams (
    stream text PRIMARY KEY,
    version bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.stream_events (
    stream text NOT NULL,
    version bigint NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (stream, version)
);
CREATE TABLE IF NOT EXISTS {s}.outbox (
    id bigint PRIMARY KEY,
    position bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.leases (
    role text PRIMARY KEY,
    holder text NOT NULL,
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
";

/// The production event store.
pub struct PostgresStore {
    config: Config,
    schema: String,
    sql: Sql,
    slots: Vec<Mutex<Slot>>,
    next_slot: AtomicUsize,
    /// Dropping the store drops this sender: the writer stores what is queued, then stops.
    writer: mpsc::Sender<Job>,
}

impl PostgresStore {
    /// Connects to the database that `config` names (libpq style, e.g.
    /// `host=127.0.0.1 port=5432 user=postgres dbname=nexum`) and opens the store in `schema`,
    /// creating the schema and its tables if they are missing. Several processes may do this at
    /// once. Connections are not encrypted: reach the server over a local socket or a trusted
    /// network. Without an `application_name` in `config`, the store's connections are named
    /// `nexum <schema>` on the server.
    pub async fn connect(config: &str, schema: &str) -> Result<Self, StoreError> {
        validate_schema(schema)?;
        let mut config: Config = config.parse()?;
        if config.get_application_name().is_none() {
            config.application_name(format!("nexum {schema}"));
        }
        let sql = Sql::new(schema);
        let lock_key = lock_key(schema);

        let mut client = open_client(&config).await?;
        {
            // Concurrent `CREATE ... IF NOT EXISTS` of the same object can fail on the catalog's
            // unique indexes; the schema's lock makes one process create and the others wait.
            let transaction = client.transaction().await?;
            transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key]).await?;
            transaction.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema))).await?;
            transaction.batch_execute(&TABLES.replace("{s}", &quote(schema))).await?;
            transaction.commit().await?;
        }
        let statements = Statements::prepare(&client, &sql).await?;
        let writer = Writer {
            config: config.clone(),
            sql: sql.clone(),
            schema: schema.to_owned(),
            lock_key,
            connection: Slot { client, statements },
            failures: 0,
            retry_at: Instant::now(),
        };
        let mut slots = Vec::with_capacity(POOL_SIZE);
        for _ in 0..POOL_SIZE {
            slots.push(Mutex::new(Slot::open(&config, &sql).await?));
        }
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(writer.run(receiver));
        Ok(Self { config, schema: schema.to_owned(), sql, slots, next_slot: AtomicUsize::new(0), writer: sender })
    }

    /// The schema the store lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the store's schema with everything in it. For tests that clean up after themselves.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let slot = self.slot().await?;
        slot.client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&self.schema))).await?;
        Ok(())
    }

    /// A free connection of the read pool, or the next one in turn when all are busy. A
    /// connection that has broken is replaced, so the store recovers when the server comes back.
    async fn slot(&self) -> Result<MutexGuard<'_, Slot>, StoreError> {
        let start = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        let free = (0..n).find_map(|i| self.slots[(start + i) % n].try_lock().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => self.slots[start % n].lock().await,
        };
        if slot.client.is_closed() {
            tracing::warn!(schema = %self.schema, "Reconnecting to PostgreSQL");
            *slot = Slot::open(&self.config, &self.sql).await?;
        }
        Ok(slot)
    }
}

/// A commit on its way to the writer, with what the caller's task could work out for it.
struct Job {
    commit: Commit,
    /// The id of each event, in order.
    event_ids: Vec<EventId>,
    /// The same ids as text, as the database keeps them.
    id_texts: Vec<String>,
    /// The JSON of each event, in order.
    payloads: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

impl Job {
    /// The streams whose versions the commit checks or bumps.
    fn streams(&self) -> impl Iterator<Item = &str> {
        let expected = self.commit.expected.iter().map(|(stream, _)| stream.as_str());
        expected.chain(self.commit.events.iter().flat_map(|new| new.streams().map(StreamId::as_str)))
    }

    /// Checks the commit against the streams' `versions` and the event ids `taken` before it:
    /// versions first, as the SQLite store does.
    fn check(&self, versions: &HashMap<&str, i64>, taken: &HashSet<&str>) -> Result<(), StoreError> {
        for (stream, expected) in &self.commit.expected {
            let actual = versions.get(stream.as_str()).copied().unwrap_or(0) as u64;
            if !expected.matches(actual) {
                return Err(StoreError::Conflict { stream: stream.clone(), expected: *expected, actual });
            }
        }
        let mut own = HashSet::with_capacity(self.id_texts.len());
        match self.id_texts.iter().position(|id| taken.contains(id.as_str()) || !own.insert(id.as_str())) {
            Some(index) => Err(StoreError::DuplicateEvent(self.event_ids[index].clone())),
            None => Ok(()),
        }
    }
}

/// The task that stores every commit, over a connection of its own.
struct Writer {
    config: Config,
    sql: Sql,
    schema: String,
    lock_key: i64,
    connection: Slot,
    /// Failed attempts to reconnect since the connection broke.
    failures: u32,
    /// When the next attempt to reconnect may be made.
    retry_at: Instant,
}

impl Writer {
    /// Stores groups of the commits that `jobs` brings until every sender is gone.
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
            self.reconnect_if_broken().await;
            let results = match self.write_group(&group).await {
                Ok(results) => results,
                Err(error) if group.len() == 1 => vec![Err(error.into())],
                Err(error) => {
                    if !self.connection.client.is_closed() {
                        let commits = group.len();
                        tracing::warn!(%error, commits, "Group commit failed; storing its commits one by one");
                    }
                    let mut results = Vec::with_capacity(group.len());
                    for job in &group {
                        let result = self.write_group(std::slice::from_ref(job)).await;
                        results.push(result.map_err(StoreError::from).and_then(|mut alone| alone.remove(0)));
                    }
                    results
                }
            };
            for (job, result) in group.drain(..).zip(results) {
                // The caller may have stopped waiting; its commit is stored all the same.
                let _ = job.reply.send(result);
            }
        }
    }

    /// Replaces a broken connection, unless an attempt failed a short while ago.
    async fn reconnect_if_broken(&mut self) {
        if !self.connection.client.is_closed() || Instant::now() < self.retry_at {
            return;
        }
        match Slot::open(&self.config, &self.sql).await {
            Ok(connection) => {
                let (schema, failures) = (&self.schema, self.failures);
                tracing::info!(%schema, failures, "Event store writer reconnected to PostgreSQL");
                self.connection = connection;
                self.failures = 0;
            }
            Err(error) => {
                self.failures += 1;
                let wait = RECONNECT_FIRST.saturating_mul(1 << (self.failures - 1).min(16)).min(RECONNECT_MAX);
                self.retry_at = Instant::now() + wait;
                // The 1st, 2nd, 4th, 8th... failure: a long outage does not flood the log.
                if self.failures.is_power_of_two() {
                    tracing::error!(
                        schema = %self.schema,
                        %error,
                        failures = self.failures,
                        "Event store writer cannot reconnect to PostgreSQL; commits fail until it can"
                    );
                }
            }
        }
    }

    /// Stores `jobs` in one transaction and returns each one's result, in order. The outer error
    /// means the transaction failed and nothing of the group was written (unless the connection
    /// broke after `COMMIT` was sent).
    async fn write_group(&self, jobs: &[Job]) -> Result<Vec<Result<u64, StoreError>>, tokio_postgres::Error> {
        let Slot { client, statements } = &self.connection;
        let mut streams: Vec<&str> = jobs.iter().flat_map(Job::streams).collect();
        streams.sort_unstable();
        streams.dedup();
        let event_ids: Vec<&str> = jobs.iter().flat_map(|job| job.id_texts.iter().map(String::as_str)).collect();

        // Pipelined: the reads are sent with the lock request and run once it is granted. They
        // must stay separate statements: a statement's snapshot is taken when it starts, and
        // READ COMMITTED (whatever the server's default) makes each see every commit before it.
        // (A request is sent when its future is first polled; `join!` polls in order.)
        let (begun, locked, versions, last, stored) = tokio::join!(
            client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
            async { client.execute(&statements.lock, &[&self.lock_key]).await },
            async { client.query(&statements.versions, &[&streams]).await },
            async { client.query_one(&statements.last_position, &[]).await },
            async { client.query(&statements.stored_ids, &[&event_ids]).await },
        );
        // The first failure is the cause; the statements after it fail because the transaction
        // is aborted.
        let read = begun.and(locked).and_then(|_| Ok((versions?, last?, stored?)));
        let (versions, last, stored) = match read {
            Ok(read) => read,
            Err(error) => {
                // Nothing was written; on a broken connection the server rolls back by itself.
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(error);
            }
        };
        let mut versions: HashMap<&str, i64> = versions.iter().map(|row| (row.get(0), row.get(1))).collect();
        let mut last: i64 = last.get(0);
        let mut taken: HashSet<&str> = stored.iter().map(|row| row.get(0)).collect();

        let mut rows = Rows::default();
        let results: Vec<_> = jobs
            .iter()
            .map(|job| {
                job.check(&versions, &taken)?;
                if job.commit.events.is_empty() {
                    return Ok(0);
                }
                rows.add(job, &mut last, &mut versions);
                taken.extend(job.id_texts.iter().map(String::as_str));
                Ok(last as u64)
            })
            .collect();
        if rows.positions.is_empty() {
            client.batch_execute("COMMIT").await?;
            return Ok(results);
        }

        let (bumped_streams, bumped_versions): (Vec<&str>, Vec<i64>) =
            rows.bumped.iter().map(|(s, v)| (*s, *v)).unzip();
        let events: [&(dyn ToSql + Sync); 7] =
            [&rows.positions, &rows.event_ids, &rows.streams, &rows.versions, &rows.topics, &rows.keys, &rows.payloads];
        let links: [&(dyn ToSql + Sync); 3] = [&rows.link_streams, &rows.link_versions, &rows.link_positions];
        // If an insert fails, the transaction is aborted and the pipelined COMMIT rolls it back.
        let (events, links, bumps, outbox, committed) = tokio::join!(
            client.execute(&statements.insert_events, &events),
            client.execute(&statements.insert_links, &links),
            async { client.execute(&statements.upsert_streams, &[&bumped_streams, &bumped_versions]).await },
            async { client.execute(&statements.insert_outbox, &[&rows.positions]).await },
            client.batch_execute("COMMIT"),
        );
        events?;
        links?;
        bumps?;
        outbox?;
        committed?;
        Ok(results)
    }
}

/// The columns of a group's inserts, as arrays for `UNNEST`.
#[derive(Default)]
struct Rows<'a> {
    positions: Vec<i64>,
    event_ids: Vec<&'a str>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    topics: Vec<&'a str>,
    keys: Vec<&'a str>,
    payloads: Vec<&'a [u8]>,
    link_streams: Vec<&'a str>,
    link_versions: Vec<i64>,
    link_positions: Vec<i64>,
    /// The new version of each stream the group appends to.
    bumped: BTreeMap<&'a str, i64>,
}

impl<'a> Rows<'a> {
    /// Adds the rows of `job`: its events get the positions after `last` and each stream its
    /// next versions after those in `versions`, which are moved on.
    fn add(&mut self, job: &'a Job, last: &mut i64, versions: &mut HashMap<&'a str, i64>) {
        for ((new, id), payload) in job.commit.events.iter().zip(&job.id_texts).zip(&job.payloads) {
            *last += 1;
            for (i, stream) in new.streams().enumerate() {
                let version = versions.entry(stream.as_str()).or_insert(0);
                *version += 1;
                self.bumped.insert(stream.as_str(), *version);
                if i == 0 {
                    self.versions.push(*version);
                }
                self.link_streams.push(stream.as_str());
                self.link_versions.push(*version);
                self.link_positions.push(*last);
            }
            self.positions.push(*last);
            self.event_ids.push(id.as_str());
            self.streams.push(new.stream.as_str());
            self.topics.push(new.topic.as_str());
            self.keys.push(&new.key);
            self.payloads.push(payload);
        }
    }
}

/// A connection, of the read pool or the writer's, and its prepared statements.
struct Slot {
    client: Client,
    statements: Statements,
}

impl Slot {
    async fn open(config: &Config, sql: &Sql) -> Result<Self, StoreError> {
        let client = open_client(config).await?;
        let statements = Statements::prepare(&client, sql).await?;
        Ok(Self { client, statements })
    }
}

/// Opens a connection that plans every statement for its parameters.
///
/// The store's tables start empty and grow, and nothing may analyze them for a while (or ever,
/// with autovacuum off). A prepared statement's generic plan, made while a table was small,
/// stays cached as the table grows: `event_id = ANY($1)` planned as a sequential scan then
/// compares every stored event with every id of a group. A plan per execution costs tens of
/// microseconds and follows the tables' real size.
async fn open_client(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::error!(%error, "PostgreSQL connection failed");
        }
    });
    client.batch_execute("SET plan_cache_mode = force_custom_plan").await?;
    Ok(client)
}

/// The store's statements, with the schema written in.
#[derive(Clone)]
struct Sql {
    lock: String,
    versions: String,
    last_position: String,
    insert_events: String,
    insert_links: String,
    upsert_streams: String,
    insert_outbox: String,
    stored_ids: String,
    read: String,
    read_all: String,
    stream_version: String,
    outbox_pending: String,
    outbox_ack: String,
    outbox_len: String,
    acquire_lease: String,
    release_lease: String,
    lease_of: String,
}

impl Sql {
    fn new(schema: &str) -> Self {
        let s = quote(schema);
        Self {
            lock: "SELECT pg_advisory_xact_lock($1)".to_owned(),
            versions: format!("SELECT stream, version FROM {s}.streams WHERE stream = ANY($1)"),
            last_position: format!("SELECT coalesce(max(position), 0)::bigint FROM {s}.events"),
            insert_events: format!(
                "INSERT INTO {s}.events (position, event_id, stream, version, topic, key, payload)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bytea[])"
            ),
            insert_links: format!(
                "INSERT INTO {s}.stream_events (stream, version, position)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])"
            ),
            upsert_streams: format!(
                "INSERT INTO {s}.streams (stream, version) SELECT * FROM UNNEST($1::text[], $2::bigint[])
                 ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version"
            ),
            insert_outbox: format!("INSERT INTO {s}.outbox (id, position) SELECT p, p FROM UNNEST($1::bigint[]) AS p"),
            stored_ids: format!("SELECT event_id FROM {s}.events WHERE event_id = ANY($1)"),
            read: format!(
                "SELECT e.position, l.stream, l.version, e.topic, e.payload
                 FROM {s}.stream_events l JOIN {s}.events e ON e.position = l.position
                 WHERE l.stream = $1 AND l.version >= $2 ORDER BY l.version"
            ),
            read_all: format!(
                "SELECT position, stream, version, topic, payload FROM {s}.events
                 WHERE position >= $1 ORDER BY position LIMIT $2"
            ),
            stream_version: format!("SELECT version FROM {s}.streams WHERE stream = $1"),
            outbox_pending: format!(
                "SELECT o.id, e.position, e.topic, e.key, e.payload FROM {s}.outbox o
                 JOIN {s}.events e ON e.position = o.position ORDER BY o.id LIMIT $1"
            ),
            // The lease row is locked (shared) until the delete commits: a process taking the
            // role over waits for it, then reads an outbox without these entries.
            outbox_ack: format!(
                "WITH fence AS (
                     SELECT 1 FROM {s}.leases WHERE role = $2 AND holder = $3 AND epoch = $4 FOR SHARE
                 ), acked AS (
                     DELETE FROM {s}.outbox WHERE id <= $1 AND EXISTS (SELECT 1 FROM fence) RETURNING 1
                 )
                 SELECT EXISTS (SELECT 1 FROM fence)"
            ),
            outbox_len: format!("SELECT count(*) FROM {s}.outbox"),
            // The server's clock decides expiry, so the processes' clocks need not agree.
            acquire_lease: format!(
                "INSERT INTO {s}.leases AS l (role, holder, epoch, expires_at)
                 VALUES ($1, $2, 1, clock_timestamp() + $3::bigint * interval '1 millisecond')
                 ON CONFLICT (role) DO UPDATE SET
                     epoch = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
                                  THEN l.epoch ELSE l.epoch + 1 END,
                     holder = excluded.holder,
                     expires_at = excluded.expires_at
                 WHERE l.holder = excluded.holder OR l.expires_at <= clock_timestamp()
                 RETURNING epoch"
            ),
            release_lease: format!(
                "UPDATE {s}.leases SET expires_at = '-infinity' WHERE role = $1 AND holder = $2 AND epoch = $3"
            ),
            lease_of: format!(
                "SELECT holder, epoch FROM {s}.leases WHERE role = $1 AND expires_at > clock_timestamp()"
            ),
        }
    }
}

struct Statements {
    lock: Statement,
    versions: Statement,
    last_position: Statement,
    insert_events: Statement,
    insert_links: Statement,
    upsert_streams: Statement,
    insert_outbox: Statement,
    stored_ids: Statement,
    read: Statement,
    read_all: Statement,
    stream_version: Statement,
    outbox_pending: Statement,
    outbox_ack: Statement,
    outbox_len: Statement,
    acquire_lease: Statement,
    release_lease: Statement,
    lease_of: Statement,
}

impl Statements {
    async fn prepare(client: &Client, sql: &Sql) -> Result<Self, StoreError> {
        Ok(Self {
            lock: client.prepare(&sql.lock).await?,
            versions: client.prepare(&sql.versions).await?,
            last_position: client.prepare(&sql.last_position).await?,
            insert_events: client.prepare(&sql.insert_events).await?,
            insert_links: client.prepare(&sql.insert_links).await?,
            upsert_streams: client.prepare(&sql.upsert_streams).await?,
            insert_outbox: client.prepare(&sql.insert_outbox).await?,
            stored_ids: client.prepare(&sql.stored_ids).await?,
            read: client.prepare(&sql.read).await?,
            read_all: client.prepare(&sql.read_all).await?,
            stream_version: client.prepare(&sql.stream_version).await?,
            outbox_pending: client.prepare(&sql.outbox_pending).await?,
            outbox_ack: client.prepare(&sql.outbox_ack).await?,
            outbox_len: client.prepare(&sql.outbox_len).await?,
            acquire_lease: client.prepare(&sql.acquire_lease).await?,
            release_lease: client.prepare(&sql.release_lease).await?,
            lease_of: client.prepare(&sql.lease_of).await?,
        })
    }
}

/// Accepts `[a-z_][a-z0-9_]{0,62}` without the `pg_` prefix PostgreSQL reserves.
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut bytes = schema.bytes();
    let valid = matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && schema.len() <= 63
        && !schema.starts_with("pg_");
    if valid { Ok(()) } else { Err(StoreError::InvalidSchema(schema.to_owned())) }
}

/// A validated schema name as an identifier; quoted so that key words such as `user` work.
fn quote(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// The advisory lock key of a schema: FNV-1a of its name, the same in every process. Two schemas
/// that collide only share a lock.
fn lock_key(schema: &str) -> i64 {
    let hash = format!("nexum.store.{schema}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    hash as i64
}

/// A count or position for PostgreSQL's `bigint`.
fn to_bigint(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

fn to_recorded(row: &Row) -> Result<RecordedEvent, StoreError> {
    let position = row.get::<_, i64>(0) as u64;
    Ok(RecordedEvent {
        position,
        stream: StreamId::from_name(row.get::<_, String>(1)),
        version: row.get::<_, i64>(2) as u64,
        topic: decode_topic(position, row.get(3))?,
        event: decode_event(position, row.get(4))?,
    })
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn commit(&self, commit: Commit) -> Result<u64, StoreError> {
        // Ids and JSON are worked out here, in the caller's task: the one writer only writes.
        let event_ids = commit.events.iter().map(|new| new.event_id().cloned()).collect::<Result<Vec<EventId>, _>>()?;
        let payloads = commit.events.iter().map(|new| new.event.to_json()).collect();
        let (reply, result) = oneshot::channel();
        let id_texts = event_ids.iter().map(ToString::to_string).collect();
        self.writer.send(Job { commit, event_ids, id_texts, payloads, reply }).await.map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    async fn read(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let slot = self.slot().await?;
        let rows = slot.client.query(&slot.statements.read, &[&stream.as_str(), &to_bigint(from_version)]).await?;
        rows.iter().map(to_recorded).collect()
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let slot = self.slot().await?;
        let rows =
            slot.client.query(&slot.statements.read_all, &[&to_bigint(from_position), &to_bigint(limit)]).await?;
        rows.iter().map(to_recorded).collect()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let slot = self.slot().await?;
        let row = slot.client.query_opt(&slot.statements.stream_version, &[&stream.as_str()]).await?;
        Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let slot = self.slot().await?;
        let rows = slot.client.query(&slot.statements.outbox_pending, &[&to_bigint(limit)]).await?;
        rows.iter()
            .map(|row| {
                let position = row.get::<_, i64>(1) as u64;
                Ok(OutboxEntry {
                    id: row.get::<_, i64>(0) as u64,
                    topic: decode_topic(position, row.get(2))?,
                    key: row.get(3),
                    event: decode_event(position, row.get(4))?,
                })
            })
            .collect()
    }

    async fn outbox_ack(&self, id: u64, lease: &Lease) -> Result<(), StoreError> {
        let slot = self.slot().await?;
        let params: [&(dyn ToSql + Sync); 4] = [&to_bigint(id), &lease.role, &lease.holder, &to_bigint(lease.epoch)];
        let held: bool = slot.client.query_one(&slot.statements.outbox_ack, &params).await?.get(0);
        if !held {
            return Err(StoreError::Fenced { role: lease.role.clone(), epoch: lease.epoch });
        }
        Ok(())
    }

    async fn acquire_lease(&self, role: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let slot = self.slot().await?;
        let ttl_ms = to_bigint(ttl.as_millis());
        let row = slot.client.query_opt(&slot.statements.acquire_lease, &[&role, &holder, &ttl_ms]).await?;
        Ok(row.map(|row| Lease {
            role: role.to_owned(),
            holder: holder.to_owned(),
            epoch: row.get::<_, i64>(0) as u64,
        }))
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let slot = self.slot().await?;
        let params: [&(dyn ToSql + Sync); 3] = [&lease.role, &lease.holder, &to_bigint(lease.epoch)];
        slot.client.execute(&slot.statements.release_lease, &params).await?;
        Ok(())
    }

    async fn lease_of(&self, role: &str) -> Result<Option<Lease>, StoreError> {
        let slot = self.slot().await?;
        let row = slot.client.query_opt(&slot.statements.lease_of, &[&role]).await?;
        Ok(row.map(|row| Lease { role: role.to_owned(), holder: row.get(0), epoch: row.get::<_, i64>(1) as u64 }))
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let slot = self.slot().await?;
        let row = slot.client.query_one(&slot.statements.outbox_len, &[]).await?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_schema_names_when_validated_then_only_plain_lower_case_identifiers_pass() {
        for good in ["nexum", "_x", "a1_b2", "user", &"a".repeat(63)] {
            assert!(validate_schema(good).is_ok(), "{good} should be accepted");
        }
        let too_long = "a".repeat(64);
        for bad in ["", "1abc", "Nexum", "ne-xum", "ne xum", "a\"b", "pg_catalog", "é", too_long.as_str()] {
            assert!(matches!(validate_schema(bad), Err(StoreError::InvalidSchema(name)) if name == bad), "{bad}");
        }
    }

    #[test]
    fn given_two_schemas_when_keyed_then_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("nexum"), lock_key("nexum"));
        assert_ne!(lock_key("nexum"), lock_key("nexum_test"));
    }

    #[tokio::test]
    async fn given_an_invalid_schema_when_connecting_then_it_is_refused_before_any_connection() {
        // No server listens on port 1: the name is checked first.
        let result = PostgresStore::connect("host=127.0.0.1 port=1 user=postgres", "Robert'); DROP").await;

        assert!(matches!(result, Err(StoreError::InvalidSchema(name)) if name == "Robert'); DROP"));
    }
}
