//! The event store: streams of events with optimistic concurrency, one global order, and the
//! transactional outbox that the relay publishes from.
//!
//! An event is recorded once, at a global `position`, in its own stream, and may be linked into
//! other streams: a transfer is recorded in the transaction's stream and linked into both
//! accounts' streams, so each account's stream holds everything that changed its balance. One
//! commit is atomic: its version checks, its events, their links and their outbox entries are
//! stored together or not at all.
//!
//! Three stores pass the same suite (`tests/store.rs`): [`SqliteStore`], embedded, [`PostgresStore`],
//! for production, and [`MemoryStore`], for tests and tools that need no durability.

mod memory;
mod postgres;
mod sqlite;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use eventbus::{EventId, EventSchema, TopicName};

pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::{SqliteStore, SqliteSync};

/// The name of a stream: the entity kind and its id, e.g. `account-acc_123`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(String);

impl StreamId {
    /// The stream of the entity `id` of kind `kind` (`account`, `customer`, ...).
    pub fn of(kind: &str, id: impl fmt::Display) -> Self {
        Self(format!("{kind}-{id}"))
    }

    /// A stream by its full name, as stored.
    pub fn from_name(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The stream's full name, e.g. `account-acc_123`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The version a writer expects a stream to be at: the number of events in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check: for streams that only ever grow, such as the audit trail.
    Any,
    /// The stream must not exist yet: creating an entity twice is a conflict.
    NoStream,
    /// The stream must hold exactly this many events.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at version `actual` (0: it does not exist) is what the writer expects.
    pub fn matches(self, actual: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::Exact(version) => actual == version,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "{version}"),
        }
    }
}

/// An event to record: where it goes in the store and on the bus.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Further streams it is linked into.
    pub links: Vec<StreamId>,
    /// The topic the relay publishes it to.
    pub topic: TopicName,
    /// The partition key on the bus: the entity id.
    pub key: String,
    /// The event, complete: it has its `event_id` and `timestamp`.
    pub event: EventSchema,
}

impl NewEvent {
    /// An event of one stream, keyed by its entity id.
    pub fn new(stream: StreamId, topic: TopicName, event: EventSchema) -> Self {
        let key = event.entity_id.clone();
        Self { stream, links: Vec::new(), topic, key, event }
    }

    /// The event, linked into `stream` too; see [`link`](Self::link).
    pub fn linked_to(mut self, stream: StreamId) -> Self {
        self.link(stream);
        self
    }

    /// Links the event into `stream` too, unless it is in it already.
    pub fn link(&mut self, stream: StreamId) {
        if stream != self.stream && !self.links.contains(&stream) {
            self.links.push(stream);
        }
    }

    pub(crate) fn event_id(&self) -> Result<&EventId, StoreError> {
        self.event.event_id.as_ref().ok_or(StoreError::Incomplete("event_id"))
    }

    /// The streams the event is recorded in: its own first, then its links.
    pub(crate) fn streams(&self) -> impl Iterator<Item = &StreamId> {
        std::iter::once(&self.stream).chain(&self.links)
    }
}

/// What one atomic write checks and records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Commit {
    /// The versions the writer read its state at. Any mismatch fails the whole commit.
    pub expected: Vec<(StreamId, ExpectedVersion)>,
    /// The events to record, in order: they get consecutive positions.
    pub events: Vec<NewEvent>,
}

impl Commit {
    /// The commit, checking that `stream` is at `version` too.
    pub fn expect(mut self, stream: StreamId, version: ExpectedVersion) -> Self {
        self.expected.push((stream, version));
        self
    }

    /// Adds `event` after the events already in the commit.
    pub fn push(&mut self, event: NewEvent) {
        self.events.push(event);
    }
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// Its place in the global order, from 1.
    pub position: u64,
    /// The stream it was read from (its own stream when read with `read_all`).
    pub stream: StreamId,
    /// Its version in that stream, from 1.
    pub version: u64,
    /// The topic the relay publishes it to.
    pub topic: TopicName,
    /// The event as it was written, byte for byte.
    pub event: EventSchema,
}

/// An event waiting to be published.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEntry {
    /// Increases in commit order; the relay acknowledges up to an id.
    pub id: u64,
    /// The topic to publish it to.
    pub topic: TopicName,
    /// The partition key to publish it with: its entity's id.
    pub key: String,
    /// The event, as stored.
    pub event: EventSchema,
}

