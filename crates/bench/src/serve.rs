//! `eventbus-bench serve`: the integrator's path, with real processes. `eventbus serve` runs on
//! the embedded default in a scratch data directory; `eventbus publish nexum.commands.transactions`
//! sends it seed-format commands from a file of JSON lines, as an integrator's process would.
//! This process watches the outcomes through the same data directory, in a consumer group of its
//! own, and matches each to its command by `causation_id`. The clock starts when `publish` is
//! spawned and stops at the last outcome.
//!
//! The same run measures the bank alone on the same command mix (as `commands` does first), so
//! that the ratio between the two holds on any machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use eventbus::{BusConfig, EmbeddedBus, EmbeddedConfig, EventBus, EventId, EventSchema, GroupId, Topic};
use nexum::ids::AccountId;
use nexum::store::{SqliteStore, SqliteSync};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::commands::{self, Entry, Pace, Report, Tracker};
use crate::report::{Figures, progress};

/// How long `serve` may take to say it serves, and to stop after SIGTERM.
const START_STOP: Duration = Duration::from_secs(60);
/// The watcher's poll interval: other processes' appends reach it within this.
const WATCHER_POLL: Duration = Duration::from_millis(10);
/// The event store file of `serve` in its data directory.
const STORE_FILE: &str = "nexum-events.db";

/// What `eventbus-bench serve` runs.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Commands of the measured run, and of the bank alone.
    #[arg(long, default_value_t = 20_000)]
    commands: u64,
    /// Funded accounts the commands spread over.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// The `eventbus` binary to run [default: the one beside this binary].
    #[arg(long)]
    eventbus: Option<PathBuf>,
    /// `[consumer] max_in_flight` of `serve`, written to its data directory's `eventbus.toml`
    /// [default: the bus's default].
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// `serve` processes on the one data directory, each named `bench-<n>`: they share the
    /// command partitions, and one at a time relays.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Keep the scratch directory (data, logs of `serve`) and print where it is.
    #[arg(long)]
    keep: bool,
}

