//! The command line, in the manner of kcat and the Kafka CLI tools.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use eventbus::BackendKind;

use crate::api::Role;

#[derive(Debug, Parser)]
#[command(name = "eventbus", version, about = "The event bus for core banking", propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes. Each also reads an `EVENTBUS_*` variable, and each overrides the
/// config file.
#[derive(Debug, Args)]
pub struct Global {
    /// Backend: memory, log, embedded (the default) or kafka.
    #[arg(long, global = true, env = "EVENTBUS_BUS", value_parser = parse_backend)]
    pub bus: Option<BackendKind>,
    /// Data directory of the embedded backend [default: ./data].
    #[arg(long, global = true, env = "EVENTBUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file.
    #[arg(long, global = true, env = "EVENTBUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, `host:port[,host:port]` (with --bus kafka).
    #[arg(long, global = true, env = "EVENTBUS_BROKERS")]
    pub brokers: Option<String>,
    /// Create unknown topics on first use.
    #[arg(long, global = true, env = "EVENTBUS_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    match s {
        "memory" => Ok(BackendKind::Memory),
        "log" => Ok(BackendKind::Log),
        "embedded" => Ok(BackendKind::Embedded),
        "kafka" => Ok(BackendKind::Kafka),
        other => Err(format!("unknown backend `{other}`; expected memory, log, embedded or kafka")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Capera scenario in one process: both producers, the recommender, and a replay.
    Demo {
        /// Events per producer.
        #[arg(long, default_value_t = 2000)]
        events: u64,
    },
    /// Run a Capera producer.
    Produce(Produce),
    /// Run a Capera consumer.
    Consume(Consume),
    /// Publish EventSchema JSON lines from stdin (like `kcat -P`).
    Publish {
        topic: String,
        /// Key for every event; without it, each event's entity_id.
        #[arg(long, short = 'k')]
        key: Option<String>,
    },
    /// Print a topic's events (like `kcat -C`).
    Tail {
        topic: String,
        #[command(flatten)]
        read: ReadOptions,
        /// json: one EventSchema per line; pretty: a readable line with its place in the log.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// List, create or describe topics (like `kafka-topics`).
    #[command(subcommand)]
    Topics(Topics),
    /// Show a group's committed offsets and lag per partition (like `kafka-consumer-groups --describe`).
    #[command(subcommand)]
    Groups(Groups),
    /// Find dead letters, and redrive or discard them.
    #[command(subcommand)]
    Dlq(Dlq),
    /// Move a group's committed offsets (like `kafka-consumer-groups --reset-offsets`).
    Replay {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        /// earliest, latest, offset:N or time:RFC3339.
        #[arg(long)]
        to: String,
    },
    /// Run core banking as a service on the bus: the command handler, the outbox relay, the
    /// projections, the sagas and the recommender, until ctrl-c or SIGTERM.
    Serve {
        /// Keep events in PostgreSQL at this libpq connection string instead of SQLite in the
        /// data directory.
        #[arg(long, env = "EVENTBUS_POSTGRES")]
        postgres: Option<String>,
        /// The PostgreSQL schema of the event store.
        #[arg(long, default_value = "nexum")]
        postgres_schema: String,
        /// Do not offer loans to newly verified customers (the loan application saga).
        #[arg(long)]
        no_loan_offers: bool,
        /// Seconds between two safety-net sweeps of the collections saga over every loan (it acts
        /// on timers scheduled on the bus; the sweep finds a loan whose timer failed).
        #[arg(long, default_value_t = 3600)]
        collections_tick_secs: u64,
        /// Where the HTTP API listens [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<String>,
        /// Development mode: enables `POST /kafka/publish-test`, and lets the service run on (or
        /// switch to) the memory and log buses, which lose acknowledged commands on a crash.
        #[arg(long)]
        dev: bool,
        /// This instance's name among the instances sharing the event store and the bus: it
        /// names the consumer groups it reads everything in (projections, the API's tail) and
        /// the roles it holds. Unique per instance, and stable across restarts on Kafka, so that
        /// its groups are reused; there it is also the static membership id of its consumers
        /// (KIP-345), so that a restarted instance takes its partitions back at once
        /// [default: the host's name and the process id].
        #[arg(long, env = "EVENTBUS_INSTANCE", value_parser = parse_instance)]
        instance: Option<String>,
        /// Milliseconds a role held by one instance at a time (the outbox relay, the collections
        /// timer) stays with an instance that stopped renewing it: another takes over within
        /// about four thirds of it.
        #[arg(long, default_value_t = 5000)]
        role_lease_ms: u64,
    },
    /// List, show and check the JSON Schemas of the Nexum events.
    #[command(subcommand)]
    Schemas(Schemas),
    /// Make API tokens, and hash them for `[[api.tokens]]` in the config file.
    #[command(subcommand)]
    Token(Token),
}

#[derive(Debug, Args)]
pub struct Produce {
    #[arg(value_enum)]
    pub producer: Producer,
    /// Events to publish; 0 runs until interrupted.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Events per second; 0 publishes as fast as possible.
    #[arg(long, default_value = "50", allow_hyphen_values = true, value_parser = parse_rate)]
    pub rate: f64,
    /// Seed of the simulation; the same seed gives the same events.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Rates above zero run from one event an hour to ten million a second.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate == 0.0 || (1.0 / 3600.0..=10_000_000.0).contains(&rate) => Ok(rate),
        _ => Err(format!("invalid rate `{s}`: expected 0 (no limit) or 0.0003 to 10000000 events per second")),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Producer {
    /// Simulated bank transactions on bank.transactions, keyed by account.
    BankTransactions,
    /// Simulated market prices on market.price.updates, keyed by symbol.
    MarketPrices,
}

#[derive(Debug, Args)]
pub struct Consume {
    #[arg(value_enum)]
    pub consumer: Consumer,
    #[command(flatten)]
    pub read: ReadOptions,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Consumer {
    /// Reads bank.transactions and market.price.updates, publishes to capera.recommendations.
    Recommendations,
}

/// Where to read from and when to stop.
#[derive(Debug, Args)]
pub struct ReadOptions {
    /// Consumer group; its committed offsets are used and advanced.
    #[arg(long, short = 'G')]
    pub group: Option<String>,
    /// Read from the earliest retained event, whatever was committed.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many messages.
    #[arg(long)]
    pub max: Option<u64>,
    /// Stop when no message arrived for this many seconds.
    #[arg(long)]
    pub idle_exit: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
pub enum Groups {
    /// Every group of the bus, with the topics it committed in and its lag (like
    /// `kafka-consumer-groups --list`, with the lag of `--describe`).
    List,
    /// Committed offset, log end and lag of each partition the group has committed in.
    Describe {
        #[arg(long)]
        group: String,
        /// Only these topics; all topics by default.
        #[arg(long)]
        topic: Vec<String>,
    },
    /// Forget a group's committed offsets (like `kafka-consumer-groups --delete`).
    Delete {
        #[arg(long)]
        group: String,
    },
}

/// `eventbus dlq`: the dead letters of every subscription, and what an operator does with them.
#[derive(Debug, Subcommand)]
pub enum Dlq {
    /// List dead letters (open ones unless `--state` says otherwise), oldest first.
    List {
        #[command(flatten)]
        filter: DlqFilter,
        /// `table` for people, `json` for one letter per line.
        #[arg(long, value_enum, default_value_t = DlqFormat::Table)]
        format: DlqFormat,
    },
    /// Show one letter: its error, its original (personal data masked) and its history.
    Show {
        /// The letter's id, as `list` shows it.
        id: String,
    },
    /// Handle letters again in their group, keeping each record's `event_id`: the letters
    /// named, or with `--all` every letter the filter matches.
    Redrive(DlqAction),
    /// Drop letters: the records parked behind each go on. The letters named, or with `--all`
    /// every letter the filter matches.
    Discard(DlqAction),
}

/// Which letters, by topic, group, error text, time and state.
#[derive(Debug, Args)]
pub struct DlqFilter {
    /// The source topic (or its `.dlq` topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// The group whose subscription failed.
    #[arg(long)]
    pub group: Option<String>,
    /// Text the error contains (case-insensitive).
    #[arg(long)]
    pub error: Option<String>,
    /// Letters last written at or after this time: RFC 3339, or an age such as 15m, 2h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Letters last written before this time: RFC 3339, or an age such as 15m, 2h, 7d.
    #[arg(long)]
    pub until: Option<String>,
    /// open (the default), failed, retrying, parked, redrive_requested, resolved or all.
    #[arg(long, default_value = "open")]
    pub state: String,
}

/// The letters a redrive or a discard acts on.
#[derive(Debug, Args)]
pub struct DlqAction {
    /// Letter ids, as `list` shows them.
    pub ids: Vec<String>,
    /// Every letter the filter matches, instead of ids.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    #[command(flatten)]
    pub filter: DlqFilter,
    /// Print what would be asked for, and ask nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DlqFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Topics {
    /// Every topic with its partitions and retained events.
    List,
    /// Create a topic and its dead-letter topic.
    Create {
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
    },
    /// Each partition's earliest and latest offset.
    Describe { topic: String },
}

#[derive(Debug, Subcommand)]
pub enum Schemas {
    /// Every Nexum event type with its schema versions and topic.
    List,
    /// Print the JSON Schema of an event type.
    #[command(disable_version_flag = true)]
    Show {
        /// e.g. transaction_posted; `eventbus schemas list` shows them all.
        event_type: String,
        /// Major version [default: the current one].
        #[arg(long)]
        version: Option<u32>,
    },
    /// Check events against their schemas.
    ///
    /// Prints each invalid event with its line and what is wrong, then "N valid, M invalid";
    /// exits 1 if any event is invalid.
    Validate {
        /// One JSON event, pretty-printed or not, or JSON lines with one event per line; `-` reads
        /// stdin.
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
    },
}

/// An instance name: 1 to 100 letters, digits, `.`, `_` or `-`.
fn parse_instance(name: &str) -> Result<String, String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 100 || !name.chars().all(legal) {
        return Err(format!("`{name}` is not an instance name: use 1 to 100 letters, digits, `.`, `_` or `-`"));
    }
    Ok(name.to_owned())
}

#[derive(Debug, Subcommand)]
pub enum Token {
    /// Print a new random token (32 bytes, in hex) once, then the `[[api.tokens]]` block with its
    /// hash to paste into the config file; the token itself is stored nowhere.
    New {
        /// Who holds it; shown in logs and audit records.
        #[arg(long)]
        name: String,
        /// What it may do.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Read a token from stdin and print its SHA-256 in hex, the `sha256` of `[[api.tokens]]`;
    /// with --name and --role, the whole block.
    Hash {
        /// Who holds it.
        #[arg(long, requires = "role")]
        name: Option<String>,
        /// What it may do.
        #[arg(long, value_enum, requires = "name")]
        role: Option<Role>,
    },
}
