//! `eventbus-bench commands`: commands per second end to end on the embedded backend, and the
//! latency from sending a command to seeing its outcome event.
//!
//! The service is assembled as in production: an embedded bus (durable, group commit), a SQLite
//! event store with `synchronous=FULL`, the event-enabled bank with its outbox relay, and
//! `NexumCommandHandler` consuming `nexum.commands.*`. A load generator publishes deposit,
//! withdraw and transfer commands in the seed's format to `nexum.commands.transactions`; a
//! watcher in its own group reads `nexum.transactions.{posted,failed}` and
//! `nexum.commands.rejected` and matches each outcome to its command by `causation_id`. Every
//! command must get exactly one outcome, and none may be rejected. Prints a Markdown table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use eventbus::{
    BusConfig, EmbeddedBus, EmbeddedConfig, EventBus, EventId, EventSchema, GroupId, KafkaBus, KafkaConfig, Message,
    Money, StartPosition, Subscription, Topic, TopicName, handler_fn,
};
use futures::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use nexum::bank::Bank;
use nexum::clock::SystemClock;
use nexum::ids::AccountId;
use nexum::store::{EventStore, PostgresStore, SqliteStore, SqliteSync};
use nexum::{CommandOutcome, Ctx, EventEnabledBank, NexumCommandHandler, create_event_enabled_banking_system};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use crate::bank::open_customer_account;
use crate::report::{Figures, progress};

/// Commands in flight when neither `--in-flight` nor `--rate` is given.
pub const DEFAULT_IN_FLIGHT: usize = 256;
/// The watcher's consumer group.
const WATCHER_GROUP: &str = "bench-commands-watcher";
/// How long the run waits without a single new outcome before it gives up.
const STALL: Duration = Duration::from_secs(60);
/// Accounts opened at once while seeding, so that their commits share fsyncs.
const SEED_CONCURRENCY: usize = 64;
/// Each account's opening balance: below the reporting threshold, so seeding raises no alerts,
/// and far above what the withdrawals and transfers of a run take out.
pub(crate) const OPENING_BALANCE: &str = "5000.00";
/// How many rejections or duplicate outcomes the error names.
const SHOWN_PROBLEMS: usize = 5;

/// What `eventbus-bench commands` runs.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Commands of each capacity run: the bank alone, then end to end.
    #[arg(long, default_value_t = 20_000)]
    commands: u64,
    /// Commands sent and not yet answered, at most, in the capacity runs.
    #[arg(long, default_value_t = DEFAULT_IN_FLIGHT)]
    in_flight: usize,
    /// Commands per second of the open-loop latency run [default: half the end-to-end capacity
    /// just measured].
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of the open-loop latency run.
    #[arg(long, default_value_t = 5)]
    latency_secs: u64,
    /// Funded accounts the commands spread over.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Run on Kafka at these bootstrap servers (`host:port[,host:port]`), with the durable
    /// outbox, instead of the embedded bus.
    #[arg(long)]
    brokers: Option<String>,
    /// A librdkafka property for the Kafka runs, `NAME=VALUE`; may be repeated.
    #[arg(long = "kafka-property", value_name = "NAME=VALUE", value_parser = crate::bus::parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// Keep the event store in PostgreSQL (libpq connection string, e.g. `host=127.0.0.1
    /// user=postgres dbname=test`) instead of SQLite; each run uses a fresh schema and drops it.
    #[arg(long)]
    postgres: Option<String>,
}

/// How the load generator paces itself.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pace {
    /// At most this many commands without an outcome.
    InFlight(usize),
    /// This many commands per second, whatever is in flight.
    Rate(f64),
}

impl std::fmt::Display for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InFlight(n) => write!(f, "{n} in flight"),
            Self::Rate(rate) => write!(f, "open loop {rate:.0}/s"),
        }
    }
}

