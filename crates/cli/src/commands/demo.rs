//! `eventbus demo`: seed 000 end to end in one process. Both producers and the recommender run
//! live; then the consumer is restarted (it resumes from its committed offsets) and a new group
//! replays everything from the beginning and must reach the same recommendations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use capera::service::{self, DEFAULT_GROUP, ServiceError, Worker};
use eventbus::{BackendKind, EventBus, GroupId, StartPosition, Topic};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::produce::Simulator;
use crate::cli::Producer;
use crate::config::Config;
use crate::inbox::{self, End, Inbox};

/// Fixed seeds: every run of the demo shows the same story.
const BANK_SEED: u64 = 1;
const MARKET_SEED: u64 = 2;
/// Events produced while the consumer is down, between the live run and its restart.
const WHILE_DOWN: u64 = 100;

pub async fn run(config: &Config, events: u64) -> anyhow::Result<()> {
    ensure!(events > 0, "--events must be at least 1");
    ensure!(
        matches!(config.bus, BackendKind::Embedded | BackendKind::Kafka),
        "the demo restarts the consumer and replays what was stored, so it needs a durable backend (embedded or kafka), not {}",
        config.bus
    );
    let mut config = config.clone();
    config.data_dir = config.data_dir.join("demo");
    if config.bus == BackendKind::Embedded && config.data_dir.exists() {
        std::fs::remove_dir_all(&config.data_dir)?;
    }
    let place = match config.bus {
        BackendKind::Kafka => format!("brokers {}", config.kafka.brokers),
        _ => format!("data in {}", config.data_dir.display()),
    };
    println!("Capera demo on the {} backend, {place}\n", config.bus);
    let started = Instant::now();
    // Groups of this run only, and the moment it began: on Kafka the topics outlive the demo, so
    // the live group starts at the end of each topic and the replay at this moment.
    let run_started = chrono::Utc::now();
    let run = run_started.format("%Y%m%dT%H%M%S");
    let live_group = GroupId::new(format!("{DEFAULT_GROUP}-demo-{run}"))?;

    // 1. Live: two producers and the recommender, each in its own task.
    println!("1. Live: bank transactions and market prices flow to the recommender");
    let bus = crate::open_bus(&config, crate::Outbox::Required).await?;
    let multi = MultiProgress::new();
    let bar = |label: &str, len: u64| {
        let bar = multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template("   {msg:24} [{bar:30}] {pos:>6}/{len:6} {per_sec:>12}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(label.to_owned());
        bar
    };
    let (bank_bar, market_bar, consumed_bar) =
        (bar("bank.transactions", events), bar("market.price.updates", events), bar("recommender", 2 * events));
    let mut live = Recorder::new(Some(multi.clone()));
    let subscription = service::subscription(live_group.clone());
    let (handler, mut inbox) = inbox::inbox();
    bus.subscribe(subscription.clone().from(StartPosition::Latest).with_retry(config.retry()), handler).await?;
    let rate = (events as f64 / 3.0).max(100.0);
    let mut bank = Simulator::new(Producer::BankTransactions, BANK_SEED);
    let mut market = Simulator::new(Producer::MarketPrices, MARKET_SEED);
    let producers = {
        let bus = Arc::clone(&bus);
        let (bank_bar, market_bar) = (bank_bar.clone(), market_bar.clone());
        tokio::spawn(async move {
            let forever = std::future::pending::<()>;
            let (b, m) = tokio::join!(
                bank.publish(bus.as_ref(), events, rate, &bank_bar, forever()),
                market.publish(bus.as_ref(), events, rate, &market_bar, forever()),
            );
            b?;
            m?;
            anyhow::Ok((bank, market))
        })
    };
    live.consume(bus.as_ref(), &mut inbox, 2 * events, Some(&consumed_bar)).await?;
    let (mut bank, mut market) = producers.await??;
    inbox.close(bus.as_ref()).await?;
    multi.clear()?;
    println!("   {} events in, {} recommendations out\n", live.consumed, live.issued.len());

    // 2. The consumer is down while the producers go on; on restart it resumes where it committed.
    println!("2. Restart: the consumer stops, {WHILE_DOWN} more events of each kind arrive, the consumer comes back");
    // Stopped, so that its consumers end, then dropped: its Kafka outbox is then free for the next bus.
    bus.stop().await?;
    drop(bus);
    let producer_bus = crate::open_bus(&config, crate::Outbox::Required).await?;
    let quiet = ProgressBar::hidden();
    let never = std::future::pending::<()>;
    bank.publish(producer_bus.as_ref(), WHILE_DOWN, 0.0, &quiet, never()).await?;
    market.publish(producer_bus.as_ref(), WHILE_DOWN, 0.0, &quiet, never()).await?;
    producer_bus.stop().await?;
    // A Kafka bus holds its outbox until it is dropped.
    drop(producer_bus);
    let bus = crate::open_bus(&config, crate::Outbox::Required).await?;
    let (handler, mut inbox) = inbox::inbox();
    bus.subscribe(subscription.with_retry(config.retry()), handler).await?;
    // The recommender keeps its state across the restart of the bus; a new process would rebuild it
    // by replaying (step 3 shows that this gives the same result).
    live.printer = None;
    let mut resumed = live;
    let before = resumed.consumed;
    resumed.consume(bus.as_ref(), &mut inbox, 2 * WHILE_DOWN, None).await?;
    let end = resumed.drain(bus.as_ref(), &mut inbox).await?;
    inbox.close(bus.as_ref()).await?;
    println!(
        "   resumed from the committed offsets: {} events handled, exactly the {} new ones ({end:?})\n",
        resumed.consumed - before,
        2 * WHILE_DOWN
    );
    ensure!(
        resumed.consumed - before == 2 * WHILE_DOWN,
        "the restarted consumer handled {} events",
        resumed.consumed - before
    );

    // 3. Replay: a new group reads everything from the beginning and recomputes.
    println!("3. Replay: a new group reads both topics from the start of this run with a fresh recommender");
    let group = GroupId::new(format!("{DEFAULT_GROUP}-replay-{run}"))?;
    let replay_sub = service::subscription(group).from(StartPosition::Timestamp(run_started));
    bus.stop().await?;
    drop(bus);
    let bus = crate::open_bus(&config, crate::Outbox::Required).await?;
    let (handler, mut inbox) = inbox::inbox();
    bus.subscribe(replay_sub.with_retry(config.retry()), handler).await?;
    let mut replay = Recorder::new(None);
    replay.publish = false;
    let total = 2 * (events + WHILE_DOWN);
    replay.consume(bus.as_ref(), &mut inbox, total, None).await?;
    inbox.close(bus.as_ref()).await?;
    let same = replay.issued == resumed.issued;
    println!(
        "   {} events re-read, {} recommendations recomputed: {}\n",
        replay.consumed,
        replay.issued.len(),
        if same { "identical to the live run" } else { "DIFFERENT from the live run" }
    );

    // Summary.
    let status = bus.status().await?;
    println!("Summary ({:.1} s)", started.elapsed().as_secs_f64());
    let capera = [Topic::BankTransactions, Topic::MarketPriceUpdates, Topic::CaperaRecommendations];
    for topic in capera.map(Topic::name) {
        let count = status.events_by_topic.get(&topic).copied().unwrap_or(0);
        println!("   {topic:28} {count:>8} events");
    }
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for line in &resumed.issued {
        *by_rule.entry(line.split_whitespace().nth(1).unwrap_or("?").to_owned()).or_default() += 1;
    }
    for (rule, count) in by_rule {
        println!("   rule {rule:23} {count:>8} recommendations");
    }
    let flags = match config.bus {
        BackendKind::Kafka => format!("--bus kafka --brokers {}", config.kafka.brokers),
        _ => format!("--data-dir {}", config.data_dir.display()),
    };
    println!("\nTry: eventbus {flags} tail capera.recommendations --from-beginning --format pretty --idle-exit 1");
    ensure!(same, "the replay did not reproduce the live recommendations");
    Ok(())
}

/// Runs the recommender over delivered events and keeps what it issued.
struct Recorder {
    worker: Worker,
    /// Each recommendation as `<id> <rule> <line>`, so runs compare as sets.
    issued: BTreeSet<String>,
    consumed: u64,
    publish: bool,
    printer: Option<MultiProgress>,
}

impl Recorder {
    fn new(printer: Option<MultiProgress>) -> Self {
        Self { worker: Worker::new(), issued: BTreeSet::new(), consumed: 0, publish: true, printer }
    }

    /// Handles deliveries until `count` were handled; fails if none comes for 10 s.
    async fn consume(
        &mut self,
        bus: &dyn EventBus,
        inbox: &mut Inbox,
        count: u64,
        bar: Option<&ProgressBar>,
    ) -> anyhow::Result<()> {
        let target = self.consumed + count;
        while self.consumed < target {
            let delivery = inbox
                .next(Some(Duration::from_secs(10)))
                .await
                .map_err(|end| anyhow::anyhow!("the recommender stopped early: {end:?}"))?;
            self.handle(bus, delivery).await;
            if let Some(bar) = bar {
                bar.inc(1);
            }
        }
        Ok(())
    }

    /// Handles whatever else arrives until the inbox is idle for half a second.
    async fn drain(&mut self, bus: &dyn EventBus, inbox: &mut Inbox) -> anyhow::Result<End> {
        loop {
            match inbox.next(Some(Duration::from_millis(500))).await {
                Ok(delivery) => self.handle(bus, delivery).await,
                Err(end) => return Ok(end),
            }
        }
    }

    async fn handle(&mut self, bus: &dyn EventBus, delivery: crate::inbox::Delivery) {
        let result = if self.publish {
            self.worker.handle(bus, &delivery.message).await
        } else {
            self.worker.recommend(&delivery.message).map_err(ServiceError::from)
        };
        match result {
            Ok(recommendations) => {
                for r in recommendations {
                    if self.publish {
                        match &self.printer {
                            Some(multi) => multi.suspend(|| println!("   {r}")),
                            None => println!("   {r}"),
                        }
                    }
                    self.issued.insert(format!("{} {} {r}", r.recommendation_id, r.rule));
                }
                self.consumed += 1;
                delivery.ack();
            }
            Err(error) => delivery.fail(error.into()),
        }
    }
}
