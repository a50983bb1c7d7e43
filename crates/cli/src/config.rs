//! Configuration: defaults, then the TOML file, then `EVENTBUS_*` variables and flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use eventbus::{BackendKind, BusConfig, EmbeddedConfig, KafkaConfig, RetryPolicy, SyncMode};
use serde::Deserialize;

/// The config file in the data directory, read when no other is named.
pub const DATA_DIR_CONFIG: &str = "eventbus.toml";

/// The whole configuration file. Every field is optional; the defaults run with no setup.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which backend carries the events: `memory`, `log`, `embedded` or `kafka`.
    pub bus: BackendKind,
    /// Where the embedded backend keeps its store.
    pub data_dir: PathBuf,
    /// Create unknown topics on first use, like Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub default_partitions: u32,
    /// The largest message accepted, in bytes.
    pub max_message_bytes: usize,
    pub embedded: EmbeddedSection,
    /// `[kafka]`: brokers, security, producer tuning and `[kafka.properties]` passed to librdkafka.
    pub kafka: KafkaConfig,
    pub consumer: ConsumerSection,
    pub api: ApiSection,
    pub schedule: ScheduleSection,
    /// The recommender's thresholds and the most accounts and instruments it follows.
    pub recommender: capera::RecommenderConfig,
    /// `[telemetry]`: where spans are exported over OTLP.
    pub telemetry: TelemetrySection,
}

/// `[telemetry]`: traces over OTLP (HTTP/protobuf). With no endpoint, nothing is exported and no
/// span is made.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySection {
    /// The OTLP/HTTP endpoint of a collector, e.g. `http://127.0.0.1:4318` (spans go to
    /// `/v1/traces` under it); `OTEL_EXPORTER_OTLP_ENDPOINT` overrides it. Unset: no traces.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the spans, `eventbus` by default; `OTEL_SERVICE_NAME` overrides it.
    pub service_name: String,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self { otlp_endpoint: None, service_name: "eventbus".to_owned() }
    }
}

/// `[api]`: the HTTP API of `eventbus serve`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// A plain bearer token with the admin role; `EVENTBUS_API_TOKEN` overrides it. Kept for
    /// existing deployments: `tokens` keeps only hashes, and gives each token a name and a role.
    pub token: Option<String>,
    /// `[[api.tokens]]`: named tokens with a role (viewer, operator or admin), by their SHA-256.
    pub tokens: Vec<crate::api::tokens::NamedToken>,
    /// Where to listen, `127.0.0.1:8080` by default; `--listen` overrides it.
    pub listen: Option<String>,
    /// Commands published and not yet carried out above which `POST /commands/*` answers 429
    /// with `Retry-After` (10000 by default).
    pub max_command_lag: Option<u64>,
    /// Milliseconds a client may take to send a request's head (10000 by default).
    pub header_timeout_ms: Option<u64>,
    /// The most HTTP connections open at once (1024 by default).
    pub max_connections: Option<usize>,
    /// Recent events kept in memory per topic for `GET /kafka/events` and the dashboard (1 to
    /// 500; 500 by default).
    pub tail_events_per_topic: Option<usize>,
}

/// `[schedule]`: events published with `metadata.deliver_at`, held until then and delivered by
/// `eventbus serve`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSection {
    /// Scheduled events held, pending, at most (1 to 10,000,000; 100,000 by default); a publish
    /// beyond it is refused.
    pub max_scheduled: usize,
    /// How many days ahead an event may be scheduled (1 to 3,650; 400 by default).
    pub max_ahead_days: u32,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        Self {
            max_scheduled: eventbus::DEFAULT_MAX_SCHEDULED,
            max_ahead_days: (eventbus::DEFAULT_MAX_SCHEDULE_AHEAD.as_secs() / 86_400) as u32,
        }
    }
}

/// `[embedded]`: the durable store.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSection {
    /// `full` fsyncs every commit (survives power loss); `normal` survives process crashes only.
    pub sync: SyncMode,
    /// Delete records older than this many milliseconds; unset keeps everything (Kafka's
    /// `retention.ms`).
    pub retention_ms: Option<u64>,
    /// How often idle consumers look for events written by other processes.
    pub poll_interval_ms: u64,
    /// How long a write waits for another process's lock.
    pub busy_timeout_ms: u64,
    /// How long a consumer keeps its membership of a group and its share of the partitions
    /// without renewing; then the other processes' consumers in the group take its share over.
    pub lease_ttl_ms: u64,
}

