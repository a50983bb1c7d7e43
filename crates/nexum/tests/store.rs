//! One suite for every event store: each scenario is written once, over `dyn EventStore`, and
//! runs against SQLite (a file in a temporary directory), PostgreSQL (a real server) and the
//! in-memory store.
//!
//! PostgreSQL: the server the test script starts, at `NEXUM_TEST_POSTGRES` (libpq style; by
//! default `host=127.0.0.1 port=5432 user=postgres dbname=test`). Each test works in a schema of
//! its own, `nexum_test_<random>`, and drops it when it passes; a failing test leaves its schema
//! for inspection. Without a server the PostgreSQL tests fail, saying so.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use eventbus::{EventSchema, Topic, TopicName};
use nexum::relay::RELAY_ROLE;
use nexum::store::{
    Commit, EventStore, ExpectedVersion, Lease, MemoryStore, NewEvent, PostgresStore, SqliteStore, SqliteSync,
    StoreError, StreamId,
};
use serde_json::{Map, Value, json};

const DEFAULT_POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// Where a test's store lives; `open` may be called again to reopen the same store.
enum Backend {
    Sqlite {
        dir: tempfile::TempDir,
    },
    Postgres {
        config: String,
        schema: String,
    },
    /// Opening it again gives another handle on the same events, as reopening a file does.
    Memory {
        store: MemoryStore,
    },
}

impl Backend {
    fn memory() -> Self {
        Self::Memory { store: MemoryStore::new() }
    }

    fn sqlite() -> Self {
        Self::Sqlite { dir: tempfile::tempdir().expect("a temporary directory") }
    }

