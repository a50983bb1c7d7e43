//! The PostgreSQL event store: the tables of the SQLite store in one schema of a database, and a
//! small pool of connections so that several commits and reads are in flight at once.
//!
//! # Why commits take a lock
//!
//! The global order must have no gaps, and nothing may appear in it behind a position that a
//! reader has already passed: the outbox relay and `read_all` readers remember where they are and
//! never look back. A sequence does not give that: a transaction that draws position 7 and
//! commits after the one that drew 8 lets a reader see 8 before 7 exists, and a rolled-back
//! transaction leaves a hole. So every commit takes a transaction-level advisory lock, derived
//! from the schema name, before it reads anything, and draws its positions from `max(position)`
//! while holding it. PostgreSQL makes a commit visible before it releases the transaction's locks,
//! so the next commit draws its positions after the previous one is visible to everyone: positions
//! are gap-free and become visible in order. The price is that commits to one schema run one at a
//! time on the server; the pool still overlaps their round trips and serves reads meanwhile.
//!
//! Each commit is two pipelined round trips under the lock (lock + reads, then every insert as
//! `UNNEST` arrays) and the `COMMIT`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Row, Statement};

use super::{Commit, EventStore, OutboxEntry, RecordedEvent, StoreError, StreamId, decode_event, decode_topic};

/// Connections in the pool of one store.
const POOL_SIZE: usize = 4;

/// The unique constraint on `events.event_id`, named so that its violation maps to
/// [`StoreError::DuplicateEvent`].
const EVENT_ID_CONSTRAINT: &str = "events_event_id_unique";

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
";

/// The production event store.
pub struct PostgresStore {
    config: Config,
    schema: String,
    sql: Sql,
    lock_key: i64,
    slots: Vec<Mutex<Slot>>,
    next_slot: AtomicUsize,
}

impl PostgresStore {
    /// Connects to the database that `config` names (libpq style, e.g.
    /// `host=127.0.0.1 port=5432 user=postgres dbname=nexum`) and opens the store in `schema`,
    /// creating the schema and its tables if they are missing. Several processes may do this at
    /// once. Connections are not encrypted: reach the server over a local socket or a trusted
    /// network.
    pub async fn connect(config: &str, schema: &str) -> Result<Self, StoreError> {
        validate_schema(schema)?;
        let config: Config = config.parse()?;
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
        let mut slots = Vec::with_capacity(POOL_SIZE);
        let statements = Statements::prepare(&client, &sql).await?;
        slots.push(Mutex::new(Slot { client, statements }));
        for _ in 1..POOL_SIZE {
            slots.push(Mutex::new(Slot::open(&config, &sql).await?));
        }
        Ok(Self { config, schema: schema.to_owned(), sql, lock_key, slots, next_slot: AtomicUsize::new(0) })
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

    /// A free connection, or the next one in turn when all are busy. A connection that has
    /// broken is replaced, so the store recovers when the server comes back.
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

    async fn write(&self, commit: &Commit) -> Result<u64, StoreError> {
        let event_ids = commit.events.iter().map(|new| new.event_id()).collect::<Result<Vec<_>, _>>()?;
        let mut seen = HashSet::with_capacity(event_ids.len());
        // The index cannot name an id that is twice in the commit itself, so find it here.
        let repeated = event_ids.iter().find(|id| !seen.insert(**id));
        let event_ids: Vec<&str> = event_ids.iter().map(|id| id.as_str()).collect();
        let mut streams: Vec<&str> = commit.expected.iter().map(|(stream, _)| stream.as_str()).collect();
        streams.extend(commit.events.iter().flat_map(|new| new.streams().map(StreamId::as_str)));
        streams.sort_unstable();
        streams.dedup();

        let mut guard = self.slot().await?;
        let Slot { client, statements } = &mut *guard;
        // READ COMMITTED whatever the server's default: each statement below takes its snapshot
        // after the lock is held, so it sees every commit before this one.
        let transaction = client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await?;
        // Pipelined: the reads are sent with the lock request and run once it is granted. They
        // must stay separate statements: a statement's snapshot is taken when it starts.
        // (A statement is sent when its future is first polled; `join!` polls in order.)
        let (locked, versions, last) = tokio::join!(
            async { transaction.execute(&statements.lock, &[&self.lock_key]).await },
            async { transaction.query(&statements.versions, &[&streams]).await },
            async { transaction.query_one(&statements.last_position, &[]).await },
        );
        locked?;
        let mut versions: HashMap<String, i64> =
            versions?.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1))).collect();
        let last: i64 = last?.get(0);

        // Returning early drops the transaction, which sends its ROLLBACK before anything else
        // that this connection is asked for.
        for (stream, expected) in &commit.expected {
            let actual = versions.get(stream.as_str()).copied().unwrap_or(0) as u64;
            if !expected.matches(actual) {
                return Err(StoreError::Conflict { stream: stream.clone(), expected: *expected, actual });
            }
        }
        if let Some(id) = repeated {
            return Err(StoreError::DuplicateEvent((*id).clone()));
        }
        if commit.events.is_empty() {
            return Ok(0);
        }

        let rows = Rows::build(commit, last, &mut versions);
        let (events, links, bumps, outbox) = tokio::join!(
            async {
                let params: [&(dyn ToSql + Sync); 7] = [
                    &rows.positions,
                    &event_ids,
                    &rows.streams,
                    &rows.versions,
                    &rows.topics,
                    &rows.keys,
                    &rows.payloads,
                ];
                transaction.execute(&statements.insert_events, &params).await
            },
            async {
                let params: [&(dyn ToSql + Sync); 3] = [&rows.link_streams, &rows.link_versions, &rows.link_positions];
                transaction.execute(&statements.insert_links, &params).await
            },
            async {
                transaction.execute(&statements.upsert_streams, &[&rows.bumped_streams, &rows.bumped_versions]).await
            },
            async { transaction.execute(&statements.insert_outbox, &[&rows.positions]).await },
        );
        // The first failure is the cause; the statements after it fail because the transaction
        // is aborted.
        if let Err(error) = events {
            if error.code() == Some(&SqlState::UNIQUE_VIOLATION)
                && error.as_db_error().and_then(|e| e.constraint()) == Some(EVENT_ID_CONSTRAINT)
            {
                drop(transaction);
                return Err(duplicate_of(client, statements, &event_ids).await?.unwrap_or(StoreError::Postgres(error)));
            }
            return Err(error.into());
        }
        links?;
        bumps?;
        outbox?;
        transaction.commit().await?;
        Ok(*rows.positions.last().expect("a commit with events has positions") as u64)
    }
}

