use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// A password or key: never printed, logged or reported.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password or key so that `Debug` shows `"***"` in its place.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `[kafka]`: how to reach the cluster and how to produce.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port`.
    pub brokers: String,
    /// `client.id`.
    pub client_id: String,
    /// `compression.type`: none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// `linger.ms`: how long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// `batch.num.messages`: the most messages in one batch.
    pub batch_messages: u32,
    /// Replication factor of the topics this project creates.
    pub replication_factor: i32,
    /// Bound on connecting, metadata and admin requests, in milliseconds.
    pub request_timeout_ms: u64,
    /// How long a publish may wait for the broker's acknowledgement: librdkafka's
    /// `message.timeout.ms` without an outbox; with one, how long a publisher waits before it
    /// is answered `offset: None` (the relay itself retries until the broker takes the event).
    pub delivery_timeout_ms: u64,
    /// `security.protocol`: plaintext, ssl, sasl_plaintext or sasl_ssl.
    pub security_protocol: Option<String>,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`: the user to authenticate as with SASL.
    pub sasl_username: Option<String>,
    /// `sasl.password`: that user's password.
    pub sasl_password: Option<Secret>,
    /// `ssl.ca.location`: CA certificates to verify the brokers.
    pub ssl_ca_location: Option<PathBuf>,
    /// `ssl.certificate.location` and `ssl.key.location`: the client's certificate for mTLS.
    pub ssl_certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: the private key of that certificate.
    pub ssl_key_location: Option<PathBuf>,
    /// `ssl.key.password`: the passphrase of that private key, if it is encrypted.
    pub ssl_key_password: Option<Secret>,
    /// The durable local outbox publishes go through, so that a broker outage delays events
    /// instead of failing the caller. Unset, publishing goes straight to the broker. The CLI sets
    /// it to `<data_dir>/kafka-outbox`.
    pub outbox_dir: Option<PathBuf>,
    /// Static group membership (KIP-345): the consumers that join a group set
    /// `group.instance.id` to this, a dot and the group's name. A process restarted with the
    /// same id takes its partitions back at once instead of waiting for its old session to
    /// time out (and a broker that never times it out, such as tansu 0.6, is not stuck). Unique
    /// per process and stable across its restarts; `serve` sets it to `--instance` when that is
    /// given. Unset, membership is dynamic.
    pub group_instance_id: Option<String>,
    /// Any other librdkafka property, passed through as it is and applied last.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: "eventbus".into(),
            compression: "lz4".into(),
            linger_ms: 5,
            batch_messages: 10_000,
            replication_factor: 1,
            request_timeout_ms: 10_000,
            delivery_timeout_ms: 30_000,
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            outbox_dir: None,
            group_instance_id: None,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The defaults with `brokers` as the bootstrap servers (comma-separated `host:port`).
    pub fn at(brokers: impl Into<String>) -> Self {
        Self { brokers: brokers.into(), ..Self::default() }
    }

    /// `request_timeout_ms` as a [`Duration`]: the bound on connecting, metadata and admin
    /// requests.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The settings every client shares: brokers, security, passthrough properties.
    pub(crate) fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("socket.timeout.ms", self.request_timeout_ms.to_string())
            .set("socket.connection.setup.timeout.ms", self.request_timeout_ms.to_string());
        let optional = [
            ("security.protocol", self.security_protocol.clone()),
            ("sasl.mechanism", self.sasl_mechanism.clone()),
            ("sasl.username", self.sasl_username.clone()),
            ("sasl.password", self.sasl_password.as_ref().map(|s| s.0.clone())),
            ("ssl.ca.location", self.ssl_ca_location.as_ref().map(|p| p.display().to_string())),
            ("ssl.certificate.location", self.ssl_certificate_location.as_ref().map(|p| p.display().to_string())),
            ("ssl.key.location", self.ssl_key_location.as_ref().map(|p| p.display().to_string())),
            ("ssl.key.password", self.ssl_key_password.as_ref().map(|s| s.0.clone())),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                config.set(key, value);
            }
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The producer: acknowledged by all in-sync replicas, idempotent, and partitioned by
    /// murmur2 like the Java client and the other backends. Public so that benchmarks can compare
    /// against a raw rdkafka producer with exactly these settings.
    pub fn producer(&self) -> ClientConfig {
        let mut config = self.client();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("compression.type", &self.compression)
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.num.messages", self.batch_messages.to_string())
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string());
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The producer of the outbox's relay: as [`Self::producer`], but it retries each message
    /// until the broker takes it (`message.timeout.ms = 0`). A message that timed out locally
    /// would let a later one of its partition reach the broker before it is sent again.
    pub(crate) fn relay_producer(&self) -> ClientConfig {
        let mut config = self.producer();
        config.set("message.timeout.ms", "0");
        config
    }

    /// A consumer in `group` that commits only offsets stored after the handler succeeded.
    pub(crate) fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.client();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            // Incremental rebalancing (KIP-429): when a member joins or dies, only the partitions
            // that move are revoked; the others go on being consumed.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.partition.eof", "false");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = KafkaConfig {
            sasl_password: Some(Secret::new("hunter2")),
            ssl_key_password: Some(Secret::new("s3cr3t")),
            ..KafkaConfig::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("s3cr3t"), "{printed}");
    }

    #[test]
    fn the_producer_is_idempotent_acks_all_and_murmur2() {
        let config = KafkaConfig::default().producer();
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("partitioner"), Some("murmur2_random"));
    }

    #[test]
    fn the_relay_producer_never_gives_a_message_up() {
        let config = KafkaConfig { delivery_timeout_ms: 1500, ..KafkaConfig::default() };
        assert_eq!(config.producer().get("message.timeout.ms"), Some("1500"));
        assert_eq!(config.relay_producer().get("message.timeout.ms"), Some("0"));
        assert_eq!(config.relay_producer().get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn passthrough_properties_are_applied_last() {
        let mut config = KafkaConfig::default();
        config.properties.insert("linger.ms".into(), "50".into());
        config.properties.insert("statistics.interval.ms".into(), "1000".into());
        let producer = config.producer();
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("statistics.interval.ms"), Some("1000"));
    }
}