    fn postgres() -> Self {
        let config = std::env::var("NEXUM_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
        Self::Postgres { config, schema: format!("nexum_test_{}", uuid::Uuid::new_v4().simple()) }
    }

    async fn open(&self) -> Arc<dyn EventStore> {
        match self {
            Self::Sqlite { dir } => Arc::new(
                SqliteStore::open(&dir.path().join("events.db"), SqliteSync::Full).expect("opening the SQLite store"),
            ),
            Self::Postgres { config, schema } => Arc::new(connect(config, schema).await),
            Self::Memory { store } => Arc::new(store.clone()),
        }
    }

    /// Cleans up after a test that passed.
    async fn finish(self) {
        if let Self::Postgres { config, schema } = self {
            connect(&config, &schema).await.drop_schema().await.expect("dropping the test schema");
        }
    }
}

async fn connect(config: &str, schema: &str) -> PostgresStore {
    PostgresStore::connect(config, schema).await.unwrap_or_else(|error| {
        let mut error: &dyn std::error::Error = &error;
        let mut cause = error.to_string();
        while let Some(source) = error.source() {
            // StoreError shows its source in its own message too.
            if !cause.ends_with(&source.to_string()) {
                cause = format!("{cause}: {source}");
            }
            error = source;
        }
        panic!(
            "PostgreSQL is needed for this test and is not usable at `{config}`: {cause}. \
             Start it (the test script does; check with `pg_isready -h 127.0.0.1 -p 5432`) \
             or set NEXUM_TEST_POSTGRES to a libpq connection string"
        )
    })
}

/// Instantiates every scenario for every store: `sqlite::<scenario>`, `postgres::<scenario>` and
/// `memory::<scenario>`.
macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let backend = super::Backend::sqlite();
                    super::$scenario(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let backend = super::Backend::postgres();
                    super::$scenario(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let backend = super::Backend::memory();
                    super::$scenario(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

scenarios!(
    given_a_new_stream_when_appending_with_no_stream_then_exact_versions_then_versions_count_from_one,
    given_a_stale_expected_version_when_appending_then_a_conflict_and_nothing_written,
    given_an_existing_stream_when_created_again_then_a_conflict,
    given_a_commit_without_events_when_committed_then_it_only_checks_versions,
    given_a_commit_over_several_streams_when_one_version_is_stale_then_nothing_of_it_is_written,
    given_an_event_linked_into_two_streams_when_read_then_each_has_it_at_its_own_version_and_read_all_once,
    given_a_stream_when_read_from_a_middle_version_then_the_later_events_in_order,
    given_events_when_reading_all_from_a_position_with_a_limit_then_that_window_in_global_order,
    given_a_stored_event_id_when_committed_again_then_duplicate_event_and_nothing_written,
    given_commits_when_reading_the_outbox_then_entries_in_commit_order_with_topic_key_and_event,
    given_pending_entries_when_acked_up_to_an_id_then_those_are_removed_and_ids_keep_increasing,
    given_pending_entries_when_the_store_is_reopened_then_the_outbox_and_events_survive,
    given_racing_writers_on_one_stream_when_each_retries_on_conflict_then_versions_are_gap_free,
    given_concurrent_writers_on_distinct_streams_when_done_then_positions_are_gap_free_and_the_outbox_in_order,
    given_tricky_payloads_when_stored_then_they_read_back_byte_identical,
    given_commits_cancelled_midway_when_the_store_is_used_again_then_it_commits_gap_free,
    given_commits_queued_together_when_committed_then_each_sees_those_before_it_and_a_failing_one_fails_alone,
    given_a_role_held_when_another_asks_then_refused_until_it_lapses_then_taken_at_a_higher_epoch,
    given_a_role_held_when_renewed_or_released_then_the_epoch_stays_and_a_release_lets_another_in_at_once,
    given_a_deposed_relay_when_it_acknowledges_then_it_is_fenced_and_the_outbox_stays,
);

/// The relay's role, taken by `holder` for a minute.
async fn relay_lease(store: &dyn EventStore, holder: &str) -> Lease {
    store.acquire_lease(RELAY_ROLE, holder, Duration::from_secs(60)).await.unwrap().expect("the role is free")
}

async fn given_a_role_held_when_another_asks_then_refused_until_it_lapses_then_taken_at_a_higher_epoch(
    backend: &Backend,
) {
    let store = backend.open().await;
    let ttl = Duration::from_millis(300);
    let first = store.acquire_lease("timer", "a", ttl).await.unwrap().expect("a free role is taken");

    assert_eq!(store.acquire_lease("timer", "b", ttl).await.unwrap(), None);
    assert!(store.acquire_lease("other-role", "b", ttl).await.unwrap().is_some(), "roles are independent");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = store.acquire_lease("timer", "b", ttl).await.unwrap().expect("a lapsed role is taken");
    assert_eq!(second.holder, "b");
    assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
    assert_eq!(store.acquire_lease("timer", "a", ttl).await.unwrap(), None, "the old holder does not get it back");
}

async fn given_a_role_held_when_renewed_or_released_then_the_epoch_stays_and_a_release_lets_another_in_at_once(
    backend: &Backend,
) {
    let store = backend.open().await;
    let ttl = Duration::from_secs(60);
    assert_eq!(store.lease_of("timer").await.unwrap(), None, "no lease yet");
    let first = store.acquire_lease("timer", "a", ttl).await.unwrap().unwrap();
    assert_eq!(store.lease_of("timer").await.unwrap(), Some(first.clone()), "the running lease, holder and epoch");

    let renewed = store.acquire_lease("timer", "a", ttl).await.unwrap().unwrap();
    assert_eq!(renewed, first);

    store.release_lease(&renewed).await.unwrap();
    assert_eq!(store.lease_of("timer").await.unwrap(), None, "a released lease runs no more");
    let taken = store.acquire_lease("timer", "b", ttl).await.unwrap().expect("a released role is free at once");
    assert!(taken.epoch > first.epoch);
    store.release_lease(&renewed).await.unwrap();
    assert_eq!(store.acquire_lease("timer", "c", ttl).await.unwrap(), None, "a stale release changes nothing");
}

async fn given_a_deposed_relay_when_it_acknowledges_then_it_is_fenced_and_the_outbox_stays(backend: &Backend) {
    let store = backend.open().await;
    store.append(&stream("account-a"), ExpectedVersion::NoStream, events("a", 1..=3)).await.unwrap();
    let pending = store.outbox_pending(10).await.unwrap();
    let deposed = store.acquire_lease(RELAY_ROLE, "a", Duration::from_millis(200)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let successor = relay_lease(&*store, "b").await;

    let fenced = store.outbox_ack(pending[2].id, &deposed).await;

    assert!(
        matches!(&fenced, Err(StoreError::Fenced { role, epoch }) if role == RELAY_ROLE && *epoch == deposed.epoch),
        "{fenced:?}"
    );
    assert_eq!(store.outbox_pending(10).await.unwrap(), pending);
    store.outbox_ack(pending[0].id, &successor).await.unwrap();
    assert_eq!(store.outbox_pending(10).await.unwrap(), pending[1..]);
}

fn topic() -> TopicName {
    TopicName::new("nexum.test.events").expect("a valid topic name")
}

fn stream(name: &str) -> StreamId {
    StreamId::from_name(name)
}

fn event(entity_id: &str, n: u64) -> EventSchema {
    let Value::Object(data) = json!({ "n": n }) else { unreachable!() };
    EventSchema::new("thing_happened", "thing", entity_id, data)
}

fn events(entity_id: &str, range: std::ops::RangeInclusive<u64>) -> Vec<(TopicName, EventSchema)> {
    range.map(|n| (topic(), event(entity_id, n))).collect()
}

fn ids(events: &[nexum::store::RecordedEvent]) -> Vec<String> {
    events.iter().map(|e| e.event.event_id.as_ref().expect("stored events have ids").to_string()).collect()
}

fn positions(events: &[nexum::store::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn versions(events: &[nexum::store::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

/// What a failed write must leave unchanged.
#[derive(Debug, PartialEq)]
struct Snapshot {
    versions: Vec<u64>,
    all: Vec<(u64, String, u64)>,
    outbox: Vec<u64>,
}

async fn snapshot(store: &dyn EventStore, streams: &[StreamId]) -> Snapshot {
    let mut versions = Vec::new();
    for stream in streams {
        versions.push(store.stream_version(stream).await.unwrap());
    }
    let all = store.read_all(1, usize::MAX).await.unwrap();
    let outbox = store.outbox_pending(usize::MAX).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), outbox.len() as u64);
    Snapshot {
        versions,
        all: all.iter().map(|e| (e.position, e.stream.to_string(), e.version)).collect(),
        outbox: outbox.iter().map(|e| e.id).collect(),
    }
}

async fn given_a_new_stream_when_appending_with_no_stream_then_exact_versions_then_versions_count_from_one(
    backend: &Backend,
) {
    let store = backend.open().await;
    let s = stream("account-a");
    let first = events("a", 1..=2);
    let second = events("a", 3..=3);

    let after_first = store.append(&s, ExpectedVersion::NoStream, first.clone()).await.unwrap();
    let after_second = store.append(&s, ExpectedVersion::Exact(2), second.clone()).await.unwrap();

    assert_eq!((after_first, after_second), (2, 3));
    assert_eq!(store.stream_version(&s).await.unwrap(), 3);
    let read = store.read(&s, 1).await.unwrap();
    assert_eq!(versions(&read), [1, 2, 3]);
    assert_eq!(positions(&read), [1, 2, 3]);
    assert!(read.iter().all(|e| e.stream == s && e.topic == topic()));
    let written: Vec<_> = first.iter().chain(&second).map(|(_, e)| e.event_id.as_ref().unwrap().to_string()).collect();
    assert_eq!(ids(&read), written);
    assert_eq!(ids(&store.read_all(1, 100).await.unwrap()), written);
    assert_eq!(store.stream_version(&stream("account-none")).await.unwrap(), 0);
    assert!(store.read(&stream("account-none"), 1).await.unwrap().is_empty());
}

async fn given_a_stale_expected_version_when_appending_then_a_conflict_and_nothing_written(backend: &Backend) {
    let store = backend.open().await;
    let s = stream("account-a");
    store.append(&s, ExpectedVersion::NoStream, events("a", 1..=2)).await.unwrap();
    let before = snapshot(&*store, std::slice::from_ref(&s)).await;

    let result = store.append(&s, ExpectedVersion::Exact(1), events("a", 3..=4)).await;

    assert!(
        matches!(&result, Err(StoreError::Conflict { stream, expected: ExpectedVersion::Exact(1), actual: 2 }) if *stream == s),
        "{result:?}"
    );
    assert_eq!(snapshot(&*store, &[s]).await, before);
}

async fn given_an_existing_stream_when_created_again_then_a_conflict(backend: &Backend) {
    let store = backend.open().await;
    let s = stream("customer-c");
    store.append(&s, ExpectedVersion::NoStream, events("c", 1..=1)).await.unwrap();
    let before = snapshot(&*store, std::slice::from_ref(&s)).await;

    let result = store.append(&s, ExpectedVersion::NoStream, events("c", 2..=2)).await;

    assert!(
        matches!(&result, Err(StoreError::Conflict { stream, expected: ExpectedVersion::NoStream, actual: 1 }) if *stream == s),
        "{result:?}"
    );
    assert_eq!(snapshot(&*store, &[s]).await, before);
}

async fn given_a_commit_without_events_when_committed_then_it_only_checks_versions(backend: &Backend) {
    let store = backend.open().await;
    let s = stream("account-a");
    store.append(&s, ExpectedVersion::NoStream, events("a", 1..=1)).await.unwrap();
    let before = snapshot(&*store, std::slice::from_ref(&s)).await;

    let matching = store.commit(Commit::default().expect(s.clone(), ExpectedVersion::Exact(1))).await;
    let stale = store.commit(Commit::default().expect(s.clone(), ExpectedVersion::NoStream)).await;

    assert_eq!(matching.unwrap(), 0);
    assert!(matches!(stale, Err(StoreError::Conflict { actual: 1, .. })), "{stale:?}");
    assert_eq!(snapshot(&*store, &[s]).await, before);
}

async fn given_a_commit_over_several_streams_when_one_version_is_stale_then_nothing_of_it_is_written(
    backend: &Backend,
) {
    let store = backend.open().await;
    let (a, b) = (stream("account-a"), stream("account-b"));
    store.append(&a, ExpectedVersion::NoStream, events("a", 1..=1)).await.unwrap();
    store.append(&b, ExpectedVersion::NoStream, events("b", 1..=1)).await.unwrap();
    let before = snapshot(&*store, &[a.clone(), b.clone()]).await;
    let commit = |b_expected| {
        let mut commit = Commit::default().expect(a.clone(), ExpectedVersion::Exact(1)).expect(b.clone(), b_expected);
        commit.push(NewEvent::new(a.clone(), topic(), event("a", 2)));
        commit.push(NewEvent::new(b.clone(), topic(), event("b", 2)));
        commit
    };

    let stale = store.commit(commit(ExpectedVersion::NoStream)).await;

    assert!(matches!(&stale, Err(StoreError::Conflict { stream, actual: 1, .. }) if *stream == b), "{stale:?}");
    assert_eq!(snapshot(&*store, &[a.clone(), b.clone()]).await, before);

    let last = store.commit(commit(ExpectedVersion::Exact(1))).await.unwrap();

    assert_eq!(last, 4);
    assert_eq!((store.stream_version(&a).await.unwrap(), store.stream_version(&b).await.unwrap()), (2, 2));
    assert_eq!(store.outbox_len().await.unwrap(), 4);
}

async fn given_an_event_linked_into_two_streams_when_read_then_each_has_it_at_its_own_version_and_read_all_once(
    backend: &Backend,
) {
    let store = backend.open().await;
    let (from, to, transfer) = (stream("account-from"), stream("account-to"), stream("transaction-t"));
    store.append(&from, ExpectedVersion::NoStream, events("from", 1..=2)).await.unwrap();
    let posted = event("t", 1);
    let mut commit = Commit::default()
        .expect(transfer.clone(), ExpectedVersion::NoStream)
        .expect(from.clone(), ExpectedVersion::Exact(2))
        .expect(to.clone(), ExpectedVersion::NoStream);
    commit.push(NewEvent::new(transfer.clone(), topic(), posted.clone()).linked_to(from.clone()).linked_to(to.clone()));

    let position = store.commit(commit).await.unwrap();

    assert_eq!(position, 3);
    for (s, version) in [(&transfer, 1), (&from, 3), (&to, 1)] {
        let read = store.read(s, version).await.unwrap();
        assert_eq!(read.len(), 1, "{s}");
        assert_eq!((&read[0].stream, read[0].version, read[0].position), (s, version, 3));
        assert_eq!(read[0].event, posted);
        assert_eq!(store.stream_version(s).await.unwrap(), version);
    }
    let all = store.read_all(1, 100).await.unwrap();
    assert_eq!(positions(&all), [1, 2, 3]);
    assert_eq!((&all[2].stream, all[2].version), (&transfer, 1));
    let outbox = store.outbox_pending(100).await.unwrap();
    assert_eq!(outbox.len(), 3);
    assert_eq!(outbox[2].event, posted);
    assert_eq!(outbox[2].key, "t");
}

async fn given_a_stream_when_read_from_a_middle_version_then_the_later_events_in_order(backend: &Backend) {
    let store = backend.open().await;
    let s = stream("account-a");
    let written = events("a", 1..=5);
    store.append(&s, ExpectedVersion::NoStream, written.clone()).await.unwrap();

    let from_three = store.read(&s, 3).await.unwrap();
    let past_the_end = store.read(&s, 6).await.unwrap();

    assert_eq!(versions(&from_three), [3, 4, 5]);
    let expected: Vec<_> = written[2..].iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(from_three.into_iter().map(|e| e.event).collect::<Vec<_>>(), expected);
    assert!(past_the_end.is_empty());
    assert!(store.read(&s, u64::MAX).await.unwrap().is_empty());
}

async fn given_events_when_reading_all_from_a_position_with_a_limit_then_that_window_in_global_order(
    backend: &Backend,
) {
    let store = backend.open().await;
    let (a, b) = (stream("account-a"), stream("account-b"));
    for n in 1..=3 {
        store.append(&a, ExpectedVersion::Any, events("a", n..=n)).await.unwrap();
        store.append(&b, ExpectedVersion::Any, events("b", n..=n)).await.unwrap();
    }

    let window = store.read_all(2, 3).await.unwrap();
    let tail = store.read_all(6, 10).await.unwrap();
    let past_the_end = store.read_all(7, 10).await.unwrap();
    let everything = store.read_all(1, usize::MAX).await.unwrap();

    assert_eq!(positions(&window), [2, 3, 4]);
    let window: Vec<_> = window.iter().map(|e| (e.stream.as_str(), e.version)).collect();
    assert_eq!(window, [("account-b", 1), ("account-a", 2), ("account-b", 2)]);
    assert_eq!(positions(&tail), [6]);
    assert!(past_the_end.is_empty());
    assert_eq!(positions(&everything), [1, 2, 3, 4, 5, 6]);
    assert!(store.read_all(1, 0).await.unwrap().is_empty());
    assert!(store.read_all(u64::MAX, 10).await.unwrap().is_empty());
}

async fn given_a_stored_event_id_when_committed_again_then_duplicate_event_and_nothing_written(backend: &Backend) {
    let store = backend.open().await;
    let (a, b) = (stream("account-a"), stream("account-b"));
    let stored = event("a", 1);
    store.append(&a, ExpectedVersion::NoStream, vec![(topic(), stored.clone())]).await.unwrap();
    let before = snapshot(&*store, &[a.clone(), b.clone()]).await;
    let stored_id = stored.event_id.clone().unwrap();

    let mut again = Commit::default();
    again.push(NewEvent::new(b.clone(), topic(), event("b", 1)));
    again.push(NewEvent::new(a.clone(), topic(), stored.clone()));
    let again = store.commit(again).await;
    let fresh = event("b", 2);
    let mut twice = Commit::default();
    twice.push(NewEvent::new(b.clone(), topic(), fresh.clone()));
    twice.push(NewEvent::new(b.clone(), topic(), fresh.clone()));
    let twice = store.commit(twice).await;
    let mut stale_and_again = Commit::default().expect(a.clone(), ExpectedVersion::NoStream);
    stale_and_again.push(NewEvent::new(a.clone(), topic(), stored.clone()));
    let stale_and_again = store.commit(stale_and_again).await;

    assert!(matches!(&again, Err(StoreError::DuplicateEvent(id)) if *id == stored_id), "{again:?}");
    assert!(matches!(&twice, Err(StoreError::DuplicateEvent(id)) if Some(id) == fresh.event_id.as_ref()), "{twice:?}");
    assert!(
        matches!(stale_and_again, Err(StoreError::Conflict { .. })),
        "versions are checked first: {stale_and_again:?}"
    );
    assert_eq!(snapshot(&*store, &[a, b]).await, before);
}

async fn given_commits_when_reading_the_outbox_then_entries_in_commit_order_with_topic_key_and_event(
    backend: &Backend,
) {
    let store = backend.open().await;
    let audit = Topic::AuditEvents.name();
    let written = [
        NewEvent::new(stream("account-a"), topic(), event("a", 1)),
        NewEvent::new(stream("audit"), audit.clone(), event("u", 1)),
        NewEvent { key: "custom-key".into(), ..NewEvent::new(stream("account-b"), topic(), event("b", 1)) },
    ];
    let mut first = Commit::default();
    first.push(written[0].clone());
    first.push(written[1].clone());
    store.commit(first).await.unwrap();
    let mut second = Commit::default();
    second.push(written[2].clone());
    store.commit(second).await.unwrap();

    let pending = store.outbox_pending(10).await.unwrap();
    let first_two = store.outbox_pending(2).await.unwrap();

    assert_eq!(pending.len(), 3);
    assert!(pending.windows(2).all(|w| w[0].id < w[1].id), "{pending:?}");
    for (entry, new) in pending.iter().zip(&written) {
        assert_eq!((&entry.topic, &entry.key, entry.event.to_json()), (&new.topic, &new.key, new.event.to_json()));
    }
    assert_eq!(pending[1].topic, audit);
    assert_eq!(pending[2].key, "custom-key");
    assert_eq!(first_two, pending[..2]);
    assert_eq!(store.outbox_len().await.unwrap(), 3);
}

async fn given_pending_entries_when_acked_up_to_an_id_then_those_are_removed_and_ids_keep_increasing(
    backend: &Backend,
) {
    let store = backend.open().await;
    let s = stream("account-a");
    store.append(&s, ExpectedVersion::NoStream, events("a", 1..=4)).await.unwrap();
    let pending = store.outbox_pending(10).await.unwrap();
    let lease = relay_lease(&*store, "relay-a").await;

    store.outbox_ack(pending[1].id, &lease).await.unwrap();

    assert_eq!(store.outbox_pending(10).await.unwrap(), pending[2..]);
    assert_eq!(store.outbox_len().await.unwrap(), 2);

    store.outbox_ack(pending[1].id, &lease).await.unwrap();
    store.outbox_ack(pending[3].id, &lease).await.unwrap();

    assert!(store.outbox_pending(10).await.unwrap().is_empty());
    assert_eq!(store.outbox_len().await.unwrap(), 0);

    store.append(&s, ExpectedVersion::Exact(4), events("a", 5..=5)).await.unwrap();

    let next = store.outbox_pending(10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].id > pending[3].id, "outbox id {} reused after acking up to {}", next[0].id, pending[3].id);

    store.outbox_ack(u64::MAX, &lease).await.unwrap();

    assert_eq!(store.outbox_len().await.unwrap(), 0);
}

async fn given_pending_entries_when_the_store_is_reopened_then_the_outbox_and_events_survive(backend: &Backend) {
    let s = stream("account-a");
    let (pending, all) = {
        let store = backend.open().await;
        store.append(&s, ExpectedVersion::NoStream, events("a", 1..=3)).await.unwrap();
        let first = store.outbox_pending(1).await.unwrap();
        store.outbox_ack(first[0].id, &relay_lease(&*store, "relay-a").await).await.unwrap();
        (store.outbox_pending(10).await.unwrap(), store.read_all(1, 10).await.unwrap())
    };

    let store = backend.open().await;

    assert_eq!(pending.len(), 2);
    assert_eq!(store.outbox_pending(10).await.unwrap(), pending);
    assert_eq!(store.outbox_len().await.unwrap(), 2);
    assert_eq!(store.read_all(1, 10).await.unwrap(), all);
    assert_eq!(store.stream_version(&s).await.unwrap(), 3);
    assert_eq!(store.append(&s, ExpectedVersion::Exact(3), events("a", 4..=4)).await.unwrap(), 4);
    assert_eq!(positions(&store.read_all(4, 10).await.unwrap()), [4]);
}

async fn given_racing_writers_on_one_stream_when_each_retries_on_conflict_then_versions_are_gap_free(
    backend: &Backend,
) {
    const WRITERS: u64 = 8;
    const EACH: u64 = 50;
    let store = backend.open().await;
    let s = stream("account-contended");

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, s) = (Arc::clone(&store), s.clone());
            tokio::spawn(async move {
                let mut conflicts = 0;
                for n in 0..EACH {
                    let next = event(&format!("writer-{writer}"), n);
                    loop {
                        let version = store.stream_version(&s).await.unwrap();
                        let result = store.append(&s, ExpectedVersion::Exact(version), vec![(topic(), next.clone())]);
                        match result.await {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => conflicts += 1,
                            Err(error) => panic!("writer {writer}: {error}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for writer in writers {
        conflicts += writer.await.unwrap();
    }

    let total = WRITERS * EACH;
    eprintln!("{total} appends, {conflicts} conflicts retried");
    assert_eq!(store.stream_version(&s).await.unwrap(), total);
    assert_eq!(versions(&store.read(&s, 1).await.unwrap()), (1..=total).collect::<Vec<_>>());
    assert_eq!(positions(&store.read_all(1, usize::MAX).await.unwrap()), (1..=total).collect::<Vec<_>>());
    assert_eq!(store.outbox_len().await.unwrap(), total);
}

async fn given_concurrent_writers_on_distinct_streams_when_done_then_positions_are_gap_free_and_the_outbox_in_order(
    backend: &Backend,
) {
    const WRITERS: u64 = 8;
    const EACH: u64 = 50;
    let store = backend.open().await;

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let s = stream(&format!("account-{writer}"));
                for n in 1..=EACH {
                    store.append(&s, ExpectedVersion::Exact(n - 1), events(&writer.to_string(), n..=n)).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }

    let all = store.read_all(1, usize::MAX).await.unwrap();
    assert_eq!(positions(&all), (1..=WRITERS * EACH).collect::<Vec<_>>());
    for writer in 0..WRITERS {
        let read = store.read(&stream(&format!("account-{writer}")), 1).await.unwrap();
        assert_eq!(versions(&read), (1..=EACH).collect::<Vec<_>>());
        assert!(read.windows(2).all(|w| w[0].position < w[1].position));
        assert!(read.iter().enumerate().all(|(i, e)| e.event.data["n"] == json!(i as u64 + 1)));
    }
    let outbox = store.outbox_pending(usize::MAX).await.unwrap();
    assert!(outbox.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        outbox.into_iter().map(|e| e.event).collect::<Vec<_>>(),
        all.into_iter().map(|e| e.event).collect::<Vec<_>>()
    );
}

async fn given_tricky_payloads_when_stored_then_they_read_back_byte_identical(backend: &Backend) {
    let store = backend.open().await;
    let s = stream("account-tricky");
    let data = json!({
        "zulu": 1, "alpha": 2, "mike": { "z": [3, 2, 1], "a": {} },
        "text": "€ 日本 🚀 \"quoted\" back\\slash\nnewline\ttab \u{0} nul",
        "amount": "100.50", "big": u64::MAX, "negative": i64::MIN, "float": 0.1, "tiny": 1e-7,
        "empty": [], "null": null, "yes": true,
    });
    let Value::Object(data) = data else { unreachable!() };
    let mut first = EventSchema::new("transaction_posted", "transaction", "txn_1", data);
    first.metadata =
        Map::from_iter([("zz_correlation_id".to_owned(), json!("c-1")), ("aa_user".to_owned(), json!("u"))]).into();
    let written = [first, event("tricky", 2)];
    let expected: Vec<Vec<u8>> = written.iter().map(EventSchema::to_json).collect();
    store.append(&s, ExpectedVersion::NoStream, written.iter().map(|e| (topic(), e.clone())).collect()).await.unwrap();

    let read = store.read(&s, 1).await.unwrap();
    let all = store.read_all(1, 10).await.unwrap();
    let outbox = store.outbox_pending(10).await.unwrap();

    assert_eq!(read.iter().map(|e| e.event.to_json()).collect::<Vec<_>>(), expected);
    assert_eq!(all.iter().map(|e| e.event.to_json()).collect::<Vec<_>>(), expected);
    assert_eq!(outbox.iter().map(|e| e.event.to_json()).collect::<Vec<_>>(), expected);
    assert_eq!(read[0].event, written[0]);
}

/// Polls `future` until it finishes or `after` has passed, yielding between polls so that its
/// I/O progresses; then drops it. Returns whether it finished.
async fn cancel_after<F: Future>(future: F, after: Duration) -> bool {
    let deadline = Instant::now() + after;
    let mut future = pin!(future);
    loop {
        if std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::task::yield_now().await;
    }
}

async fn given_commits_cancelled_midway_when_the_store_is_used_again_then_it_commits_gap_free(backend: &Backend) {
    const CANCELLED: u64 = 60;
    let store = backend.open().await;
    let s = stream("account-a");
    let mut cancelled = 0;
    for step in 0..CANCELLED {
        let after = Duration::from_micros(step * 40);
        cancelled += u64::from(!cancel_after(store.append(&s, ExpectedVersion::Any, events("a", 0..=1)), after).await);
    }

    // A cancelled commit may still be applied after its caller has gone: read, then retry.
    let settled = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let version = store.stream_version(&s).await.unwrap();
            match store.append(&s, ExpectedVersion::Exact(version), events("a", 2..=2)).await {
                Ok(version) => break version,
                Err(StoreError::Conflict { .. }) => continue,
                Err(error) => panic!("{error}"),
            }
        }
    })
    .await
    .expect("a cancelled commit left the store unable to commit");

    eprintln!(
        "{cancelled} of {CANCELLED} commits cancelled, {} of them applied",
        (settled - 1) / 2 - (CANCELLED - cancelled)
    );
    assert_eq!(versions(&store.read(&s, 1).await.unwrap()), (1..=settled).collect::<Vec<_>>());
    assert_eq!(positions(&store.read_all(1, usize::MAX).await.unwrap()), (1..=settled).collect::<Vec<_>>());
    assert_eq!(store.outbox_len().await.unwrap(), settled);
}

/// A commit of one event to `stream`, checking that the stream is at `expected`.
fn commit_of(stream: &StreamId, expected: ExpectedVersion, event: EventSchema) -> Commit {
    let mut commit = Commit::default().expect(stream.clone(), expected);
    commit.push(NewEvent::new(stream.clone(), topic(), event));
    commit
}

async fn given_commits_queued_together_when_committed_then_each_sees_those_before_it_and_a_failing_one_fails_alone(
    backend: &Backend,
) {
    let store = backend.open().await;
    let (a, b) = (stream("account-a"), stream("account-b"));
    let reused = event("b", 1);

    // Issued at once, in this order (`join!` starts them in order), so a store that groups
    // commits takes them into one group.
    let (first, second, stale, b_first, b_reused, third) = tokio::join!(
        store.commit(commit_of(&a, ExpectedVersion::NoStream, event("a", 1))),
        store.commit(commit_of(&a, ExpectedVersion::Exact(1), event("a", 2))),
        store.commit(commit_of(&a, ExpectedVersion::Exact(1), event("a", 99))),
        store.commit(commit_of(&b, ExpectedVersion::NoStream, reused.clone())),
        store.commit(commit_of(&b, ExpectedVersion::Any, reused.clone())),
        store.commit(commit_of(&a, ExpectedVersion::Exact(2), event("a", 3))),
    );

    assert_eq!((first.unwrap(), second.unwrap(), b_first.unwrap(), third.unwrap()), (1, 2, 3, 4));
    assert!(
        matches!(&stale, Err(StoreError::Conflict { stream, expected: ExpectedVersion::Exact(1), actual: 2 }) if *stream == a),
        "{stale:?}"
    );
    assert!(
        matches!(&b_reused, Err(StoreError::DuplicateEvent(id)) if Some(id) == reused.event_id.as_ref()),
        "{b_reused:?}"
    );
    let read = store.read(&a, 1).await.unwrap();
    assert_eq!(versions(&read), [1, 2, 3]);
    assert_eq!(read.iter().map(|e| e.event.data["n"].clone()).collect::<Vec<_>>(), [json!(1), json!(2), json!(3)]);
    assert_eq!(versions(&store.read(&b, 1).await.unwrap()), [1]);
    assert_eq!(positions(&store.read_all(1, usize::MAX).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(store.outbox_pending(10).await.unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

/// A plain connection to the test server, beside the store's own.
async fn raw_client(config: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(config, tokio_postgres::NoTls).await.expect("a test connection");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_given_a_commit_the_database_refuses_among_others_when_committed_then_it_fails_alone() {
    let backend = Backend::postgres();
    let Backend::Postgres { config, schema } = &backend else { unreachable!() };
    let store = backend.open().await;
    // Holding the events table stops the writer at its first insert, so the commits behind it
    // queue up and go in one group.
    let blocker = raw_client(config).await;
    blocker.batch_execute(&format!("BEGIN; LOCK TABLE \"{schema}\".events IN EXCLUSIVE MODE")).await.unwrap();
    let good = |name: &str| commit_of(&stream(&format!("account-{name}")), ExpectedVersion::NoStream, event(name, 1));
    // PostgreSQL refuses a NUL character in `text`; nothing before the insert checks for it.
    let mut refused = Commit::default();
    refused.push(NewEvent { key: "nul\0key".into(), ..NewEvent::new(stream("account-r"), topic(), event("r", 1)) });

    let (one, two, refused, three, four, ()) = tokio::join!(
        store.commit(good("one")),
        store.commit(good("two")),
        store.commit(refused),
        store.commit(good("three")),
        store.commit(good("four")),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            blocker.batch_execute("COMMIT").await.unwrap();
        },
    );

    assert!(matches!(refused, Err(StoreError::Postgres(_))), "{refused:?}");
    assert_eq!((one.unwrap(), two.unwrap(), three.unwrap(), four.unwrap()), (1, 2, 3, 4));
    assert_eq!(positions(&store.read_all(1, usize::MAX).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(store.stream_version(&stream("account-r")).await.unwrap(), 0);
    assert_eq!(store.outbox_len().await.unwrap(), 4);
    backend.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_given_the_connections_broken_during_a_commit_when_used_again_then_the_store_reconnects_gap_free() {
    let backend = Backend::postgres();
    let Backend::Postgres { config, schema } = &backend else { unreachable!() };
    let store = backend.open().await;
    let s = stream("account-a");
    store.append(&s, ExpectedVersion::NoStream, events("a", 1..=2)).await.unwrap();
    let blocker = raw_client(config).await;
    blocker.batch_execute(&format!("BEGIN; LOCK TABLE \"{schema}\".events IN EXCLUSIVE MODE")).await.unwrap();
    let admin = raw_client(config).await;
    let connections = format!("nexum {schema}");

    // The writer waits for the table with the first commit, and maybe the others, when every
    // connection of the store is terminated.
    let ((first, second, third), ()) = tokio::join!(
        async {
            tokio::join!(
                store.commit(commit_of(&s, ExpectedVersion::Any, event("a", 3))),
                store.commit(commit_of(&s, ExpectedVersion::Any, event("a", 4))),
                store.commit(commit_of(&s, ExpectedVersion::Any, event("a", 5))),
            )
        },
        async {
            let waiting =
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'";
            while admin.query_one(waiting, &[&connections]).await.unwrap().get::<_, i64>(0) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1";
            admin.execute(terminate, &[&connections]).await.unwrap();
            blocker.batch_execute("COMMIT").await.unwrap();
        },
    );

    assert!(matches!(first, Err(StoreError::Postgres(_))), "{first:?}");
    let stored = [second, third]
        .into_iter()
        .filter_map(|result| match result {
            Ok(position) => Some(position),
            Err(StoreError::Postgres(_)) => None,
            Err(error) => panic!("{error}"),
        })
        .count() as u64;
    // A read or commit that meets a connection before the store has seen it break fails too.
    let mut failures = 0;
    let version = loop {
        match store.append(&s, ExpectedVersion::Exact(2 + stored), events("a", 6..=6)).await {
            Ok(version) => break version,
            Err(StoreError::Postgres(_)) if failures < 20 => failures += 1,
            Err(error) => panic!("after {failures} failures: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut all = store.read_all(1, usize::MAX).await;
    for _ in 0..5 {
        if all.is_ok() {
            break;
        }
        all = store.read_all(1, usize::MAX).await;
    }

    eprintln!("{stored} of 3 commits stored after the break, then {failures} commits failed");
    assert_eq!(version, 3 + stored);
    assert_eq!(positions(&all.unwrap()), (1..=version).collect::<Vec<_>>());
    assert_eq!(versions(&store.read(&s, 1).await.unwrap()), (1..=version).collect::<Vec<_>>());
    backend.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_given_a_new_schema_when_several_stores_connect_at_once_then_all_open_it() {
    let Backend::Postgres { config, schema } = Backend::postgres() else { unreachable!() };

    let connects: Vec<_> = (0..4)
        .map(|_| {
            let (config, schema) = (config.clone(), schema.clone());
            tokio::spawn(async move { PostgresStore::connect(&config, &schema).await })
        })
        .collect();

    let mut stores = Vec::new();
    for connect in connects {
        stores.push(connect.await.unwrap().expect("concurrent connects to a new schema"));
    }
    let s = stream("account-a");
    stores[0].append(&s, ExpectedVersion::NoStream, events("a", 1..=1)).await.unwrap();
    assert_eq!(stores[3].stream_version(&s).await.unwrap(), 1);
    stores[0].drop_schema().await.unwrap();
}
