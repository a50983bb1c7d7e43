//! `eventbus-bench http`: commands through `POST /commands/transactions` on loopback, accepted
//! and carried out. It runs the service and its API in this process on the embedded backend (a
//! SQLite event store with `synchronous=FULL`), then a load generator that sends a fixed number
//! of deposits over keep-alive HTTP/1.1 connections. A command refused with 429 is sent again,
//! with the same `Idempotency-Key`, after its `Retry-After`. The clock stops at the last outcome.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use eventbus::{
    BusConfig, EmbeddedBus, EmbeddedConfig, EventBus, GroupId, Message, StartPosition, Subscription, Topic, handler_fn,
};
use eventbus_cli::{ApiConfig, ApiState, router};
use hdrhistogram::Histogram;
use nexum::clock::SystemClock;
use nexum::ids::CommandId;
use nexum::service::{CoreBanking, ServiceConfig};
use nexum::store::{SqliteStore, SqliteSync};
use nexum::{Ctx, EventStore};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::bank::open_customer_account;
use crate::report::{Figures, progress};

/// Accounts the deposits spread over.
const ACCOUNTS: usize = 200;
const TOKEN: &str = "bench-token";
/// How long the run waits without a single new outcome before it gives up.
const STALL: Duration = Duration::from_secs(60);

/// What `eventbus-bench http` runs.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Commands to send.
    #[arg(long, default_value_t = 100_000)]
    commands: u64,
    /// Keep-alive connections sending at once.
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

/// Sends the commands over HTTP and waits until each is carried out; returns the figures.
pub async fn run(options: Options) -> anyhow::Result<Figures> {
    anyhow::ensure!((1..=10_000_000).contains(&options.commands), "--commands must be 1 to 10000000");
    anyhow::ensure!((1..=1024).contains(&options.connections), "--connections must be 1 to 1024");
    let dir = tempfile::tempdir().context("cannot create a scratch directory")?;
    let bus: Arc<dyn EventBus> =
        Arc::new(EmbeddedBus::embedded(BusConfig::default(), EmbeddedConfig::at(dir.path().join("bus"))).await?);
    bus.start().await?;
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&dir.path().join("events.db"), SqliteSync::Full)?);
    let service = CoreBanking::start(Arc::clone(&bus), store, Arc::new(SystemClock), ServiceConfig::default()).await?;
    let accounts = open_accounts(&service).await?;
    let config = ApiConfig { token: Some(TOKEN.into()), ..ApiConfig::default() };
    let state = ApiState::new(Arc::clone(&bus), service.view(), config, None).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = tokio::spawn(axum::serve(listener, router(state.clone())).into_future());
    let outcomes = Outcomes::watch(bus.as_ref(), options.commands).await?;

    let bar = progress(options.commands, "POST /commands/transactions");
    let next = Arc::new(AtomicU64::new(0));
    let accounts = Arc::new(accounts);
    let started = Instant::now();
    let clients: Vec<_> = (0..options.connections)
        .map(|_| {
            let (next, accounts, address, bar) =
                (Arc::clone(&next), Arc::clone(&accounts), address.clone(), bar.clone());
            tokio::spawn(client(address, next, options.commands, accounts, bar))
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3)?;
    let (mut refused, mut retried) = (0, 0);
    for client in clients {
        let sent = client.await??;
        latency.add(sent.latency)?;
        refused += sent.refused;
        retried += sent.retried;
    }
    let accepted_in = started.elapsed();
    bar.finish_and_clear();
    let carried_out = outcomes.wait_all(started).await;
    state.close();
    server.abort();
    service.shutdown().await?;
    bus.stop().await.ok();
    anyhow::ensure!(refused == 0, "{refused} command(s) were not accepted");
    let completed_in = carried_out?;

    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let accepted = options.commands as f64 / accepted_in.as_secs_f64();
    let completed = options.commands as f64 / completed_in.as_secs_f64();
    let mut figures = Figures::default();
    figures.set("accepted_per_s", accepted).set("completed_per_s", completed);
    figures.set("p50_ms", ms(0.5)).set("p99_ms", ms(0.99));
    println!();
    println!(
        "| commands | connections | accepted per second | carried out per second | 429s retried | p50 ms | p99 ms | p99.9 ms | max ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        options.commands,
        options.connections,
        accepted,
        completed,
        retried,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1000.0
    );
    Ok(figures)
}

/// Customers with a checking account each, opened directly on the bank (not measured).
async fn open_accounts(service: &CoreBanking) -> anyhow::Result<Vec<String>> {
    let bank = service.bank();
    let ctx = Ctx::now().by_user("bench");
    let setup = progress(ACCOUNTS as u64, "opening accounts");
    let mut accounts = Vec::with_capacity(ACCOUNTS);
    for n in 0..ACCOUNTS {
        accounts.push(open_customer_account(bank, &ctx, n).await?.to_string());
        setup.inc(1);
    }
    setup.finish_and_clear();
    Ok(accounts)
}

