//! Nothing is lost while the broker is down: events published during an outage wait in the
//! durable outbox and reach the broker, in order per key, when it is back.

#![cfg(feature = "kafka")]

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Collector, random_group, random_topic, transaction};
use eventbus::{BusConfig, EventBus, KafkaBus, KafkaConfig, StartPosition, Subscription};

/// A tansu broker of this test's own, on the SQLite engine so that it keeps its data across a
/// restart.
struct Broker {
    child: Option<Child>,
    port: u16,
    db: PathBuf,
}

impl Broker {
    fn start(port: u16, db: &Path) -> Self {
        let tansu = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(&tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            // tansu reads the SQLite path relative to its working directory.
            .args(["--storage-engine", &format!("sqlite://{}", db.file_name().unwrap().to_string_lossy())])
            .current_dir(db.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {tansu} (scripts/test.sh installs it): {e}"));
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child: Some(child), port, db: db.to_path_buf() };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tansu did not listen on {port} within 10 s");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        *self = Self::start(self.port, &self.db.clone());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_the_broker_is_down_arrive_once_and_in_key_order() {
    // Given a bus with an outbox, on a broker of its own
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Broker::start(port, &dir.path().join("tansu.db"));
    let mut kafka = KafkaConfig::at(format!("127.0.0.1:{port}"));
    kafka.delivery_timeout_ms = 1500;
    kafka.request_timeout_ms = 5000;
    kafka.outbox_dir = Some(dir.path().join("outbox"));
    kafka.properties.insert("batch.num.messages".into(), "1".into());
    kafka.properties.insert("reconnect.backoff.max.ms".into(), "500".into());
    let bus = KafkaBus::connect(kafka, BusConfig::default()).await.unwrap();
    bus.start().await.unwrap();
    let topic = random_topic("outage");
    bus.create_topic(&topic, 3).await.unwrap();
    let accounts = ["acc_1", "acc_2", "acc_3", "acc_4", "acc_5"];
    let event = |n: u64| transaction(accounts[n as usize % accounts.len()], n);
    for n in 0..30 {
        let published = bus.publish(&topic, event(n), None).await.unwrap();
        assert!(published.offset.is_some(), "acknowledged while the broker is up");
    }

    // When the broker goes down and publishing goes on
    broker.stop();
    let mut queued = 0;
    for chunk in (30..60).collect::<Vec<u64>>().chunks(10) {
        let published = bus.publish_batch(&topic, chunk.iter().map(|n| event(*n)).collect(), None).await.unwrap();
        queued += published.iter().filter(|p| p.offset.is_none()).count();
    }
    assert!(queued > 0, "publishing during the outage neither failed nor reached a broker");
    assert!(bus.outbox_backlog().await.unwrap() >= 30, "the backlog shows the waiting events");

    // And the broker comes back
    broker.restart();
    for _ in 0..600 {
        if bus.outbox_backlog().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bus.outbox_backlog().await.unwrap(), 0, "the outbox drained within 60 s");

    // Then a consumer reads every event, exactly once after dedup by event id, in key order
    let seen = Collector::default();
    let subscription = Subscription::new(topic.clone(), random_group("outage")).from(StartPosition::Earliest);
    bus.subscribe(subscription, seen.handler()).await.unwrap();
    let messages = seen.wait_for(60).await;
    let mut ids = HashSet::new();
    let mut order: HashMap<String, Vec<u64>> = HashMap::new();
    for message in &messages {
        if ids.insert(message.event.event_id.clone().unwrap()) {
            let seq = message.event.data["seq"].as_u64().unwrap();
            order.entry(message.event.entity_id.clone()).or_default().push(seq);
        }
    }
    assert_eq!(ids.len(), 60);
    for (account, seqs) in order {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "order of {account}");
    }
    bus.stop().await.unwrap();
}