/// Measures the bank alone, then commands published by `eventbus publish` into a running
/// `eventbus serve`; returns the figures.
pub async fn run(options: Options) -> anyhow::Result<Figures> {
    anyhow::ensure!((1..=10_000_000).contains(&options.commands), "--commands must be 1 to 10000000");
    anyhow::ensure!((2..=100_000).contains(&options.accounts), "--accounts must be 2 to 100000");
    anyhow::ensure!((1..=8).contains(&options.instances), "--instances must be 1 to 8");
    let binary = match options.eventbus {
        Some(binary) => binary,
        None => std::env::current_exe()?.with_file_name("eventbus"),
    };
    anyhow::ensure!(
        binary.is_file(),
        "no eventbus binary at {}: build it (`cargo build --release -p eventbus-cli`) or pass --eventbus",
        binary.display()
    );

    let alone = commands::embedded_bank_alone(options.commands, options.accounts).await?;

    let dir = tempfile::Builder::new().prefix("eventbus-bench-serve-").disable_cleanup(options.keep).tempdir()?;
    if options.keep {
        eprintln!("Scratch directory kept: {}", dir.path().display());
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    if let Some(max_in_flight) = options.max_in_flight {
        std::fs::write(data.join("eventbus.toml"), format!("[consumer]\nmax_in_flight = {max_in_flight}\n"))?;
    }
    let mut instances = Vec::with_capacity(options.instances);
    for n in 0..options.instances {
        let log = dir.path().join(format!("serve-{n}.log"));
        instances.push(Serve::start(&binary, &data, &format!("bench-{n}"), &log).await?);
    }
    let measured = async {
        let watcher = Watcher::open(&data).await?;
        let accounts = open_accounts(&binary, &data, dir.path(), &watcher, options.accounts).await?;
        let mix: Vec<EventSchema> = (0..options.commands).map(|n| commands::command(n, &accounts)).collect();
        watcher.carry_out(&binary, &data, dir.path(), mix, "commands → outcomes").await
    };
    let measured = measured.await;
    for serve in instances {
        serve.stop().await?;
    }
    let (report, publish) = measured?;

    println!();
    println!(
        "`eventbus serve` (embedded, SQLite event store with synchronous=FULL) in {} process(es) on one \
         data directory, `eventbus publish nexum.commands.transactions` in another, {} funded accounts. \
         Commands: 70% deposit, 20% withdraw, 10% transfer.",
        options.instances, options.accounts
    );
    println!();
    println!("| run | commands | posted | failed | seconds | commands/s | `publish` exited after s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| bank alone, {} in flight | {} | {} | {} | {:.2} | {:.0} | |",
        commands::DEFAULT_IN_FLIGHT,
        alone.commands,
        alone.posted,
        alone.failed,
        alone.elapsed.as_secs_f64(),
        alone.rate()
    );
    println!(
        "| `eventbus publish` into {} × `eventbus serve` | {} | {} | {} | {:.2} | {:.0} | {:.2} |",
        options.instances,
        report.commands,
        report.posted,
        report.failed,
        report.elapsed.as_secs_f64(),
        report.rate(),
        publish.as_secs_f64()
    );
    let ratio = report.rate() / alone.rate();
    println!();
    println!("Through `serve` ÷ bank alone: {ratio:.2}");
    let mut figures = Figures::default();
    figures.set("serve_commands_per_s", report.rate()).set("bank_alone_per_s", alone.rate()).set("ratio", ratio);
    figures.set("publish_s", publish.as_secs_f64()).set("instances", options.instances as f64);
    Ok(figures)
}

/// The `eventbus` binary run on the scratch data directory, with the log level of the bench.
fn eventbus(binary: &Path, data: &Path) -> Command {
    let mut command = Command::new(binary);
    command.arg("--data-dir").arg(data);
    command.env_remove("EVENTBUS_BUS").env_remove("EVENTBUS_CONFIG").env_remove("EVENTBUS_API_TOKEN");
    command.env("EVENTBUS_LOG", std::env::var("EVENTBUS_LOG").unwrap_or_else(|_| "warn".into()));
    command.kill_on_drop(true);
    command
}

/// A running `eventbus serve`, killed if the bench fails before it stops it.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    /// Starts `serve` and waits for the line that says it serves.
    async fn start(binary: &Path, data: &Path, instance: &str, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log)?;
        let child = eventbus(binary, data)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-loan-offers", "--instance", instance])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let mut serve = Self { child, log: log.to_owned() };
        let deadline = Instant::now() + START_STOP;
        loop {
            if std::fs::read_to_string(log)?.contains("Serving core banking") {
                return Ok(serve);
            }
            if let Some(status) = serve.child.try_wait()? {
                anyhow::bail!("eventbus serve exited with {status} before serving:\n{}", serve.log_tail());
            }
            anyhow::ensure!(Instant::now() < deadline, "eventbus serve did not start:\n{}", serve.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it with SIGTERM, as a service manager would, and checks that it stopped cleanly.
    async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().context("serve has already been waited for")?;
        let sent = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        anyhow::ensure!(sent.success(), "cannot send SIGTERM to serve ({pid})");
        let status = tokio::time::timeout(START_STOP, self.child.wait())
            .await
            .with_context(|| format!("serve did not stop within {} s of SIGTERM", START_STOP.as_secs()))??;
        anyhow::ensure!(status.success(), "serve stopped with {status}:\n{}", self.log_tail());
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// This process's view of the data directory: an embedded bus for the outcomes, and the event
/// store, to check that every outcome was published and read.
struct Watcher {
    bus: Arc<dyn EventBus>,
    store: SqliteStore,
}

impl Watcher {
    async fn open(data: &Path) -> anyhow::Result<Self> {
        let config = EmbeddedConfig { poll_interval: WATCHER_POLL, ..EmbeddedConfig::at(data) };
        let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::embedded(BusConfig::default(), config).await?);
        bus.start().await?;
        let store = SqliteStore::open(&data.join(STORE_FILE), SqliteSync::Full)?;
        Ok(Self { bus, store })
    }

    /// Writes `commands` to a file, publishes it with `eventbus publish`, and waits for each
    /// command's outcome; returns the report, and how long `publish` ran.
    async fn carry_out(
        &self,
        binary: &Path,
        data: &Path,
        scratch: &Path,
        commands: Vec<EventSchema>,
        run: &str,
    ) -> anyhow::Result<(Report, Duration)> {
        let total = commands.len() as u64;
        let bar = progress(total, run);
        let tracker = Tracker::new(Pace::Rate(1.0), bar.clone())?;
        let group = GroupId::new(format!("bench-serve-watcher-{}", EventId::new()))?;
        commands::watch_outcomes(&*self.bus, &tracker, &group).await?;
        let ids = commands
            .iter()
            .map(|command| command.event_id.as_ref().map(EventId::to_string).context("a command has an id"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let file = write_lines(scratch, &commands)?;
        let started = Instant::now();
        tracker.state().commands.extend(ids.into_iter().map(|id| (id, Entry::Sent(started))));
        let mut publish = eventbus(binary, data);
        publish.args(["publish", Topic::CommandsTransactions.name().as_str()]).stdin(std::fs::File::open(&file)?);
        let published = async {
            checked(&mut publish, "eventbus publish").await?;
            anyhow::Ok(started.elapsed())
        };
        let (published, elapsed) = tokio::join!(published, commands::all_answered(&tracker, total, started));
        let (published, elapsed) = (published?, elapsed?);
        bar.finish_and_clear();
        let report = commands::settled_report(&*self.bus, &self.store, &tracker, &group, total, elapsed).await?;
        Ok((report, published))
    }
}

/// Opens `count` verified customers with one checking account each and funds them, all through
/// `eventbus publish` into `serve`; returns the accounts.
async fn open_accounts(
    binary: &Path,
    data: &Path,
    scratch: &Path,
    watcher: &Watcher,
    count: usize,
) -> anyhow::Result<Vec<AccountId>> {
    let customers: Vec<EventSchema> = (0..count)
        .flat_map(|n| {
            let customer = format!("cust_bench_{n}");
            let command = |data| command("customer_command", "customer", &customer, data);
            [
                command(json!({"action": "create", "customer_id": customer, "first_name": "Bench",
                               "last_name": format!("Customer {n}"), "email": format!("bench{n}@example.com")})),
                command(json!({"action": "kyc", "customer_id": customer, "kyc_status": "verified",
                               "kyc_tier": "tier_3"})),
                command(json!({"action": "open_account", "customer_id": customer, "account_type": "checking",
                               "currency": "USD", "account_id": format!("acc_bench_{n}")})),
            ]
        })
        .collect();
    let file = write_lines(scratch, &customers)?;
    let mut publish = eventbus(binary, data);
    publish.args(["publish", Topic::CommandsCustomers.name().as_str()]).stdin(std::fs::File::open(&file)?);
    checked(&mut publish, "publishing the customer commands").await?;
    let mut tail = eventbus(binary, data);
    tail.args(["tail", Topic::AccountsCreated.name().as_str(), "--from-beginning", "--idle-exit", "60"])
        .args(["--max", &count.to_string()])
        .stdin(Stdio::null());
    let created = checked(&mut tail, "eventbus tail").await?;
    let opened = created.stdout.split(|b| *b == b'\n').filter(|line| !line.is_empty()).count();
    anyhow::ensure!(opened == count, "{opened} of {count} accounts were opened");

    let accounts: Vec<AccountId> = (0..count).map(|n| format!("acc_bench_{n}").parse()).collect::<Result<_, _>>()?;
    let deposits = accounts
        .iter()
        .map(|account| {
            let data = json!({"action": "deposit", "account_id": account, "amount": commands::OPENING_BALANCE,
                              "currency": "USD", "description": "Opening balance"});
            command("transaction_command", "transaction", account.as_str(), data)
        })
        .collect();
    let (funded, _) = watcher.carry_out(binary, data, scratch, deposits, "funding the accounts").await?;
    anyhow::ensure!(funded.posted == count as u64, "{} of {count} opening deposits posted", funded.posted);
    Ok(accounts)
}

/// A command of this bench in the seed's format; `data` is a JSON object.
fn command(event_type: &str, entity_type: &str, entity_id: &str, data: serde_json::Value) -> EventSchema {
    let serde_json::Value::Object(data) = data else { unreachable!("the bench's commands are JSON objects") };
    EventSchema::new(event_type, entity_type, entity_id, data).with_source("bench-serve")
}

/// Writes `events` as JSON lines to a new file in `scratch`; returns its path.
fn write_lines(scratch: &Path, events: &[EventSchema]) -> anyhow::Result<PathBuf> {
    let file = scratch.join(format!("{}.jsonl", EventId::new()));
    let mut lines = Vec::with_capacity(events.len() * 512);
    for event in events {
        lines.extend_from_slice(&event.to_json());
        lines.push(b'\n');
    }
    std::fs::write(&file, lines)?;
    Ok(file)
}

/// Runs `command` to its end; fails with its standard error if it did not succeed.
async fn checked(command: &mut Command, what: &str) -> anyhow::Result<std::process::Output> {
    let output = command.output().await?;
    anyhow::ensure!(
        output.status.success(),
        "{what} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}