/// The idempotency key of command `n`; the API derives the command's id from it.
fn idempotency_key(n: u64) -> String {
    format!("bench-http-{n}")
}

/// Counts the outcomes of the bench's commands as the bus delivers them.
struct Outcomes {
    state: Arc<Mutex<(HashSet<String>, Option<Instant>)>>,
    arrived: Arc<Notify>,
}

impl Outcomes {
    /// Follows the outcome topics from now on, for the ids of commands `0..total`.
    async fn watch(bus: &dyn EventBus, total: u64) -> anyhow::Result<Self> {
        let expected: HashSet<String> = (0..total)
            .map(|n| CommandId::derived(&format!("api/transactions/{}", idempotency_key(n))).to_string())
            .collect();
        let state = Arc::new(Mutex::new((expected, None)));
        let arrived = Arc::new(Notify::new());
        let topics = [Topic::TransactionsPosted, Topic::TransactionsFailed, Topic::CommandsRejected].map(Topic::name);
        let [posted, failed, rejected] = topics;
        let subscription = Subscription::new(posted, GroupId::new("bench-http-outcomes")?)
            .and_topic(failed)
            .and_topic(rejected)
            .from(StartPosition::Latest);
        let (seen, wake) = (Arc::clone(&state), Arc::clone(&arrived));
        bus.subscribe(
            subscription,
            handler_fn(move |message: Message| {
                if let Some(cause) = message.event.metadata.get("causation_id").and_then(Value::as_str) {
                    let mut state = seen.lock().expect("the outcome lock is never poisoned");
                    if state.0.remove(cause) {
                        state.1 = Some(Instant::now());
                        wake.notify_one();
                    }
                }
                async { Ok(()) }
            }),
        )
        .await?;
        Ok(Self { state, arrived })
    }

    /// Waits until every command has its outcome; returns the time from `started` to the last.
    async fn wait_all(&self, started: Instant) -> anyhow::Result<Duration> {
        let mut last_progress = (usize::MAX, Instant::now());
        loop {
            let (waiting, last) = {
                let state = self.state.lock().expect("the outcome lock is never poisoned");
                (state.0.len(), state.1)
            };
            if waiting == 0 {
                return Ok(last.unwrap_or_else(Instant::now).duration_since(started));
            }
            if waiting < last_progress.0 {
                last_progress = (waiting, Instant::now());
            }
            anyhow::ensure!(
                last_progress.1.elapsed() < STALL,
                "{waiting} command(s) got no outcome: nothing arrived for {} s",
                STALL.as_secs()
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), self.arrived.notified()).await;
        }
    }
}

/// What one connection did.
struct Sent {
    /// Time to the API's answer, in microseconds, for the commands it accepted.
    latency: Histogram<u64>,
    /// Commands answered with something else than 202 or 429.
    refused: u64,
    /// 429s answered, each sent again after its `Retry-After`.
    retried: u64,
}

/// One keep-alive connection sending deposits until `total` are taken.
async fn client(
    address: String,
    next: Arc<AtomicU64>,
    total: u64,
    accounts: Arc<Vec<String>>,
    bar: indicatif::ProgressBar,
) -> anyhow::Result<Sent> {
    let mut sent = Sent { latency: Histogram::<u64>::new(3)?, refused: 0, retried: 0 };
    let mut stream = BufReader::new(TcpStream::connect(&address).await?);
    stream.get_mut().set_nodelay(true)?;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return Ok(sent);
        }
        let account = &accounts[n as usize % accounts.len()];
        let body = format!(r#"{{"action":"deposit","account_id":"{account}","amount":"1.00","currency":"USD"}}"#);
        let request = format!(
            "POST /commands/transactions HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Idempotency-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            idempotency_key(n),
            body.len()
        );
        loop {
            let started = Instant::now();
            stream.get_mut().write_all(request.as_bytes()).await?;
            let (status, retry_after) = read_response(&mut stream).await?;
            match status {
                202 => {
                    sent.latency.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))?;
                    break;
                }
                429 => {
                    sent.retried += 1;
                    tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(1))).await;
                }
                _ => {
                    sent.refused += 1;
                    break;
                }
            }
        }
        if n.is_multiple_of(1000) {
            bar.set_position(n);
        }
    }
}

/// Reads one HTTP/1.1 response with a `content-length` body; returns its status and
/// `Retry-After`.
async fn read_response(stream: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, Option<Duration>)> {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_line(&mut line)).await??;
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("not an HTTP response")?;
    let (mut length, mut retry_after) = (0, None);
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            } else if name.eq_ignore_ascii_case("retry-after") {
                retry_after = value.trim().parse().ok().map(Duration::from_secs);
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok((status, retry_after))
}