/// `[consumer]`: how many records a subscription handles at once, and how failing handlers are
/// retried before dead-lettering.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerSection {
    /// Records a subscription handles at once, across its partitions; those of one key are
    /// handled one at a time, in order, whatever this is.
    pub max_in_flight: usize,
    /// Calls of a handler per message, the first included.
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles each time.
    pub initial_backoff_ms: u64,
    /// The longest wait between retries.
    pub max_backoff_ms: u64,
    /// Event ids each subscription remembers to drop a redelivered event (1 to 10,000,000;
    /// 100,000 by default, about 10 MB per subscription).
    pub dedup_window: usize,
    /// The durable retry stages, in milliseconds, of a record that failed its attempts in place,
    /// for `serve`'s command handler and `eventbus consume` (e.g. `[5000, 60000, 600000]`): it
    /// waits for each in turn, its key parked in a sequenced subscription, before it is
    /// dead-lettered. Empty (the default) dead-letters it at once.
    pub retry_stages_ms: Vec<u64>,
}

impl Default for Config {
    fn default() -> Self {
        let defaults = BusConfig::default();
        Self {
            bus: BackendKind::Embedded,
            data_dir: PathBuf::from("./data"),
            auto_create_topics: defaults.auto_create_topics,
            default_partitions: defaults.default_partitions,
            max_message_bytes: defaults.max_message_bytes,
            embedded: EmbeddedSection::default(),
            kafka: KafkaConfig::default(),
            consumer: ConsumerSection::default(),
            api: ApiSection::default(),
            schedule: ScheduleSection::default(),
            recommender: capera::RecommenderConfig::default(),
            telemetry: TelemetrySection::default(),
        }
    }
}

impl Default for EmbeddedSection {
    fn default() -> Self {
        let defaults = EmbeddedConfig::default();
        Self {
            sync: defaults.sync,
            retention_ms: None,
            poll_interval_ms: defaults.poll_interval.as_millis() as u64,
            busy_timeout_ms: defaults.busy_timeout.as_millis() as u64,
            lease_ttl_ms: defaults.lease_ttl.as_millis() as u64,
        }
    }
}

impl Default for ConsumerSection {
    fn default() -> Self {
        let defaults = RetryPolicy::default();
        Self {
            max_in_flight: eventbus::DEFAULT_MAX_IN_FLIGHT,
            max_attempts: defaults.max_attempts,
            initial_backoff_ms: defaults.initial_backoff.as_millis() as u64,
            max_backoff_ms: defaults.max_backoff.as_millis() as u64,
            dedup_window: eventbus::DEFAULT_DEDUP_WINDOW,
            retry_stages_ms: Vec::new(),
        }
    }
}

/// The sections of the file. Each must be written as a table (`[name]`).
const SECTIONS: [&str; 7] = ["embedded", "kafka", "consumer", "api", "schedule", "recommender", "telemetry"];

impl Config {
    /// Reads `path`; an unknown key or a wrong type is an error that names it.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Reads the text of a config file. Beyond what serde checks, a section must be a table and
    /// no value may be a date: serde reads a struct from an array too, field by field, and toml
    /// hands a date to serde as a one-entry map, so either would load as something never written.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        let doc: toml::Table = toml::from_str(text)?;
        if let Some((section, value)) = SECTIONS
            .iter()
            .find_map(|section| doc.get(*section).filter(|value| !value.is_table()).map(|v| (section, v)))
        {
            // (Not the value itself: it may hold a secret.)
            anyhow::bail!("[{section}] must be a table, not a {}", value.type_str());
        }
        if let Some(key) = date_in(&doc) {
            anyhow::bail!("{key} is a date, and no setting takes one");
        }
        Ok(config)
    }

    /// The bus's settings. Scheduled events are delivered only by a bus that `delivers`
    /// (`serve`'s): a one-shot `publish` schedules them and exits.
    pub fn bus_config(&self, delivers: bool) -> BusConfig {
        BusConfig {
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            max_message_bytes: self.max_message_bytes,
            max_in_flight: self.consumer.max_in_flight.max(1),
            dedup_window: self.consumer.dedup_window.max(1),
            run_scheduler: delivers,
            max_scheduled: self.schedule.max_scheduled.clamp(1, 10_000_000),
            max_schedule_ahead: Duration::from_secs(u64::from(self.schedule.max_ahead_days.clamp(1, 3_650)) * 86_400),
        }
    }

    pub fn embedded(&self) -> EmbeddedConfig {
        EmbeddedConfig {
            data_dir: self.data_dir.clone(),
            sync: self.embedded.sync,
            retention: self.embedded.retention_ms.map(Duration::from_millis),
            poll_interval: Duration::from_millis(self.embedded.poll_interval_ms.max(1)),
            busy_timeout: Duration::from_millis(self.embedded.busy_timeout_ms),
            lease_ttl: Duration::from_millis(self.embedded.lease_ttl_ms.max(100)),
        }
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.consumer.max_attempts.max(1),
            initial_backoff: Duration::from_millis(self.consumer.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.consumer.max_backoff_ms),
        }
    }

    /// `[consumer] retry_stages_ms` as durations.
    pub fn retry_stages(&self) -> Vec<Duration> {
        self.consumer.retry_stages_ms.iter().map(|ms| Duration::from_millis(*ms)).collect()
    }
}

