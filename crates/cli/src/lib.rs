//! `eventbus`: the command line of the event bus, and the HTTP API of `eventbus serve`. The
//! binary is a thin `main` over [`main`]; the benchmarks (`eventbus-bench`) drive the API
//! in-process through [`router`] and [`ApiState`].
//!
//! # Layout
//!
//! - `cli`: the flags and subcommands (clap).
//! - `config`: the TOML file, `EVENTBUS_*` variables and flags, merged.
//! - `telemetry`: the `tracing` subscriber: logs to stderr, and spans over OTLP when an endpoint
//!   is configured.
//! - `inbox`: hands delivered messages to a command's loop, one at a time, so that `--max` and
//!   Ctrl-C never commit a message the command did not finish.
//! - `commands/*`: one file per subcommand.
//! - `api/*`: the HTTP API of `serve`: auth, errors, commands, reads, tail, metrics, config, the
//!   dashboard.

/// Writes a line for the person at the terminal to stderr. Unlike `eprintln!`, a closed stderr
/// (a supervisor that dropped the pipe) is not a panic: the line is lost, the work goes on.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod api;
mod cli;
mod commands;
mod config;
mod inbox;
mod telemetry;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use eventbus::{BackendKind, EmbeddedBus, EventBus, KafkaBus, LogBus, MemoryBus};

use crate::cli::{Cli, Command, Global};
use crate::config::Config;
use crate::telemetry::Telemetry;

pub use api::{ApiConfig, ApiState, router};

/// Runs the `eventbus` command line: parses the arguments, runs the subcommand, and returns its
/// exit code (1 with a message on an error; clap exits with 2 on a usage error).
pub fn main() -> ExitCode {
    // Whatever this process writes (stores, logs, outboxes, the config it persists) holds
    // personal data: readable by its owner alone, as PostgreSQL does it.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    // `eventbus token` reads no config: a token may be hashed to mend a config that does not load.
    let config = match cli.command {
        Command::Token(_) => Ok(Config::default()),
        _ => configure(&cli.global),
    };
    let started = config.and_then(|config| Ok((Telemetry::init(&config.telemetry)?, config)));
    let (telemetry, config) = match started {
        Ok(started) => started,
        Err(error) => {
            say!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            say!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(execute(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!("error: {error:#}");
            match error.downcast_ref::<commands::Queued>() {
                Some(_) => ExitCode::from(commands::Queued::EXIT_CODE),
                None => ExitCode::FAILURE,
            }
        }
    };
    // The spans of the last moments (a stop of `serve`, say) are sent before the process ends.
    telemetry.shutdown();
    code
}

/// The configuration: defaults, then the file, then variables and flags.
fn configure(global: &Global) -> anyhow::Result<Config> {
    let mut config = match &global.config {
        Some(path) => Config::load(path)?,
        None => {
            // Without a named file, the data directory's own (where `serve` keeps a bus switch).
            let dir = global.data_dir.clone().unwrap_or_else(|| Config::default().data_dir);
            let own = dir.join(config::DATA_DIR_CONFIG);
            if own.exists() { Config::load(&own)? } else { Config::default() }
        }
    };
    if let Some(bus) = global.bus {
        config.bus = bus;
    }
    if let Some(dir) = &global.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(brokers) = &global.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if let Some(auto) = global.auto_create_topics {
        config.auto_create_topics = auto;
    }
    Ok(config)
}

/// Whether a Kafka bus publishes through the data directory's durable outbox, which one bus
/// holds at a time.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Outbox {
    /// Through the outbox: waits up to 10 s for another bus to let go of it, then fails.
    Required,
    /// Through the outbox unless another bus holds it (a running `serve`, say); then straight
    /// to the broker, where a publish the broker does not take fails instead of waiting.
    IfFree,
    /// No outbox: a bus that only reads, beside the one that holds it.
    None,
}

/// Opens the configured backend, started; on Kafka with the outbox as `outbox` says. It does not
/// deliver scheduled events: see [`open_delivering_bus`].
pub(crate) async fn open_bus(config: &Config, outbox: Outbox) -> anyhow::Result<Arc<dyn EventBus>> {
    open(config, outbox, false).await
}

/// Opens the configured backend as [`open_bus`] does, delivering scheduled events when they are
/// due: `serve`'s bus.
pub(crate) async fn open_delivering_bus(config: &Config, outbox: Outbox) -> anyhow::Result<Arc<dyn EventBus>> {
    open(config, outbox, true).await
}

async fn open(config: &Config, outbox: Outbox, delivers: bool) -> anyhow::Result<Arc<dyn EventBus>> {
    let bus_config = config.bus_config(delivers);
    let bus: Arc<dyn EventBus> = match config.bus {
        BackendKind::Memory => Arc::new(MemoryBus::memory(bus_config).await?),
        BackendKind::Log => Arc::new(LogBus::log(bus_config).await?),
        BackendKind::Embedded => Arc::new(
            EmbeddedBus::embedded(bus_config, config.embedded()).await.context("cannot open the embedded store")?,
        ),
        BackendKind::Kafka => {
            let mut kafka = config.kafka.clone();
            let dir = kafka.outbox_dir.take().unwrap_or_else(|| config.data_dir.join("kafka-outbox"));
            match outbox {
                Outbox::IfFree if KafkaBus::outbox_in_use(&dir) => tracing::warn!(
                    outbox = %dir.display(),
                    "Another bus holds the Kafka outbox of this data directory; publishing straight to the broker"
                ),
                Outbox::Required | Outbox::IfFree => kafka.outbox_dir = Some(dir),
                Outbox::None => {}
            }
            Arc::new(KafkaBus::connect(kafka, bus_config).await.context("cannot use the Kafka backend")?)
        }
    };
    bus.start().await?;
    Ok(bus)
}

async fn execute(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo { events } => commands::demo::run(&config, events).await,
        Command::Produce(args) => commands::produce::run(&config, args).await,
        Command::Consume(args) => commands::consume::run(&config, args).await,
        Command::Publish { topic, key } => commands::publish::run(&config, &topic, key).await,
        Command::Tail { topic, read, format } => commands::tail::run(&config, &topic, &read, format).await,
        Command::Topics(command) => commands::topics::run(&config, command).await,
        Command::Groups(command) => commands::groups::run(&config, command).await,
        Command::Dlq(command) => commands::dlq::run(&config, command).await,
        Command::Replay { group, topic, to } => commands::replay::run(&config, &group, &topic, &to).await,
        Command::Schemas(command) => commands::schemas::run(command),
        Command::Token(command) => commands::token::run(command),
        Command::Serve {
            postgres,
            postgres_schema,
            no_loan_offers,
            collections_tick_secs,
            listen,
            dev,
            instance,
            role_lease_ms,
        } => {
            let options = commands::serve::Options {
                instance,
                role_lease_ms,
                postgres,
                postgres_schema,
                loan_offers: !no_loan_offers,
                collections_tick_secs,
                listen,
                dev,
                config_file: cli.global.config.clone(),
            };
            commands::serve::run(&config, options).await
        }
    }
}
