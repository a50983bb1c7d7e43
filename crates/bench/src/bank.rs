//! `eventbus-bench bank`: the banking core end to end. Deposits per second from command to
//! stored event to published event (SQLite and PostgreSQL event stores, memory bus), and the time
//! to replay 1,000,000 stored events into a balance projection. Prints a Markdown table.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use eventbus::{BusConfig, EventBus, EventId, MemoryBus, Money};
use nexum::bank::{NewAccount, NewCustomer};
use nexum::domain::{AccountType, KycStatus, KycTier, TransactionType};
use nexum::events::{NexumEvent, Payload, Posting, TransactionPosted};
use nexum::ids::{AccountId, JournalEntryId, TransactionId};
use nexum::store::{Commit, EventStore, NewEvent, PostgresStore, SqliteStore, SqliteSync, StreamId};
use nexum::{Bank, Causation, Ctx, RelayConfig};
use rust_decimal::Decimal;

use crate::report::{Figures, progress};

/// Accounts the deposits spread over.
const ACCOUNTS: usize = 1000;
/// Events per commit when the replay data is loaded.
const LOAD_BATCH: usize = 2000;
/// Events read per `read_all` call in the replay.
const REPLAY_PAGE: usize = 10_000;

/// What `eventbus-bench bank` runs.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Deposits per store.
    #[arg(long, default_value_t = 100_000)]
    deposits: u64,
    /// Deposits in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events to replay into a projection; 0 skips the replay.
    #[arg(long, default_value_t = 1_000_000)]
    replay_events: u64,
    /// Also measure a PostgreSQL event store, at this libpq connection string.
    #[arg(long)]
    postgres: Option<String>,
}

/// Runs the deposits on each store, then the replay; returns their figures.
pub async fn run(options: Options) -> anyhow::Result<Figures> {
    anyhow::ensure!((1..=10_000_000).contains(&options.deposits), "--deposits must be 1 to 10000000");
    anyhow::ensure!((1..=4096).contains(&options.concurrency), "--concurrency must be 1 to 4096");
    anyhow::ensure!(options.replay_events <= 50_000_000, "--replay-events must be at most 50000000");
    let dir = tempfile::tempdir().context("cannot create a scratch directory")?;
    let mut rows = Vec::new();

    let mut figures = Figures::default();
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("deposits.db"), SqliteSync::Full)?);
    let row = deposits("sqlite (synchronous=FULL)", sqlite, &options).await?;
    figures.set("deposits_per_s", row.per_sec);
    rows.push(row);
    let postgres = match &options.postgres {
        Some(config) => {
            let schema = format!("nexum_bench_{}", uuid::Uuid::new_v4().simple());
            Some(Arc::new(PostgresStore::connect(config, &schema).await.context("cannot reach PostgreSQL")?))
        }
        None => None,
    };
    if let Some(store) = &postgres {
        let row = deposits("postgres", store.clone(), &options).await?;
        figures.set("postgres_deposits_per_s", row.per_sec);
        rows.push(row);
    }
    if options.replay_events > 0 {
        let row = replay(&dir.path().join("replay.db"), options.replay_events).await?;
        figures.set("replay_events_per_s", row.per_sec).set("replay_seconds", row.seconds);
        rows.push(row);
    }
    if let Some(store) = postgres {
        store.drop_schema().await?;
    }

    println!();
    println!("| scenario | store | operations | per second | seconds |");
    println!("|---|---|---:|---:|---:|");
    for row in rows {
        println!("| {} | {} | {} | {:.0} | {:.2} |", row.scenario, row.store, row.operations, row.per_sec, row.seconds);
    }
    Ok(figures)
}

struct Row {
    scenario: &'static str,
    store: &'static str,
    operations: u64,
    per_sec: f64,
    seconds: f64,
}

/// A verified customer (tier 3) with a checking account in USD, opened directly on the bank: the
/// setup of the benchmarks, not measured.
pub async fn open_customer_account(bank: &Bank, ctx: &Ctx, n: usize) -> anyhow::Result<AccountId> {
    let new = NewCustomer {
        first_name: "Bench".into(),
        last_name: format!("Customer {n}"),
        email: format!("bench{n}@example.com"),
        ..Default::default()
    };
    let customer = bank.create_customer(ctx, new).await?;
    bank.change_kyc(ctx, &customer.id, KycStatus::Verified, KycTier::Tier3).await?;
    let account = NewAccount {
        id: None,
        customer_id: customer.id,
        account_type: AccountType::Checking,
        currency: "USD".parse()?,
        name: None,
        overdraft_limit: None,
    };
    Ok(bank.open_account(ctx, account).await?.id)
}

