//! Nothing is lost while the network to the broker fails: events published during an outage wait
//! in the durable outbox and reach the broker, in order per key, when it is back.
//!
//! The broker is not restarted. A fault-injecting TCP proxy sits between the bus and a tansu
//! broker of the test's own (memory engine, production producer defaults), as toxiproxy and
//! Jepsen do: it refuses connections and drops the open ones, or black-holes them (reads and
//! answers nothing), for a while, while a publisher goes on publishing.

#![cfg(feature = "kafka")]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::time::Duration;

use common::{Collector, random_group, random_topic, transaction};
use eventbus::{BusConfig, EventBus, KafkaBus, KafkaConfig, StartPosition, Subscription, partition_for_key};
use faults::{Broker, Network, Proxy};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A broker of the test's own behind a proxy, and the config of a bus with an outbox (the
/// production defaults: lz4, linger, batches) that reaches it through the proxy. Keep all four.
async fn behind_a_proxy(
    delivery_timeout_ms: u64,
    request_timeout_ms: u64,
) -> (tempfile::TempDir, Proxy, Broker, KafkaConfig) {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let broker_port = free_port();
    let proxy = Proxy::start(broker_port).await;
    let broker = Broker::start(broker_port, proxy.port);
    let mut kafka = KafkaConfig::at(format!("127.0.0.1:{}", proxy.port));
    kafka.delivery_timeout_ms = delivery_timeout_ms;
    kafka.request_timeout_ms = request_timeout_ms;
    kafka.outbox_dir = Some(dir.path().join("outbox"));
    kafka.properties.insert("reconnect.backoff.max.ms".into(), "500".into());
    (dir, proxy, broker, kafka)
}

const EVENTS: u64 = 2_000;
const BATCH: u64 = 20;