/// Errors of an event store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer changed the stream since it was read. Read it again, decide again, retry.
    #[error("concurrency conflict on stream `{stream}`: expected version {expected}, found {actual}")]
    Conflict {
        /// The first stream whose version did not match.
        stream: StreamId,
        /// The version the writer expected.
        expected: ExpectedVersion,
        /// The stream's version when the commit was checked.
        actual: u64,
    },
    /// An event with this id is stored already: the commit was done before. Nothing was written.
    #[error("event `{0}` is already stored")]
    DuplicateEvent(EventId),
    /// An event to store lacks a field the store needs; build events with `NexumEvent::to_schema`.
    #[error("event to store has no `{0}`")]
    Incomplete(&'static str),
    /// A stored event cannot be read back: the store was changed outside this code. The source
    /// says what is wrong with it: its JSON, or its topic name.
    #[error("stored event at position {position} is corrupt: {source}")]
    Corrupt {
        /// The event's place in the global order.
        position: u64,
        /// Why it cannot be decoded.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The SQLite store failed: see the source for disk, lock or corruption errors.
    #[error("SQLite event store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The transaction that carried this commit with others failed; nothing of it was written.
    /// The source is SQLite's error, shared by every commit of the group.
    #[error("SQLite event store transaction failed: {0}")]
    Transaction(#[source] std::sync::Arc<rusqlite::Error>),
    /// PostgreSQL failed or is unreachable: check the connection string and the server.
    #[error("PostgreSQL event store: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The PostgreSQL schema name is not a plain identifier. Configure a name of lower-case
    /// letters, digits and underscores (`[a-z_][a-z0-9_]{0,62}`) that does not start with `pg_`.
    #[error("`{0}` is not a valid PostgreSQL schema name: use [a-z_][a-z0-9_]{{0,62}}, not starting with pg_")]
    InvalidSchema(String),
    /// The store's writer has shut down; open the store again.
    #[error("the event store is closed")]
    Closed,
    /// The store's file could not be set up: see the source (permissions, a full disk).
    #[error("event store file {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The write was fenced off: the lease of `role` it was made under (epoch `epoch`) is no
    /// longer current, because another process took the role over.
    #[error("the lease of `{role}` at epoch {epoch} is no longer held: another process took the role over")]
    Fenced {
        /// The role whose lease lapsed.
        role: String,
        /// The epoch the write was made under.
        epoch: u64,
    },
}

/// An event store. Implementations are cheap to share behind an `Arc`.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Records `commit` atomically and returns the position of its last event (0 if it had
    /// none), or `Conflict` naming the first stream whose version did not match.
    async fn commit(&self, commit: Commit) -> Result<u64, StoreError>;

    /// Appends `events` to `stream` if it is at `expected`; returns the stream's new version.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<(TopicName, EventSchema)>,
    ) -> Result<u64, StoreError> {
        let count = events.len() as u64;
        let mut commit = Commit::default().expect(stream.clone(), expected);
        for (topic, event) in events {
            commit.push(NewEvent::new(stream.clone(), topic, event));
        }
        self.commit(commit).await?;
        match expected {
            ExpectedVersion::Exact(version) => Ok(version + count),
            ExpectedVersion::NoStream => Ok(count),
            // Without a check, another writer may have appended since: this is a lower bound.
            ExpectedVersion::Any => self.stream_version(stream).await,
        }
    }

    /// The events of `stream` with a version of `from_version` or more, in order.
    async fn read(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events from `from_position` on, in the global order.
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The number of events in `stream`; 0 if it does not exist.
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError>;

    /// Up to `limit` unpublished events, oldest first.
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Marks every entry up to and including `id` as published, if `lease` still holds the
    /// relay's role: otherwise `Fenced`, and nothing changes. A relay deposed while it published
    /// cannot move the outbox past what the new holder has not published.
    async fn outbox_ack(&self, id: u64, lease: &Lease) -> Result<(), StoreError>;

    /// Takes `role` for `holder` for `ttl`, or renews it if `holder` holds it already; `None`
    /// while another holder's lease runs. The epoch goes up each time the role is taken anew
    /// (after another holder, or after it lapsed), never on a renewal.
    async fn acquire_lease(&self, role: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>, StoreError>;

    /// Gives `lease` up, so that another process can take the role at once. Does nothing if it
    /// was lost already.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;

    /// The lease of `role` that has not run out, whoever holds it; `None` if none runs.
    async fn lease_of(&self, role: &str) -> Result<Option<Lease>, StoreError>;

    /// Unpublished events.
    async fn outbox_len(&self) -> Result<u64, StoreError>;
}

/// A role held by one process at a time among those sharing a store, such as the outbox
/// relay's: a row in the store with its holder, its expiry and an epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// What the lease is for, e.g. [`RELAY_ROLE`](crate::relay::RELAY_ROLE).
    pub role: String,
    /// Who holds it: one process's name for itself, unique among the live ones.
    pub holder: String,
    /// The fencing token: raised each time the role changes hands. A write fenced by an older
    /// epoch is refused.
    pub epoch: u64,
}

/// Milliseconds since the Unix epoch, by this machine's clock: the lease expiries of the stores
/// that have no server clock.
pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Parses a stored event.
pub(crate) fn decode_event(position: u64, payload: &[u8]) -> Result<EventSchema, StoreError> {
    EventSchema::from_json(payload).map_err(|e| StoreError::Corrupt { position, source: Box::new(e) })
}

pub(crate) fn decode_topic(position: u64, topic: &str) -> Result<TopicName, StoreError> {
    TopicName::new(topic).map_err(|e| StoreError::Corrupt { position, source: Box::new(e) })
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_failed_group_transaction_exposes_sqlites_error_as_its_source() {
        let cause = Arc::new(rusqlite::Error::InvalidQuery);
        let error = StoreError::Transaction(Arc::clone(&cause));

        let source = error.source().expect("the transaction's cause is its source");

        assert!(source.downcast_ref::<Arc<rusqlite::Error>>().is_some_and(|s| Arc::ptr_eq(s, &cause)), "{source:?}");
        assert_eq!(source.to_string(), cause.to_string());
    }

    #[test]
    fn a_corrupt_event_or_topic_keeps_the_decoding_error_as_its_source() {
        let event = decode_event(7, b"{\"event_type\": ").unwrap_err();
        let topic = decode_topic(8, "").unwrap_err();

        for (error, position) in [(event, 7), (topic, 8)] {
            let StoreError::Corrupt { position: at, source } = &error else { panic!("{error:?}") };
            assert_eq!(*at, position);
            assert_eq!(error.source().map(ToString::to_string), Some(source.to_string()));
            assert!(error.to_string().ends_with(&source.to_string()), "{error}");
        }
    }
}