/// Which of `event_ids` is stored already. Commits are serialised and events never deleted, so
/// the event that made the insert fail is still there.
async fn duplicate_of(
    client: &Client,
    statements: &Statements,
    event_ids: &[&str],
) -> Result<Option<StoreError>, StoreError> {
    let row = client.query_opt(&statements.find_event, &[&event_ids]).await?;
    Ok(row.map(|row| {
        let event_id: String = row.get(0);
        StoreError::DuplicateEvent(event_id.parse().expect("stored event ids are not empty"))
    }))
}

/// The columns of one commit's inserts, as arrays for `UNNEST`.
#[derive(Default)]
struct Rows<'a> {
    positions: Vec<i64>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    topics: Vec<&'a str>,
    keys: Vec<&'a str>,
    payloads: Vec<Vec<u8>>,
    link_streams: Vec<&'a str>,
    link_versions: Vec<i64>,
    link_positions: Vec<i64>,
    bumped_streams: Vec<String>,
    bumped_versions: Vec<i64>,
}

impl<'a> Rows<'a> {
    /// Gives the events positions after `last` and each stream its next versions, from the
    /// streams' current `versions`.
    fn build(commit: &'a Commit, last: i64, versions: &mut HashMap<String, i64>) -> Self {
        let mut rows = Rows::default();
        let mut bumped = BTreeMap::new();
        for (position, new) in (last + 1..).zip(&commit.events) {
            for (i, stream) in new.streams().enumerate() {
                let version = versions.entry(stream.as_str().to_owned()).or_insert(0);
                *version += 1;
                bumped.insert(stream.as_str(), *version);
                if i == 0 {
                    rows.versions.push(*version);
                }
                rows.link_streams.push(stream.as_str());
                rows.link_versions.push(*version);
                rows.link_positions.push(position);
            }
            rows.positions.push(position);
            rows.streams.push(new.stream.as_str());
            rows.topics.push(new.topic.as_str());
            rows.keys.push(&new.key);
            rows.payloads.push(new.event.to_json());
        }
        (rows.bumped_streams, rows.bumped_versions) = bumped.into_iter().map(|(s, v)| (s.to_owned(), v)).unzip();
        rows
    }
}

/// One connection of the pool and its prepared statements.
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

async fn open_client(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::error!(%error, "PostgreSQL connection failed");
        }
    });
    Ok(client)
}

/// The store's statements, with the schema written in.
struct Sql {
    lock: String,
    versions: String,
    last_position: String,
    insert_events: String,
    insert_links: String,
    upsert_streams: String,
    insert_outbox: String,
    find_event: String,
    read: String,
    read_all: String,
    stream_version: String,
    outbox_pending: String,
    outbox_ack: String,
    outbox_len: String,
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
            find_event: format!("SELECT event_id FROM {s}.events WHERE event_id = ANY($1) ORDER BY position LIMIT 1"),
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
            outbox_ack: format!("DELETE FROM {s}.outbox WHERE id <= $1"),
            outbox_len: format!("SELECT count(*) FROM {s}.outbox"),
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
    find_event: Statement,
    read: Statement,
    read_all: Statement,
    stream_version: Statement,
    outbox_pending: Statement,
    outbox_ack: Statement,
    outbox_len: Statement,
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
            find_event: client.prepare(&sql.find_event).await?,
            read: client.prepare(&sql.read).await?,
            read_all: client.prepare(&sql.read_all).await?,
            stream_version: client.prepare(&sql.stream_version).await?,
            outbox_pending: client.prepare(&sql.outbox_pending).await?,
            outbox_ack: client.prepare(&sql.outbox_ack).await?,
            outbox_len: client.prepare(&sql.outbox_len).await?,
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
        self.write(&commit).await
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

    async fn outbox_ack(&self, id: u64) -> Result<(), StoreError> {
        let slot = self.slot().await?;
        slot.client.execute(&slot.statements.outbox_ack, &[&to_bigint(id)]).await?;
        Ok(())
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
