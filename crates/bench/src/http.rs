//! `eventbus-bench http`: commands accepted per second through `POST /commands/transactions` on
//! loopback, and their latency. It runs the service and its API in this process on the embedded
//! backend (a SQLite event store with `synchronous=FULL`), then a load generator that sends a
//! fixed number of deposits over keep-alive HTTP/1.1 connections and stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use eventbus::{BusConfig, EmbeddedBus, EmbeddedConfig, EventBus};
use hdrhistogram::Histogram;
use nexum::clock::SystemClock;
use nexum::service::{CoreBanking, ServiceConfig};
use nexum::store::{SqliteStore, SqliteSync};
use nexum::{Ctx, EventStore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use eventbus_cli::{ApiConfig, ApiState, router};

use crate::bank::open_customer_account;
use crate::report::{Figures, progress};

/// Accounts the deposits spread over.
const ACCOUNTS: usize = 200;
const TOKEN: &str = "bench-token";

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

/// Sends the commands over HTTP; returns their figures.
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
    let config = ApiConfig { token: Some(TOKEN.into()), dev_mode: false, ..ApiConfig::default() };
    let state =
        ApiState::new(Arc::clone(&bus), Arc::clone(service.bank()), Arc::clone(service.projections()), config, None)
            .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = tokio::spawn(axum::serve(listener, router(state.clone())).into_future());

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
    let mut refused = 0;
    for client in clients {
        let (histogram, errors) = client.await??;
        latency.add(histogram)?;
        refused += errors;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    state.close();
    server.abort();
    service.shutdown().await?;
    bus.stop().await.ok();
    anyhow::ensure!(refused == 0, "{refused} command(s) were not accepted");

    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let accepted = options.commands as f64 / elapsed.as_secs_f64();
    let mut figures = Figures::default();
    figures.set("accepted_per_s", accepted).set("p50_ms", ms(0.5)).set("p99_ms", ms(0.99));
    println!();
    println!("| commands | connections | seconds | accepted per second | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
        options.commands,
        options.connections,
        elapsed.as_secs_f64(),
        accepted,
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

/// One keep-alive connection sending deposits until `total` are taken. Returns the latency in
/// microseconds and how many were not answered 202.
async fn client(
    address: String,
    next: Arc<AtomicU64>,
    total: u64,
    accounts: Arc<Vec<String>>,
    bar: indicatif::ProgressBar,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut latency = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    let mut stream = BufReader::new(TcpStream::connect(&address).await?);
    stream.get_mut().set_nodelay(true)?;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return Ok((latency, errors));
        }
        let account = &accounts[n as usize % accounts.len()];
        let body = format!(r#"{{"action":"deposit","account_id":"{account}","amount":"1.00","currency":"USD"}}"#);
        let request = format!(
            "POST /commands/transactions HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        stream.get_mut().write_all(request.as_bytes()).await?;
        let status = read_response(&mut stream).await?;
        latency.record(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX))?;
        if status != 202 {
            errors += 1;
        }
        if n.is_multiple_of(1000) {
            bar.set_position(n);
        }
    }
}

/// Reads one HTTP/1.1 response with a `content-length` body; returns its status.
async fn read_response(stream: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_line(&mut line)).await??;
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("not an HTTP response")?;
    let mut length = 0;
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(status)
}