/// Publishes [`EVENTS`] while the network fails twice, then checks that a consumer reads every
/// event, exactly once after dropping repeats by event id, and each key's events in order.
async fn publishing_through(fault: Network) {
    // Given a bus with an outbox, reaching its broker through a proxy
    let (_dir, proxy, _broker, kafka) = behind_a_proxy(1500, 3000).await;
    let bus = KafkaBus::connect(kafka, BusConfig::default()).await.unwrap();
    bus.start().await.unwrap();
    let topic = random_topic("outage");
    bus.create_topic(&topic, 3).await.unwrap();
    let accounts = ["acc_1", "acc_2", "acc_3", "acc_4", "acc_5", "acc_6", "acc_7"];
    let event = move |n: u64| transaction(accounts[n as usize % accounts.len()], n);

    // When a publisher publishes in batches, one after the other
    let publisher = {
        let bus = bus.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut queued = 0;
            for first in (0..EVENTS).step_by(BATCH as usize) {
                let batch = (first..first + BATCH).map(event).collect();
                let published = bus.publish_batch(&topic, batch, None).await.expect("publishing never fails");
                queued += published.iter().filter(|p| p.offset.is_none()).count();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            queued
        })
    };
    // And the network fails twice while it does
    for outage in [Duration::from_secs(3), Duration::from_secs(2)] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        proxy.set(fault);
        tokio::time::sleep(outage).await;
        proxy.set(Network::Up);
    }
    let queued = tokio::time::timeout(Duration::from_secs(120), publisher).await.expect("publisher done").unwrap();
    assert!(queued > 0, "publishing during an outage neither failed nor reached the broker");
    for _ in 0..600 {
        if bus.outbox_backlog().await.unwrap() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bus.outbox_backlog().await.unwrap(), Some(0), "the outbox drained within 60 s");

    // Then a consumer reads every event, exactly once after dedup by event id, in key order
    let seen = Collector::default();
    let subscription = Subscription::new(topic.clone(), random_group("outage")).from(StartPosition::Earliest);
    bus.subscribe(subscription, seen.handler()).await.unwrap();
    let unique = |messages: &[eventbus::Message]| {
        messages.iter().map(|m| m.event.event_id.clone()).collect::<HashSet<_>>().len() as u64
    };
    for _ in 0..300 {
        if unique(&seen.messages()) >= EVENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = seen.messages();
    let stored = bus.describe_topic(&topic).await.unwrap().retained();
    let mut ids = HashSet::new();
    let mut order: HashMap<String, Vec<u64>> = HashMap::new();
    for message in &messages {
        if ids.insert(message.event.event_id.clone().unwrap()) {
            let seq = message.event.data["seq"].as_u64().unwrap();
            order.entry(message.event.entity_id.clone()).or_default().push(seq);
        }
    }
    let missing: Vec<u64> = (0..EVENTS).filter(|n| !order.values().flatten().any(|seq| seq == n)).take(20).collect();
    assert_eq!(
        ids.len() as u64,
        EVENTS,
        "every event arrived; the broker holds {stored} records, {} were delivered; missing: {missing:?}",
        messages.len()
    );
    for (account, seqs) in order {
        assert!(seqs.is_sorted(), "the events of {account} arrived in order");
    }
    bus.stop().await.unwrap();
    eprintln!(
        "fault-suite: R1 | network {fault:?} twice (3 s, 2 s) during {EVENTS} publishes through the bus's outbox | \
         0 lost, {} repeat(s) delivered and dropped by event id, each key in order; {queued} publishes answered \
         as queued during the outage |",
        messages.len() - ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_connections_are_refused_arrive_once_and_in_key_order() {
    publishing_through(Network::Refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_the_network_is_blackholed_arrive_once_and_in_key_order() {
    publishing_through(Network::Blackholed).await;
}

/// A running bus on `kafka` with a new 3-partition topic, and `account`'s event 0 on it,
/// acknowledged by the broker: the bus knows the topic's partitions.
async fn with_a_topic(kafka: &KafkaConfig, name: &str, account: &str) -> (KafkaBus, eventbus::TopicName) {
    let topic = random_topic(name);
    let bus = KafkaBus::connect(kafka.clone(), BusConfig::default()).await.unwrap();
    bus.start().await.unwrap();
    bus.create_topic(&topic, 3).await.unwrap();
    assert!(bus.publish(&topic, transaction(account, 0), None).await.unwrap().offset.is_some());
    (bus, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_left_in_the_outbox_at_a_stop_go_out_at_the_next_start() {
    // Given a bus with an outbox whose broker cannot be reached
    let (_dir, proxy, _broker, kafka) = behind_a_proxy(500, 2000).await;
    let (bus, topic) = with_a_topic(&kafka, "restart", "acc_1").await;
    proxy.set(Network::Refused);

    // When events are published, and the bus stops before the broker took them
    let published = bus.publish_batch(&topic, (1..50).map(|n| transaction("acc_1", n)).collect(), None).await.unwrap();
    assert!(published.iter().all(|p| p.offset.is_none()), "the broker cannot have them");
    let stopped = tokio::time::timeout(Duration::from_secs(15), bus.stop()).await.expect("stop ends");
    assert!(stopped.is_ok(), "a stop with events waiting in the outbox is not a failure: {stopped:?}");
    drop(bus);

    // And a new bus opens the same outbox once the network is back
    proxy.set(Network::Up);
    let bus = KafkaBus::connect(kafka, BusConfig::default()).await.unwrap();
    bus.start().await.unwrap();

    // Then every event reaches the broker, in order
    let seen = Collector::default();
    let subscription = Subscription::new(topic.clone(), random_group("restart")).from(StartPosition::Earliest);
    bus.subscribe(subscription, seen.handler()).await.unwrap();
    let messages = seen.wait_for(50).await;
    let seqs: Vec<u64> = messages.iter().map(|m| m.event.data["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
    assert_eq!(bus.outbox_backlog().await.unwrap(), Some(0));
    bus.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_started_while_the_broker_cannot_be_reached_takes_events_for_the_topics_it_knew() {
    // Given an outbox whose bus saw a 3-partition topic, then stopped
    let (_dir, proxy, _broker, kafka) = behind_a_proxy(500, 2000).await;
    let (bus, topic) = with_a_topic(&kafka, "cold-start", "acc_0").await;
    bus.stop().await.unwrap();
    drop(bus);

    // When the network to the broker fails, and a new bus starts on the same outbox
    proxy.set(Network::Refused);
    let connect = KafkaBus::connect(kafka.clone(), BusConfig::default());
    let bus = tokio::time::timeout(Duration::from_secs(30), connect).await.expect("connect ends").expect("it starts");
    bus.start().await.unwrap();

    // Then it takes events for the topic it knew into its outbox, each on its key's partition
    let account = |n: u64| format!("acc_{}", n % 5);
    let events = (1..50).map(|n| transaction(&account(n), n)).collect();
    let published = bus.publish_batch(&topic, events, None).await.unwrap();
    assert!(published.iter().all(|p| p.offset.is_none()), "the broker cannot have them yet");
    for (published, n) in published.iter().zip(1..) {
        assert_eq!(published.partition, partition_for_key(account(n).as_bytes(), 3));
    }
    // and refuses a topic it never saw, rather than guess its partitions
    assert!(bus.publish(&random_topic("never-seen"), transaction("acc_1", 0), None).await.is_err());

    // When the network is back, then every event reaches the broker once, each key in order
    proxy.set(Network::Up);
    let seen = Collector::default();
    let subscription = Subscription::new(topic.clone(), random_group("cold-start")).from(StartPosition::Earliest);
    bus.subscribe(subscription, seen.handler()).await.unwrap();
    let messages = seen.wait_for(50).await;
    let mut order: HashMap<String, Vec<u64>> = HashMap::new();
    for message in &messages {
        order.entry(message.event.entity_id.clone()).or_default().push(message.event.data["seq"].as_u64().unwrap());
    }
    assert_eq!(order.values().map(Vec::len).sum::<usize>(), 50, "{order:?}");
    assert!(order.values().all(|seqs| seqs.is_sorted()), "{order:?}");
    bus.stop().await.unwrap();
}
