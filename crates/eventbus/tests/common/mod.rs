//! Helpers shared by the integration tests: buses of every local backend, events, and waiting.

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::{BusConfig, EmbeddedBus, EmbeddedConfig, EventSchema, LogBus, MemoryBus, Message, RetryPolicy};
use serde_json::json;

/// Runs each scenario, an `async fn(Backend)`, as one test per backend: memory, log, embedded,
/// and Kafka with the `kafka` feature.
#[allow(unused_macros)]
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::Backend::Memory).await })*
        }
        mod log {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::Backend::Log).await })*
        }
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::Backend::Embedded).await })*
        }
        #[cfg(feature = "kafka")]
        mod kafka {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::Backend::Kafka).await })*
        }
    };
}

/// A topic name no other test uses.
pub fn random_topic(prefix: &str) -> eventbus::TopicName {
    eventbus::TopicName::new(&format!("{prefix}.{}", uuid_suffix())).unwrap()
}

pub fn random_group(prefix: &str) -> eventbus::GroupId {
    eventbus::GroupId::new(format!("{prefix}-{}", uuid_suffix())).unwrap()
}

fn uuid_suffix() -> String {
    eventbus::EventId::new().to_string().replace('-', "")[20..].to_owned()
}

/// A seed-shaped `transaction_created` event for `account`.
pub fn transaction(account: &str, n: u64) -> EventSchema {
    let data = json!({
        "transaction_type": "deposit", "amount": format!("{n}.50"), "currency": "USD",
        "from_account_id": "acc_external", "to_account_id": account,
        "description": "Cash deposit", "reference": format!("REF{n}"), "seq": n
    });
    EventSchema::new("transaction_created", "transaction", account, data.as_object().unwrap().clone())
        .with_metadata("correlation_id", format!("corr_{n}"))
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, initial_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(4) }
}

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Log,
    Embedded,
    #[cfg(feature = "kafka")]
    Kafka,
}

/// A Kafka config for the test broker, with the backend's production defaults (lz4, linger
/// 5 ms, batches): the broker the test script starts is tansu on its memory engine, which serves
/// batched and compressed produce requests correctly.
#[cfg(feature = "kafka")]
pub fn kafka_config() -> eventbus::KafkaConfig {
    eventbus::KafkaConfig::at(kafka_brokers())
}

/// The Kafka-protocol broker the test script started (`scripts/test.sh` starts tansu on a free
/// loopback port and exports its address).
#[cfg(feature = "kafka")]
pub fn kafka_brokers() -> String {
    std::env::var("EVENTBUS_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("the Kafka tests need a broker: run `bash scripts/test.sh` (it starts tansu), or set EVENTBUS_KAFKA_BROKERS=host:port")
    })
}

/// A bus of the given backend; the embedded one lives in a temporary directory kept alive by the
/// returned guard.
pub async fn open(backend: Backend, config: BusConfig) -> (Arc<dyn eventbus::EventBus>, Option<tempfile::TempDir>) {
    match backend {
        Backend::Memory => (Arc::new(MemoryBus::memory(config).await.unwrap()), None),
        Backend::Log => (Arc::new(LogBus::log(config).await.unwrap()), None),
        Backend::Embedded => {
            let dir = tempfile::tempdir().unwrap();
            let bus = EmbeddedBus::embedded(config, EmbeddedConfig::at(dir.path())).await.unwrap();
            (Arc::new(bus), Some(dir))
        }
        #[cfg(feature = "kafka")]
        Backend::Kafka => {
            let dir = tempfile::tempdir().unwrap();
            let kafka = eventbus::KafkaConfig { outbox_dir: Some(dir.path().join("outbox")), ..kafka_config() };
            let bus = eventbus::KafkaBus::connect(kafka, config).await.unwrap();
            (Arc::new(bus), Some(dir))
        }
    }
}

/// Collects delivered messages.
#[derive(Clone, Default)]
pub struct Collector(Arc<Mutex<Vec<Message>>>);

impl Collector {
    pub fn handler(&self) -> Arc<dyn eventbus::Handler> {
        let seen = Arc::clone(&self.0);
        eventbus::handler_fn(move |message| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(message);
                Ok(())
            }
        })
    }

    pub fn messages(&self) -> Vec<Message> {
        self.0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Waits until at least `n` messages arrived; panics after 30 s.
    pub async fn wait_for(&self, n: usize) -> Vec<Message> {
        wait_until(|| async { self.len() >= n }).await;
        self.messages()
    }
}

/// Polls `condition` every 10 ms; panics if it is still false after 30 s.
pub async fn wait_until<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..3000 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 30 s");
}

/// Lets consumers run a little, to show that nothing more arrives.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
}