/// Deposits from `concurrency` tasks over [`ACCOUNTS`] accounts, through the bank and its
/// outbox relay to a memory bus. The clock stops when the last deposit is published.
async fn deposits(store_name: &'static str, store: Arc<dyn EventStore>, options: &Options) -> anyhow::Result<Row> {
    let bus = Arc::new(MemoryBus::memory_bounded(BusConfig::default(), 10_000).await?);
    bus.start().await?;
    let system = nexum::hooks::create_with(
        bus.clone(),
        store.clone(),
        RelayConfig { batch: 5000, ..RelayConfig::default() },
        &nexum::leadership::default_instance(),
    );
    let bank = Arc::clone(system.bank());
    let ctx = Ctx::now().by_user("bench");
    let setup = progress(ACCOUNTS as u64, &format!("opening accounts ({store_name})"));
    let mut accounts = Vec::with_capacity(ACCOUNTS);
    for n in 0..ACCOUNTS {
        accounts.push(open_customer_account(&bank, &ctx, n).await?);
        setup.inc(1);
    }
    setup.finish_and_clear();
    system.flush().await?;

    let bar = progress(options.deposits, &format!("deposits ({store_name})"));
    let accounts = Arc::new(accounts);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..options.concurrency {
        let (bank, accounts, bar) = (Arc::clone(&bank), Arc::clone(&accounts), bar.clone());
        let share = options.deposits / options.concurrency as u64
            + u64::from((worker as u64) < options.deposits % options.concurrency as u64);
        tasks.push(tokio::spawn(async move {
            let amount = Money::parse("25.00", "USD")?;
            for n in 0..share {
                let account = &accounts[(worker + n as usize * options_stride(accounts.len())) % accounts.len()];
                let receipt = bank.deposit(&Ctx::now(), account, amount, None, None).await?;
                anyhow::ensure!(receipt.is_posted(), "deposit failed: {receipt:?}");
                bar.inc(1);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let committed = started.elapsed();
    // Published: the outbox is empty.
    let deadline = Instant::now() + Duration::from_secs(600);
    while store.outbox_len().await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    anyhow::ensure!(store.outbox_len().await? == 0, "the relay did not publish everything within 600 s");
    system.shutdown().await;
    eprintln!(
        "{store_name}: {} deposits committed in {:.2} s, and published in {:.2} s",
        options.deposits,
        committed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    Ok(Row {
        scenario: "deposit: command → stored → published",
        store: store_name,
        operations: options.deposits,
        per_sec: options.deposits as f64 / elapsed.as_secs_f64(),
        seconds: elapsed.as_secs_f64(),
    })
}

/// Spreads consecutive deposits of a worker over the accounts.
fn options_stride(accounts: usize) -> usize {
    (accounts / 7).max(1)
}

/// Loads `events` posted deposits into a fresh SQLite store, then times reading them all and
/// folding them into a balance per account.
async fn replay(path: &Path, events: u64) -> anyhow::Result<Row> {
    let store = SqliteStore::open(path, SqliteSync::Normal)?;
    let usd = "USD".parse()?;
    let at = chrono::Utc::now();
    let bar = progress(events, "loading replay events");
    let mut loaded = 0;
    while loaded < events {
        let mut commit = Commit::default();
        for n in loaded..(loaded + LOAD_BATCH as u64).min(events) {
            let account = AccountId::derived(&format!("bench-{}", n % 10_000));
            let id = TransactionId::new();
            let posted = TransactionPosted {
                transaction_type: TransactionType::Deposit,
                amount: Decimal::new(2500, 2),
                currency: usd,
                from_account_id: None,
                to_account_id: Some(account.clone()),
                final_balance: Decimal::new(2500 * (n as i64 / 10_000 + 1), 2),
                journal_entry_id: JournalEntryId::new(),
                postings: vec![
                    Posting { account_id: AccountId::cash(), amount: Decimal::new(-2500, 2) },
                    Posting { account_id: account.clone(), amount: Decimal::new(2500, 2) },
                ],
            };
            let event = NexumEvent::new(&id, Payload::TransactionPosted(posted));
            let schema = event.to_schema(EventId::new(), at, &Causation::default());
            commit.push(
                NewEvent::new(StreamId::of("transaction", &id), event.topic().name(), schema)
                    .linked_to(StreamId::of("account", &account)),
            );
        }
        loaded += commit.events.len() as u64;
        bar.inc(commit.events.len() as u64);
        store.commit(commit).await?;
    }
    bar.finish_and_clear();

    let bar = progress(events, "replaying into a projection");
    let started = Instant::now();
    let mut balances: HashMap<AccountId, Decimal> = HashMap::new();
    let mut replayed = 0u64;
    // The next page is read (and parsed, on the store's thread) while this one is applied.
    let store = Arc::new(store);
    let read = |position: u64| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.read_all(position, REPLAY_PAGE).await })
    };
    let mut next = read(1);
    loop {
        let page = next.await??;
        let Some(last) = page.last() else { break };
        next = read(last.position + 1);
        for recorded in &page {
            let event = NexumEvent::from_schema(&recorded.event)?;
            if let Payload::TransactionPosted(posted) = event.payload {
                for posting in posted.postings {
                    *balances.entry(posting.account_id).or_default() += posting.amount;
                }
            }
        }
        replayed += page.len() as u64;
        bar.set_position(replayed);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    anyhow::ensure!(replayed == events, "replayed {replayed} of {events} events");
    let total: Decimal = balances.values().sum();
    anyhow::ensure!(total.is_zero(), "the projection's postings do not balance: {total}");
    Ok(Row {
        scenario: "replay into a balance projection",
        store: "sqlite",
        operations: events,
        per_sec: events as f64 / elapsed.as_secs_f64(),
        seconds: elapsed.as_secs_f64(),
    })
}