/// Runs the three runs (the bank alone, end to end at capacity, end to end open loop at half of
/// it); returns their figures.
pub async fn run(options: Options) -> anyhow::Result<Figures> {
    validate(&options)?;
    let capacity = Pace::InFlight(options.in_flight);

    // 1. The bank alone: the handler called directly, no bus before it.
    let alone = bank_alone(&options).await?;

    // 2. End to end at capacity, then 3. open loop at half of it, for the latency.
    let system = System::open(&options).await?;
    let runs = async {
        let full = system.end_to_end(0, options.commands, capacity, "capacity").await?;
        let rate = options.rate.unwrap_or(full.rate() / 2.0).max(1.0);
        let open = (rate * options.latency_secs as f64).ceil() as u64;
        let latency = system.end_to_end(options.commands, open, Pace::Rate(rate), "latency").await?;
        anyhow::Ok((full, latency, rate))
    };
    let runs = runs.await;
    system.close().await?;
    let (full, latency, rate) = runs?;

    println!();
    let bus = match &options.brokers {
        Some(brokers) => format!("Kafka bus at {brokers} (durable outbox, lz4, linger 5 ms)"),
        None => "Embedded bus (sync=full, group commit)".to_owned(),
    };
    let store = match &options.postgres {
        Some(_) => "PostgreSQL event store",
        None => "SQLite event store (synchronous=FULL)",
    };
    println!(
        "{bus}, {store}, {} funded accounts. Commands: 70% deposit, 20% withdraw, 10% transfer.",
        options.accounts,
    );
    println!();
    println!("| run | commands | posted | failed | seconds | commands/s | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    alone.print(&format!("bank alone, {capacity}"));
    full.print(&format!("end to end, {capacity}"));
    latency.print(&format!("end to end, {}", Pace::Rate(rate)));
    let ratio = full.rate() / alone.rate();
    println!();
    println!("End to end ÷ bank alone: {ratio:.2}");
    let mut figures = Figures::default();
    figures.set("commands_per_s", full.rate()).set("bank_alone_per_s", alone.rate()).set("ratio", ratio);
    figures.set("p99_ms", latency.ms(0.99)).set("open_loop_per_s", rate).set("capacity_p99_ms", full.ms(0.99));
    Ok(figures)
}

/// The bank alone on the embedded default and SQLite, as `commands` measures it first: `total`
/// commands of the mix over `accounts` funded accounts, [`DEFAULT_IN_FLIGHT`] at a time.
pub(crate) async fn embedded_bank_alone(total: u64, accounts: usize) -> anyhow::Result<Report> {
    let options = Options {
        commands: total,
        in_flight: DEFAULT_IN_FLIGHT,
        rate: None,
        latency_secs: 1,
        accounts,
        brokers: None,
        kafka_properties: Vec::new(),
        postgres: None,
    };
    validate(&options)?;
    bank_alone(&options).await
}

/// The command handler called directly, with no bus before it, on a system of its own.
async fn bank_alone(options: &Options) -> anyhow::Result<Report> {
    let system = System::open(options).await?;
    let alone = system.bank_alone(options.commands, options.in_flight).await;
    system.close().await?;
    alone
}

fn validate(options: &Options) -> anyhow::Result<()> {
    anyhow::ensure!((1..=10_000_000).contains(&options.commands), "--commands must be 1 to 10000000");
    anyhow::ensure!((2..=100_000).contains(&options.accounts), "--accounts must be 2 to 100000");
    anyhow::ensure!((1..=65_536).contains(&options.in_flight), "--in-flight must be 1 to 65536");
    anyhow::ensure!((1..=600).contains(&options.latency_secs), "--latency-secs must be 1 to 600");
    if let Some(rate) = options.rate {
        anyhow::ensure!(
            rate.is_finite() && (1.0..=1_000_000.0).contains(&rate),
            "--rate must be 1 to 1000000 commands per second"
        );
    }
    Ok(())
}

/// The service of one run, in a scratch directory: a bus (embedded, or Kafka with its outbox
/// there), an event store (SQLite there, or a fresh PostgreSQL schema), the event-enabled bank
/// with its relay, and funded accounts.
struct System {
    _dir: tempfile::TempDir,
    bus: Arc<dyn EventBus>,
    store: Arc<dyn EventStore>,
    /// The PostgreSQL server and schema to drop when the run ends.
    postgres: Option<(String, String)>,
    banking: EventEnabledBank,
    accounts: Vec<AccountId>,
}

impl System {
    async fn open(options: &Options) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("eventbus-bench-commands-")
            .tempdir()
            .context("cannot create a scratch directory")?;
        let bus: Arc<dyn EventBus> = match &options.brokers {
            Some(brokers) => {
                let mut kafka =
                    KafkaConfig { outbox_dir: Some(dir.path().join("kafka-outbox")), ..KafkaConfig::at(brokers) };
                kafka.properties.extend(options.kafka_properties.iter().cloned());
                Arc::new(KafkaBus::connect(kafka, BusConfig::default()).await.context("cannot reach Kafka")?)
            }
            None => {
                let embedded = EmbeddedConfig::at(dir.path().join("bus"));
                Arc::new(
                    EmbeddedBus::embedded(BusConfig::default(), embedded)
                        .await
                        .context("cannot open the embedded bus")?,
                )
            }
        };
        bus.start().await?;
        let (store, postgres): (Arc<dyn EventStore>, _) = match &options.postgres {
            Some(server) => {
                let schema = format!("bench_{}", EventId::new().to_string().replace('-', ""));
                let store =
                    PostgresStore::connect(server, &schema).await.context("cannot open the PostgreSQL store")?;
                (Arc::new(store), Some((server.clone(), schema)))
            }
            None => (Arc::new(SqliteStore::open(&dir.path().join("bank.db"), SqliteSync::Full)?), None),
        };
        let banking = create_event_enabled_banking_system(bus.clone(), store.clone());
        let accounts = seed(banking.bank(), options.accounts).await?;
        banking.flush().await?;
        tracing::info!(accounts = accounts.len(), "Accounts opened and funded");
        Ok(Self { _dir: dir, bus, store, postgres, banking, accounts })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.banking.shutdown().await;
        self.bus.stop().await?;
        drop(self.store);
        if let Some((server, schema)) = self.postgres {
            let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
            let connection = tokio::spawn(connection);
            client.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await?;
            drop(client);
            let _ = connection.await;
        }
        Ok(())
    }

    /// Carries out `total` commands by calling the command handler directly from `in_flight`
    /// tasks, as the bus would; the clock stops when the last one's events are published.
    async fn bank_alone(&self, total: u64, in_flight: usize) -> anyhow::Result<Report> {
        let handler = NexumCommandHandler::new(Arc::clone(self.banking.bank()), Arc::new(SystemClock));
        let topic = Topic::CommandsTransactions.name();
        let bar = progress(total, "bank alone");
        let mut latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)?;
        let started = Instant::now();
        let outcomes: Vec<(CommandOutcome, u64)> = futures::stream::iter(0..total)
            .map(|n| {
                let (handler, topic, bar) = (Arc::clone(&handler), &topic, bar.clone());
                let command = command(n, &self.accounts);
                async move {
                    let sent = Instant::now();
                    let place = format!("bench/{n}");
                    // A transient failure (lost races, a busy store) is retried, as the bus
                    // would retry it, a few times.
                    let mut attempt = 1;
                    let outcome = loop {
                        match handler.handle(topic, &command, &place).await {
                            Ok(outcome) => break outcome,
                            Err(error) if !error.is_permanent() && attempt < 5 => attempt += 1,
                            Err(error) => anyhow::bail!("{error}"),
                        }
                    };
                    bar.inc(1);
                    anyhow::Ok((outcome, sent.elapsed().as_micros() as u64))
                }
            })
            .buffer_unordered(in_flight)
            .try_collect()
            .await?;
        self.banking.flush().await?;
        let elapsed = started.elapsed();
        bar.finish_and_clear();
        let mut executed = 0;
        for (outcome, micros) in outcomes {
            anyhow::ensure!(outcome == CommandOutcome::Executed, "a command was not carried out: {outcome:?}");
            latency.saturating_record(micros.max(1));
            executed += 1;
        }
        let posted = executed;
        Ok(Report { commands: total, elapsed, posted, failed: 0, latency })
    }

    /// Sends commands `first..first + total` through the bus to the command handler, paced by
    /// `pace`, and waits for every outcome.
    async fn end_to_end(&self, first: u64, total: u64, pace: Pace, run: &str) -> anyhow::Result<Report> {
        if first == 0 {
            NexumCommandHandler::new(Arc::clone(self.banking.bank()), Arc::new(SystemClock)).start(&*self.bus).await?;
        }
        let bar = progress(total, &format!("commands → outcomes ({run})"));
        let tracker = Tracker::new(pace, bar.clone())?;
        let group = GroupId::new(format!("{WATCHER_GROUP}-{run}"))?;
        watch_outcomes(&*self.bus, &tracker, &group).await?;
        let report = drive(&*self.bus, self.store.as_ref(), &tracker, &group, &self.accounts, first, total, pace).await;
        bar.finish_and_clear();
        report
    }
}

