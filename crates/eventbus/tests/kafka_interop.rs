//! Standard Kafka clients and this project read each other's messages: confluent-kafka (Python)
//! reads what the bus writes, and the bus consumes what kafka-python writes in the seed's shape.

#![cfg(feature = "kafka")]

mod common;

use std::collections::HashSet;
use std::process::Command;

use common::{Collector, kafka_brokers, kafka_config, random_group, random_topic, transaction};
use eventbus::{BusConfig, EventBus, KafkaBus, Subscription, partition_for_key};
use serde_json::Value;

fn python(script: &str, args: &[&str]) -> String {
    let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("python3").arg(&path).args(args).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "{script} failed (scripts/test.sh installs confluent-kafka and kafka-python): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn bus() -> KafkaBus {
    let bus = KafkaBus::connect(kafka_config(), BusConfig::default()).await.unwrap();
    bus.start().await.unwrap();
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_reads_what_the_bus_writes() {
    // Given events with personal data published by the bus to a 3-partition topic
    let bus = bus().await;
    let topic = random_topic("interop.out");
    bus.create_topic(&topic, 3).await.unwrap();
    for n in 0..6 {
        let mut event = transaction(&format!("acc_{n}"), n);
        event.data.insert("email".into(), "jane@example.com".into());
        bus.publish(&topic, event, None).await.unwrap();
    }
    // When a plain confluent-kafka consumer reads the topic
    let lines = python("read_with_confluent_kafka.py", &[&kafka_brokers(), topic.as_str(), "6"]);
    // Then each value is the seed's flat EventSchema, the headers are CloudEvents binary mode with
    // no personal data, and each key sits on its murmur2 partition
    let mut accounts = HashSet::new();
    for line in lines.lines() {
        let message: Value = serde_json::from_str(line).unwrap();
        let value = &message["value"];
        let key = message["key"].as_str().unwrap();
        assert_eq!(value["event_type"], "transaction_created");
        assert_eq!(value["entity_id"], key);
        assert_eq!(value["data"]["amount"].as_str().unwrap().split('.').nth(1), Some("50"));
        let headers = message["headers"].as_object().unwrap();
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_id"], value["event_id"]);
        assert_eq!(headers["ce_type"], "transaction_created");
        assert_eq!(headers["ce_subject"], key);
        assert_eq!(headers["content-type"], "application/json");
        assert!(!serde_json::to_string(headers).unwrap().contains("jane"), "personal data in headers: {headers:?}");
        assert_eq!(message["partition"].as_u64().unwrap() as u32, partition_for_key(key.as_bytes(), 3).0);
        accounts.insert(key.to_owned());
    }
    assert_eq!(accounts.len(), 6);
    bus.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_consumes_what_kafka_python_writes() {
    // Given seed-shaped events written by kafka-python, keyed by entity id
    let bus = bus().await;
    let topic = random_topic("interop.in");
    bus.create_topic(&topic, 3).await.unwrap();
    python("write_with_kafka_python.py", &[&kafka_brokers(), topic.as_str(), "5"]);
    // When the bus consumes the topic
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), random_group("interop")), seen.handler()).await.unwrap();
    let messages = seen.wait_for(5).await;
    // Then every event arrives whole, on the partition the Java client's rule gives its key
    let mut seqs: Vec<u64> = messages.iter().map(|m| m.event.data["seq"].as_u64().unwrap()).collect();
    seqs.sort();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    for message in &messages {
        assert_eq!(message.event.data["currency"], "USD");
        assert_eq!(message.event.metadata["correlation_id"], format!("corr_{}", message.event.data["seq"]));
        let key = message.key.as_deref().unwrap();
        assert_eq!(message.partition, partition_for_key(key.as_bytes(), 3));
    }
    bus.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_and_oversized_messages_from_another_producer_are_dead_lettered() {
    // Given a bus that accepts messages up to 2 KB, and a topic another producer writes junk to
    let local = BusConfig { max_message_bytes: 2048, ..BusConfig::default() };
    let bus = KafkaBus::connect(kafka_config(), local).await.unwrap();
    bus.start().await.unwrap();
    let topic = random_topic("interop.bad");
    bus.create_topic(&topic, 1).await.unwrap();
    python("write_raw_with_kafka_python.py", &[&kafka_brokers(), topic.as_str()]);
    // When a consumer reads it
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), random_group("bad")), seen.handler()).await.unwrap();
    let dead = Collector::default();
    bus.subscribe(Subscription::new(topic.dlq(), random_group("dlq")), dead.handler()).await.unwrap();
    // Then both go to the dead-letter topic with their reasons, and the handler sees neither
    let letters = dead.wait_for(2).await;
    let kinds: Vec<&str> = letters.iter().map(|l| l.event.data["error_kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["undecodable", "oversized"]);
    assert_eq!(letters[0].event.data["original_value"], "this is not json");
    assert!(letters[1].event.data["error"].as_str().unwrap().contains("exceeds the maximum of 2048 bytes"));
    assert_eq!(letters[1].event.data["original_truncated"], true);
    assert_eq!(seen.len(), 0);
    bus.stop().await.unwrap();
}