/// The dotted key of the first date in `table`, if any.
fn date_in(table: &toml::Table) -> Option<String> {
    fn find(value: &toml::Value, key: String) -> Option<String> {
        match value {
            toml::Value::Datetime(_) => Some(key),
            toml::Value::Table(table) => table.iter().find_map(|(name, value)| find(value, format!("{key}.{name}"))),
            toml::Value::Array(items) => {
                items.iter().enumerate().find_map(|(i, value)| find(value, format!("{key}[{i}]")))
            }
            _ => None,
        }
    }
    table.iter().find_map(|(name, value)| find(value, name.clone()))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tokens::{self, Role, TokenHash};

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(toml::from_str::<Config>("").unwrap(), Config::default());
    }

    #[test]
    fn a_full_file_is_read() {
        let config: Config = toml::from_str(
            r#"
            bus = "memory"
            data_dir = "/var/lib/eventbus"
            auto_create_topics = true
            default_partitions = 6
            [embedded]
            sync = "normal"
            retention_ms = 604800000
            [consumer]
            max_attempts = 3
            "#,
        )
        .unwrap();
        assert_eq!(config.bus, BackendKind::Memory);
        assert_eq!(config.embedded().retention, Some(Duration::from_secs(7 * 24 * 3600)));
        assert_eq!(config.retry().max_attempts, 3);
        assert!(config.bus_config(false).auto_create_topics);
    }

    #[test]
    fn kafka_settings_and_passthrough_properties_are_read() {
        let config: Config = toml::from_str(
            r#"
            bus = "kafka"
            [kafka]
            brokers = "10.0.0.1:9092,10.0.0.2:9092"
            sasl_mechanism = "SCRAM-SHA-512"
            sasl_username = "bank"
            sasl_password = "hunter2"
            [kafka.properties]
            "statistics.interval.ms" = "1000"
            "#,
        )
        .unwrap();
        assert_eq!(config.bus, BackendKind::Kafka);
        assert_eq!(config.kafka.brokers, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(config.kafka.properties["statistics.interval.ms"], "1000");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").expect("a toml block in the README") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("the block ends");
        let config: Config = toml::from_str(&readme[start..end]).unwrap();
        assert_eq!(config.bus, BackendKind::Embedded);
    }

    #[test]
    fn named_tokens_are_read_with_their_role_and_hash() {
        // Given a config with a viewer and an admin token, by hash
        let viewer = TokenHash::of("secret-of-vera");
        let text = format!(
            "[api]\nlisten = \"127.0.0.1:9090\"\n\n{}\n{}",
            tokens::toml_block("vera", Role::Viewer, viewer),
            tokens::toml_block("ada \"the admin\" o'neil", Role::Admin, TokenHash::of("secret-of-ada")),
        );
        // When it is read, then both are there with their names, roles and hashes
        let config: Config = toml::from_str(&text).unwrap();
        let read: Vec<_> = config.api.tokens.iter().map(|t| (t.name.as_str(), t.role, t.sha256)).collect();
        assert_eq!(read[0], ("vera", Role::Viewer, viewer));
        assert_eq!((read[1].0, read[1].1), ("ada \"the admin\" o'neil", Role::Admin));
        assert!(!format!("{config:?}").contains(&viewer.to_hex()), "a hash is never shown");
    }

    #[test]
    fn an_unknown_role_is_refused_naming_the_roles_allowed() {
        // Given a token whose role is not one of the three
        let text = "[[api.tokens]]\nname = \"mallory\"\nrole = \"superuser\"\nsha256 = \"".to_owned()
            + &"ab".repeat(32)
            + "\"\n";
        // When the config is read, then the error names the role and the roles allowed
        let error = toml::from_str::<Config>(&text).unwrap_err().to_string();
        for word in ["superuser", "viewer", "operator", "admin"] {
            assert!(error.contains(word), "{word} in {error}");
        }
    }

    #[test]
    fn a_hash_that_is_not_64_hex_characters_is_refused_clearly() {
        // Given tokens whose sha256 is the token itself, too short, or not hex
        for sha256 in ["my-plain-token", "abcdef", &"zz".repeat(32)] {
            let text = format!("[[api.tokens]]\nname = \"bob\"\nrole = \"viewer\"\nsha256 = \"{sha256}\"\n");
            // When the config is read, then the error says what a hash must be, and how to get one
            let error = toml::from_str::<Config>(&text).unwrap_err().to_string();
            assert!(error.contains("64 hex characters") && error.contains("eventbus token hash"), "{error}");
            assert!(error.contains("sha256"), "{error}");
        }
        let missing = toml::from_str::<Config>("[[api.tokens]]\nname = \"bob\"\nrole = \"viewer\"\n");
        assert!(missing.unwrap_err().to_string().contains("sha256"));
    }

    #[test]
    fn retry_stages_are_read_in_milliseconds() {
        // Given stages of 5 s, 1 min and 10 min
        let config: Config = toml::from_str("[consumer]\nretry_stages_ms = [5000, 60000, 600000]\n").unwrap();
        // Then they are the durations the command handler and `consume` wait, and none by default
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(config.retry_stages(), [Duration::from_secs(5), minutes(1), minutes(10)]);
        assert!(Config::default().retry_stages().is_empty());
    }

    #[test]
    fn the_telemetry_section_is_read() {
        // Given a file that names an OTLP endpoint and a service name
        let config: Config = toml::from_str(
            r#"
            [telemetry]
            otlp_endpoint = "http://127.0.0.1:4318"
            service_name = "bank-eu"
            "#,
        )
        .unwrap();
        // Then both are read, and a file without the section exports nothing, as `eventbus`
        assert_eq!(config.telemetry.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert_eq!(config.telemetry.service_name, "bank-eu");
        assert_eq!(
            Config::default().telemetry,
            TelemetrySection { otlp_endpoint: None, service_name: "eventbus".into() }
        );
    }

    #[test]
    fn a_section_written_as_another_value_or_a_date_anywhere_is_refused() {
        // Given sections written as arrays, which serde alone would read field by field
        for (text, section) in [
            ("embedded = [\"normal\", 5]", "[embedded]"),
            ("consumer = [1, 2, 3, 4, 5]", "[consumer]"),
            ("schedule = []", "[schedule]"),
        ] {
            // When the file is read, then the error names the section, and not its value
            let error = Config::parse(text).unwrap_err().to_string();
            assert!(error.contains(section) && error.contains("must be a table"), "{text}: {error}");
            assert!(!error.contains("normal"), "{error}");
        }
        // Given dates where properties or a property are expected
        for (text, key) in [
            ("[kafka]\nproperties = 1979-05-27", "kafka.properties"),
            ("[kafka.properties]\n\"x.y\" = 1979-05-27T07:32:00Z", "kafka.properties.x.y"),
        ] {
            // Then the date is refused by its key, not loaded as toml's private field
            let error = Config::parse(text).unwrap_err().to_string();
            assert!(error.contains(key) || error.contains("invalid type"), "{text}: {error}");
            assert!(!error.contains("$__toml_private"), "{error}");
        }
        // And every section written as a table is taken
        let tables: String = SECTIONS.iter().map(|section| format!("[{section}]\n")).collect();
        assert_eq!(Config::parse(&tables).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let error = toml::from_str::<Config>("bus = \"embedded\"\nretention = 5").unwrap_err();
        assert!(error.to_string().contains("retention"), "{error}");
        let error = toml::from_str::<Config>("bus = \"rabbit\"").unwrap_err();
        assert!(error.to_string().contains("rabbit"), "{error}");
    }
}