/// Opens `count` verified customers with one funded checking account each, directly through the
/// bank.
async fn seed(bank: &Arc<Bank>, count: usize) -> anyhow::Result<Vec<AccountId>> {
    let bar = progress(count as u64, "opening funded accounts");
    let opening = Money::parse(OPENING_BALANCE, "USD")?;
    let accounts = futures::stream::iter(0..count)
        .map(|n| {
            let bar = bar.clone();
            async move {
                let ctx = Ctx::now().by_user("bench-commands");
                let account = open_customer_account(bank, &ctx, n).await?;
                let receipt = bank.deposit(&ctx, &account, opening, None, None).await?;
                anyhow::ensure!(receipt.is_posted(), "the opening deposit failed: {receipt:?}");
                bar.inc(1);
                anyhow::Ok(account)
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    Ok(accounts)
}

/// What the watcher knows of one command.
pub(crate) enum Entry {
    /// Sent at this instant; no outcome yet.
    Sent(Instant),
    /// Answered by this outcome event.
    Answered(Option<EventId>),
}

/// The commands sent and their outcomes, shared by the generator and the watcher.
pub(crate) struct Tracker {
    state: Mutex<State>,
    /// Notified on every outcome.
    outcome: Notify,
    /// Free places in flight, in closed loop; the watcher gives one back per outcome.
    places: Option<Semaphore>,
    bar: ProgressBar,
}

pub(crate) struct State {
    pub(crate) commands: HashMap<String, Entry>,
    latency: Histogram<u64>,
    answered: u64,
    posted: u64,
    failed: u64,
    last_outcome: Option<Instant>,
    rejections: Vec<String>,
    duplicates: Vec<String>,
}

impl Tracker {
    pub(crate) fn new(pace: Pace, bar: ProgressBar) -> anyhow::Result<Arc<Self>> {
        let state = State {
            commands: HashMap::new(),
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
            answered: 0,
            posted: 0,
            failed: 0,
            last_outcome: None,
            rejections: Vec::new(),
            duplicates: Vec::new(),
        };
        let places = match pace {
            Pace::InFlight(n) => Some(Semaphore::new(n)),
            Pace::Rate(_) => None,
        };
        Ok(Arc::new(Self { state: Mutex::new(state), outcome: Notify::new(), places, bar }))
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the tracker's lock is never poisoned: nothing panics while holding it")
    }

    /// Records an outcome event received on `topic`.
    fn observe(&self, topic: &TopicName, event: &EventSchema, kind: Outcome) {
        let Some(cause) = event.metadata.get("causation_id").and_then(Value::as_str) else { return };
        let now = Instant::now();
        let mut state = self.state();
        let state = &mut *state;
        let Some(entry) = state.commands.get_mut(cause) else {
            // An outcome of the seeding, not of a command.
            return;
        };
        match entry {
            Entry::Sent(sent) => {
                let micros = now.duration_since(*sent).as_micros() as u64;
                state.latency.saturating_record(micros.max(1));
                *entry = Entry::Answered(event.event_id.clone());
                state.answered += 1;
                state.last_outcome = Some(now);
                match kind {
                    Outcome::Posted => state.posted += 1,
                    Outcome::Failed => state.failed += 1,
                    Outcome::Rejected => {
                        let text = |key: &str| event.data.get(key).and_then(Value::as_str).unwrap_or_default();
                        state.rejections.push(format!("{cause}: {} ({})", text("reason"), text("error_code")));
                    }
                }
                if let Some(places) = &self.places {
                    places.add_permits(1);
                }
                self.bar.inc(1);
                self.outcome.notify_waiters();
            }
            // The same outcome delivered again: at least once is the bus's promise.
            Entry::Answered(first) if first.is_some() && *first == event.event_id => {}
            Entry::Answered(_) => {
                let id = event.event_id.as_ref().map_or_else(|| "none".to_owned(), EventId::to_string);
                state.duplicates.push(format!("{cause}: a second outcome {id} on {topic}"));
                self.outcome.notify_waiters();
            }
        }
    }

    /// Fails if a command was rejected or answered twice.
    fn check(&self) -> anyhow::Result<()> {
        let state = self.state();
        let shown = |list: &[String]| list.iter().take(SHOWN_PROBLEMS).cloned().collect::<Vec<_>>().join("; ");
        anyhow::ensure!(
            state.rejections.is_empty(),
            "{} command(s) were rejected, e.g. {}",
            state.rejections.len(),
            shown(&state.rejections)
        );
        anyhow::ensure!(
            state.duplicates.is_empty(),
            "{} command(s) got more than one outcome, e.g. {}",
            state.duplicates.len(),
            shown(&state.duplicates)
        );
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Posted,
    Failed,
    Rejected,
}

/// Subscribes the watcher, in its own group, from the beginning of the outcome topics.
pub(crate) async fn watch_outcomes(bus: &dyn EventBus, tracker: &Arc<Tracker>, group: &GroupId) -> anyhow::Result<()> {
    let topics = [
        (Topic::TransactionsPosted.name(), Outcome::Posted),
        (Topic::TransactionsFailed.name(), Outcome::Failed),
        (Topic::CommandsRejected.name(), Outcome::Rejected),
    ];
    let subscription = Subscription::new(topics[0].0.clone(), group.clone())
        .and_topic(topics[1].0.clone())
        .and_topic(topics[2].0.clone())
        .from(StartPosition::Latest);
    let tracker = Arc::clone(tracker);
    let handler = handler_fn(move |message: Message| {
        let kind = topics.iter().find(|(topic, _)| *topic == message.topic).map(|(_, kind)| *kind);
        if let Some(kind) = kind {
            tracker.observe(&message.topic, &message.event, kind);
        }
        async { Ok(()) }
    });
    bus.subscribe(subscription, handler).await?;
    Ok(())
}

/// What one run measured.
pub(crate) struct Report {
    pub(crate) commands: u64,
    pub(crate) elapsed: Duration,
    pub(crate) posted: u64,
    pub(crate) failed: u64,
    /// From sending each command to its outcome, in microseconds.
    latency: Histogram<u64>,
}

impl Report {
    pub(crate) fn rate(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q`, in milliseconds.
    fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub(crate) fn print(&self, run: &str) {
        println!(
            "| {run} | {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            self.commands,
            self.posted,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.latency.max() as f64 / 1000.0,
        );
    }
}

/// Sends the commands, waits for every outcome, and checks that each command got exactly one.
#[allow(clippy::too_many_arguments)]
async fn drive(
    bus: &dyn EventBus,
    store: &dyn EventStore,
    tracker: &Tracker,
    group: &GroupId,
    accounts: &[AccountId],
    first: u64,
    total: u64,
    pace: Pace,
) -> anyhow::Result<Report> {
    let topic = Topic::CommandsTransactions.name();
    let mut publishing = FuturesUnordered::new();
    let started = Instant::now();
    for n in first..first + total {
        // Wait for a place in flight, or for the command's time, meanwhile collecting the
        // acknowledgements of the commands sent.
        let due = wait_turn(tracker, pace, started, n - first);
        tokio::pin!(due);
        loop {
            tokio::select! {
                biased;
                Some(published) = publishing.next() => {
                    let published: Result<eventbus::Published, eventbus::BusError> = published;
                    published.context("publishing a command failed")?;
                }
                result = &mut due => break result?,
            }
        }
        tracker.check()?;
        let command = command(n, accounts);
        let id = command.event_id.as_ref().map(EventId::to_string).context("a command has an id")?;
        tracker.state().commands.insert(id, Entry::Sent(Instant::now()));
        let topic = &topic;
        publishing.push(async move { bus.publish(topic, command, None).await });
    }
    let acknowledged = async {
        while let Some(published) = publishing.next().await {
            published.context("publishing a command failed")?;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(STALL, acknowledged)
        .await
        .with_context(|| format!("the bus did not acknowledge the last commands within {} s", STALL.as_secs()))??;
    tracing::info!(commands = total, seconds = started.elapsed().as_secs_f64(), "All commands published");
    let elapsed = all_answered(tracker, total, started).await?;
    settled_report(bus, store, tracker, group, total, elapsed).await
}

/// Waits until each of the `total` commands has an outcome, with no stall longer than [`STALL`];
/// returns the time from `started` to the last outcome.
pub(crate) async fn all_answered(tracker: &Tracker, total: u64, started: Instant) -> anyhow::Result<Duration> {
    loop {
        tracker.check()?;
        let notified = tracker.outcome.notified();
        let (answered, last) = {
            let state = tracker.state();
            (state.answered, state.last_outcome)
        };
        if answered == total {
            break;
        }
        let since = last.unwrap_or(started).elapsed();
        anyhow::ensure!(
            since < STALL,
            "{} of {total} commands got no outcome: nothing arrived for {} s",
            total - answered,
            STALL.as_secs()
        );
        let _ = tokio::time::timeout(STALL - since, notified).await;
    }
    let last = tracker.state().last_outcome.unwrap_or_else(Instant::now);
    let elapsed = last.duration_since(started);
    tracing::info!(commands = total, seconds = elapsed.as_secs_f64(), "Every command answered");
    Ok(elapsed)
}

/// Exactly one outcome each: lets everything committed reach the watcher, then looks for second
/// outcomes; returns the run's report.
pub(crate) async fn settled_report(
    bus: &dyn EventBus,
    store: &dyn EventStore,
    tracker: &Tracker,
    group: &GroupId,
    total: u64,
    elapsed: Duration,
) -> anyhow::Result<Report> {
    settle(bus, store, group).await?;
    tracing::info!("Outbox empty and every outcome read");
    tracker.check()?;
    let state = tracker.state();
    Ok(Report { commands: total, elapsed, posted: state.posted, failed: state.failed, latency: state.latency.clone() })
}

/// Waits for a place in flight (closed loop) or for command `n`'s time (open loop).
async fn wait_turn(tracker: &Tracker, pace: Pace, started: Instant, n: u64) -> anyhow::Result<()> {
    match (pace, &tracker.places) {
        (Pace::InFlight(in_flight), Some(places)) => {
            let permit = tokio::time::timeout(STALL, places.acquire())
                .await
                .with_context(|| format!("no outcome for {} s with {in_flight} commands in flight", STALL.as_secs()))?;
            // Given back by the watcher when the command's outcome arrives.
            permit.context("the semaphore is never closed")?.forget();
            Ok(())
        }
        (Pace::Rate(rate), _) => {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            Ok(())
        }
        (Pace::InFlight(_), None) => anyhow::bail!("a closed-loop run has places in flight"),
    }
}

/// Waits until the relay has published everything the bank committed and the watcher has read
/// it all, so that a second outcome of any command would have been seen.
async fn settle(bus: &dyn EventBus, store: &dyn EventStore, group: &GroupId) -> anyhow::Result<()> {
    let topics = [Topic::TransactionsPosted, Topic::TransactionsFailed, Topic::CommandsRejected].map(Topic::name);
    let deadline = Instant::now() + STALL;
    loop {
        let mut behind = store.outbox_len().await?;
        for topic in &topics {
            behind += bus.group_offsets(group, topic).await?.iter().map(|p| p.lag).sum::<u64>();
        }
        if behind == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{behind} events still unpublished or unread by the watcher after {} s",
            STALL.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Command `n` in the seed's format: 70% deposits, 20% withdrawals, 10% transfers, spread over
/// the accounts by a hash of `n`.
pub(crate) fn command(n: u64, accounts: &[AccountId]) -> EventSchema {
    let pick = |salt: u64| &accounts[(mix(n ^ salt) % accounts.len() as u64) as usize];
    let account = pick(0);
    let data = match n % 10 {
        0..=6 => json!({"action": "deposit", "account_id": account, "amount": "25.00", "currency": "USD",
                        "description": "Cash deposit"}),
        7 | 8 => json!({"action": "withdraw", "account_id": account, "amount": "10.00", "currency": "USD",
                        "description": "ATM withdrawal"}),
        _ => {
            let mut to = pick(0x5eed);
            if to == account {
                to = &accounts[(accounts.iter().position(|a| a == account).unwrap_or(0) + 1) % accounts.len()];
            }
            json!({"action": "transfer", "from_account_id": account, "to_account_id": to, "amount": "5.00",
                   "currency": "USD", "description": "Rent share"})
        }
    };
    let Value::Object(data) = data else { unreachable!("a json! object is an object") };
    EventSchema::new("transaction_command", "transaction", account.as_str(), data)
        .with_source("bench-commands")
        .with_metadata("user_id", "bench-commands")
}

/// splitmix64: spreads consecutive numbers over the accounts.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_mostly_deposits_and_every_command_parses() {
        let accounts: Vec<AccountId> = (0..10).map(|n| AccountId::derived(&format!("bench-{n}"))).collect();
        let topic = Topic::CommandsTransactions.name();
        let mut actions: HashMap<String, u64> = HashMap::new();
        for n in 0..1000 {
            let event = command(n, &accounts);
            assert!(nexum::commands::parse(&topic, &event).is_ok(), "{event:?}");
            *actions.entry(event.data["action"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        assert_eq!(actions["deposit"], 700);
        assert_eq!(actions["withdraw"], 200);
        assert_eq!(actions["transfer"], 100);
    }
}
