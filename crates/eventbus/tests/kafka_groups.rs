//! Two members of one consumer group on Kafka share the partitions, and when one leaves the
//! other takes over: every event is handled at least once, exactly once after dedup.

#![cfg(feature = "kafka")]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Collector, kafka_config, random_group, random_topic, transaction, wait_until};
use eventbus::{BusConfig, EventBus, KafkaBus, Subscription};

async fn member() -> KafkaBus {
    let bus = KafkaBus::connect(kafka_config(), BusConfig::default()).await.unwrap();
    bus.start().await.unwrap();
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_rebalances_when_a_member_leaves_and_nothing_is_lost() {
    // Given two members of one group on a 3-partition topic
    common::init_tracing();
    let (a, b) = (member().await, member().await);
    let topic = random_topic("rebalance");
    a.create_topic(&topic, 3).await.unwrap();
    let group = random_group("rebalance");
    let (seen_a, seen_b) = (Collector::default(), Collector::default());
    a.subscribe(Subscription::new(topic.clone(), group.clone()), seen_a.handler()).await.unwrap();
    b.subscribe(Subscription::new(topic.clone(), group.clone()), seen_b.handler()).await.unwrap();
    // Publish in rounds until the group has formed and both members receive events.
    let mut sent = 0;
    while seen_a.len() == 0 || seen_b.len() == 0 {
        assert!(sent < 600, "both members got partitions: {} and {}", seen_a.len(), seen_b.len());
        for _ in 0..9 {
            a.publish(&topic, transaction(&format!("acc_{}", sent % 9), sent), None).await.unwrap();
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first = sent;
    wait_until(|| async { seen_a.len() + seen_b.len() >= first as usize }).await;

    // When one member leaves and more events arrive
    b.stop().await.unwrap();
    for n in first..first + 30 {
        a.publish(&topic, transaction(&format!("acc_{}", n % 9), n), None).await.unwrap();
    }

    // Then the remaining member gets every event, and together they saw them all
    let unique = || {
        let mut ids = HashSet::new();
        for m in seen_a.messages().iter().chain(seen_b.messages().iter()) {
            ids.insert(m.event.event_id.clone().unwrap());
        }
        ids.len()
    };
    let total = (first + 30) as usize;
    for _ in 0..600 {
        if unique() == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unique(), total, "every event handled at least once");
    a.stop().await.unwrap();
}
