//! `eventbus-bench`: the load generators of the event bus, kept out of the product.
//!
//! Each subcommand prints a Markdown table for `BENCHMARKS.md` and, with `--json`, one JSON
//! object of its figures as the last line of standard output, for scripts that compare runs.
//!
//! # Layout
//!
//! - `bus`: publish → consume throughput and publish-to-deliver latency of the backends, and the
//!   Kafka backend beside a raw rdkafka producer.
//! - `bank`: the banking core alone: deposits from command to published event, and replay.
//! - `commands`: commands in the seed's format end to end, from publish to outcome event.
//! - `http`: commands through `POST /commands/transactions`.
//! - `serve`: commands sent by `eventbus publish` into a running `eventbus serve`, as processes.
//! - `report`: progress bars and the JSON line.

mod bank;
mod bus;
mod commands;
mod http;
mod report;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc, as in the `eventbus` binary: the system allocator spent half the time on contention.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "eventbus-bench", version, about = "Benchmarks of the event bus for core banking")]
struct Cli {
    /// Also print the figures as one JSON object, on the last line of standard output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Throughput and latency of the bus on each backend.
    Bus(bus::Options),
    /// The banking core alone: deposits from command to published event, and replay time.
    Bank(bank::Options),
    /// Commands end to end, from publishing a command to its outcome: on the embedded backend and
    /// SQLite, or on Kafka (`--brokers`) and PostgreSQL (`--postgres`).
    Commands(commands::Options),
    /// Commands accepted and carried out through `POST /commands/transactions`.
    Http(http::Options),
    /// Commands sent by `eventbus publish` into a running `eventbus serve`: the integrator's
    /// path, as separate processes, beside the bank alone on the same mix.
    Serve(serve::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("EVENTBUS_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let figures = runtime.block_on(async {
        match cli.command {
            Command::Bus(options) => bus::run(options).await,
            Command::Bank(options) => bank::run(options).await,
            Command::Commands(options) => commands::run(options).await,
            Command::Http(options) => http::run(options).await,
            Command::Serve(options) => serve::run(options).await,
        }
    });
    match figures {
        Ok(figures) => {
            if cli.json {
                println!("{}", figures.to_json());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
