//! What only the embedded backend does: durability, sharing a data directory, retention, and
//! clear errors for a store that is corrupt, locked or unusable.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{EmbeddedBus, EmbeddedConfig, EmbeddedError};
use crate::bus::{EventBus, GroupId, Offset, StartPosition, Subscription};
use crate::envelope::EventSchema;
use crate::runtime::BusConfig;
use crate::topics::{Topic, TopicName};

fn event(n: u64) -> EventSchema {
    let data = json!({"amount": format!("{n}.00"), "currency": "USD", "seq": n});
    EventSchema::new("transaction_created", "transaction", format!("acc_{}", n % 7), data.as_object().unwrap().clone())
}

async fn open(dir: &std::path::Path) -> EmbeddedBus {
    let bus = EmbeddedBus::embedded(BusConfig::default(), EmbeddedConfig::at(dir)).await.unwrap();
    bus.start().await.unwrap();
    bus
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_and_committed_offsets_survive_a_restart() {
    // Given a store that acknowledged 100 events, and a group that committed offsets
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::TransactionsCreated.name();
    let group = GroupId::new("projections").unwrap();
    {
        let bus = open(dir.path()).await;
        let events = (0..100).map(event).collect();
        bus.publish_batch(&topic, events, None).await.unwrap();
        bus.reset_offsets(&group, &topic, StartPosition::Offset(Offset(2))).await.unwrap();
        bus.stop().await.unwrap();
    }
    // When the process starts again on the same directory
    let bus = open(dir.path()).await;
    // Then every event and every committed offset is there
    assert_eq!(bus.status().await.unwrap().events_by_topic.get(&topic), Some(&100));
    let offsets = bus.group_offsets(&group, &topic).await.unwrap();
    assert_eq!(offsets.len(), 3);
    assert!(offsets.iter().all(|o| o.offset == Offset(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_buses_on_one_directory_see_each_others_events() {
    // Given two producers and a consumer, each with its own handle on one data directory, as
    // separate processes would have
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (open(dir.path()).await, open(dir.path()).await, open(dir.path()).await);
    let topic = Topic::BankTransactions.name();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let handler = crate::bus::handler_fn(move |m| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock().unwrap().push((m.partition, m.offset));
            Ok(())
        }
    });
    c.subscribe(Subscription::new(topic.clone(), GroupId::new("recommender").unwrap()), handler).await.unwrap();
    // When both producers publish at once
    tokio::join!(
        async {
            for n in 0..50 {
                a.publish(&topic, event(n), None).await.unwrap();
            }
        },
        async {
            for n in 50..100 {
                b.publish(&topic, event(n), None).await.unwrap();
            }
        }
    );
    // Then the consumer gets all 100, and each partition's offsets run 0, 1, 2, ... with no gap
    wait_until(|| seen.lock().unwrap().len() >= 100).await;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    for partition in seen.iter().map(|(p, _)| *p).collect::<std::collections::BTreeSet<_>>() {
        let offsets: Vec<u64> = seen.iter().filter(|(p, _)| *p == partition).map(|(_, o)| o.0).collect();
        assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>());
    }
    assert_eq!(seen.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_records_from_the_head() {
    // Given a store with a 300 ms retention and 10 old events
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { retention: Some(Duration::from_millis(300)), ..EmbeddedConfig::at(dir.path()) };
    let bus = EmbeddedBus::embedded(BusConfig::default(), config).await.unwrap();
    bus.start().await.unwrap();
    let topic = TopicName::new("retained").unwrap();
    bus.create_topic(&topic, 1).await.unwrap();
    for n in 0..10 {
        bus.publish(&topic, event(n), None).await.unwrap();
    }
    // When they age past the retention and a new event arrives
    tokio::time::sleep(Duration::from_millis(700)).await;
    bus.publish(&topic, event(10), None).await.unwrap();
    // Then the log starts at the new event, and offsets are not reused
    let mut earliest = Offset(0);
    for _ in 0..100 {
        earliest = bus.describe_topic(&topic).await.unwrap().partitions[0].earliest;
        if earliest == Offset(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(earliest, Offset(10));
    assert_eq!(bus.describe_topic(&topic).await.unwrap().partitions[0].latest, Offset(11));
}

#[tokio::test]
async fn a_corrupt_store_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eventbus.db"), vec![0x42; 8192]).unwrap();
    let error = EmbeddedBus::embedded(BusConfig::default(), EmbeddedConfig::at(dir.path())).await.err().unwrap();
    assert!(matches!(error.backend_error::<EmbeddedError>(), Some(EmbeddedError::Corrupt { .. })), "{error:?}");
    assert!(error.to_string().contains("corrupt"), "{error}");
}

#[tokio::test]
async fn a_store_locked_by_another_process_is_reported_as_locked() {
    // Given a store whose write lock another connection holds
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).await);
    let holder = rusqlite::Connection::open(dir.path().join("eventbus.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    // When the store is opened with a short busy timeout
    let config = EmbeddedConfig { busy_timeout: Duration::from_millis(100), ..EmbeddedConfig::at(dir.path()) };
    let error = EmbeddedBus::embedded(BusConfig::default(), config).await.err().unwrap();
    // Then the error says it is locked and what to do
    assert!(matches!(error.backend_error::<EmbeddedError>(), Some(EmbeddedError::Locked { .. })), "{error:?}");
    assert!(error.to_string().contains("locked by another process"), "{error}");
}

#[tokio::test]
async fn a_data_dir_that_cannot_be_created_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let error = EmbeddedBus::embedded(BusConfig::default(), EmbeddedConfig::at(file.join("data"))).await.err().unwrap();
    assert!(matches!(error.backend_error::<EmbeddedError>(), Some(EmbeddedError::Io { .. })), "{error:?}");
    assert!(error.to_string().contains("not-a-dir"), "{error}");
}

#[tokio::test]
async fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).await);
    let conn = rusqlite::Connection::open(dir.path().join("eventbus.db")).unwrap();
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'format'", []).unwrap();
    let error = EmbeddedBus::embedded(BusConfig::default(), EmbeddedConfig::at(dir.path())).await.err().unwrap();
    assert!(
        matches!(error.backend_error::<EmbeddedError>(), Some(EmbeddedError::Format { found: 99, .. })),
        "{error:?}"
    );
}

/// A handler that records each event's `seq`.
fn collect(seen: Arc<Mutex<Vec<u64>>>) -> Arc<dyn crate::bus::Handler> {
    crate::bus::handler_fn(move |m| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push(m.event.data["seq"].as_u64().unwrap());
            Ok(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_of_a_group_share_its_partitions_and_one_takes_the_others_share_when_it_stops() {
    // Given two buses on one directory, as two processes, each subscribed in the same group to a
    // topic of 3 partitions
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { lease_ttl: Duration::from_millis(600), ..EmbeddedConfig::at(dir.path()) };
    let first = EmbeddedBus::embedded(BusConfig::default(), config.clone()).await.unwrap();
    let second = EmbeddedBus::embedded(BusConfig::default(), config).await.unwrap();
    let topic = Topic::BankTransactions.name();
    let group = GroupId::new("recommender").unwrap();
    let (seen_first, seen_second) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    first.start().await.unwrap();
    first.subscribe(Subscription::new(topic.clone(), group.clone()), collect(Arc::clone(&seen_first))).await.unwrap();
    second.start().await.unwrap();
    second.subscribe(Subscription::new(topic.clone(), group.clone()), collect(Arc::clone(&seen_second))).await.unwrap();

    // When they have rebalanced and events of 7 keys arrive
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.publish_batch(&topic, (0..40).map(event).collect(), None).await.unwrap();
    wait_until(|| seen_first.lock().unwrap().len() + seen_second.lock().unwrap().len() >= 40).await;

    // Then each handled a share, and together every event once
    let (a, b) = (seen_first.lock().unwrap().clone(), seen_second.lock().unwrap().clone());
    assert!(!a.is_empty() && !b.is_empty(), "both consume: {a:?} / {b:?}");
    let mut all: Vec<u64> = a.iter().chain(&b).copied().collect();
    all.sort();
    assert_eq!(all, (0..40).collect::<Vec<_>>());

    // When the first stops and more arrive
    first.stop().await.unwrap();
    second.publish_batch(&topic, (40..80).map(event).collect(), None).await.unwrap();

    // Then the second takes the first's share over and handles the rest, each event once
    wait_until(|| seen_second.lock().unwrap().iter().filter(|n| **n >= 40).count() >= 40).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut all: Vec<u64> =
        seen_first.lock().unwrap().iter().chain(seen_second.lock().unwrap().iter()).copied().collect();
    all.sort();
    assert_eq!(all, (0..80).collect::<Vec<_>>());
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_share_of_a_dead_process_is_taken_over_once_its_leases_lapse() {
    // Given a group whose every partition is held by a process that died without leaving
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { lease_ttl: Duration::from_millis(800), ..EmbeddedConfig::at(dir.path()) };
    let bus = EmbeddedBus::embedded(BusConfig::default(), config).await.unwrap();
    bus.start().await.unwrap();
    let topic = Topic::BankTransactions.name();
    let group = GroupId::new("recommender").unwrap();
    use crate::local::Storage;
    bus.publish_batch(&topic, vec![event(0)], None).await.unwrap();
    let partitions: Vec<_> = (0..3).map(|p| (topic.clone(), crate::bus::Partition(p))).collect();
    let claim = bus.inner().claim(&group, "dead-process", &partitions).await.unwrap();
    assert_eq!(claim.held.len(), 3);
    let seen = Arc::new(Mutex::new(Vec::new()));

    // When a consumer of the group starts and events arrive
    bus.subscribe(Subscription::new(topic.clone(), group), collect(Arc::clone(&seen))).await.unwrap();
    bus.publish_batch(&topic, (1..5).map(event).collect(), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen.lock().unwrap().is_empty(), "it stands by while the dead process's leases run");

    // Then it consumes everything once the leases have lapsed
    wait_until(|| seen.lock().unwrap().len() == 5).await;
    bus.stop().await.unwrap();
}
