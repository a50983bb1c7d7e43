//! `eventbus produce bank-transactions|market-prices`: the Capera producers of seed 000.

use std::time::{Duration, Instant};

use capera::{BankTransactionSimulator, MarketPriceSimulator};
use chrono::Utc;
use eventbus::{EventBus, EventSchema, Topic, TopicName};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{Produce, Producer};
use crate::config::Config;
use crate::inbox::shutdown_signal;

/// Simulated bank accounts.
pub const ACCOUNTS: usize = 50;
/// Simulated instruments.
pub const INSTRUMENTS: usize = 6;
/// The most events published in one write.
const MAX_BATCH: u64 = 1000;

/// A simulator behind one interface: the topic it feeds and its next keyed event.
pub enum Simulator {
    Bank(BankTransactionSimulator),
    Market(MarketPriceSimulator),
}

impl Simulator {
    pub fn new(producer: Producer, seed: u64) -> Self {
        match producer {
            Producer::BankTransactions => Self::Bank(BankTransactionSimulator::new(seed, ACCOUNTS)),
            Producer::MarketPrices => Self::Market(MarketPriceSimulator::new(seed, INSTRUMENTS)),
        }
    }

    pub fn topic(&self) -> TopicName {
        match self {
            Self::Bank(_) => Topic::BankTransactions.name(),
            Self::Market(_) => Topic::MarketPriceUpdates.name(),
        }
    }

    pub fn next_event(&mut self) -> (String, EventSchema) {
        let now = Utc::now();
        match self {
            Self::Bank(s) => s.next_event(now),
            Self::Market(s) => s.next_event(now),
        }
    }

    /// Publishes `count` events (0: until `stop` resolves) at `rate` per second (0: no limit),
    /// batching the events that are due together. Returns how many were published.
    pub async fn publish(
        &mut self,
        bus: &dyn EventBus,
        count: u64,
        rate: f64,
        bar: &ProgressBar,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<u64> {
        let topic = self.topic();
        let started = Instant::now();
        let mut sent = 0u64;
        tokio::pin!(stop);
        loop {
            let remaining = if count == 0 { u64::MAX } else { count - sent };
            if remaining == 0 {
                return Ok(sent);
            }
            // Events due by now, the first one at once.
            let due = if rate > 0.0 { (started.elapsed().as_secs_f64() * rate) as u64 + 1 } else { u64::MAX };
            let n = due.saturating_sub(sent).min(remaining).min(MAX_BATCH);
            if n > 0 {
                let (keys, events): (Vec<String>, Vec<EventSchema>) = (0..n).map(|_| self.next_event()).unzip();
                bus.publish_batch(&topic, events, Some(keys)).await?;
                sent += n;
                bar.inc(n);
                tracing::debug!(target: "eventbus::produce", %topic, sent, "Batch acknowledged");
            }
            if rate > 0.0 {
                let next_due = Duration::from_secs_f64(sent as f64 / rate);
                let wait = next_due.saturating_sub(started.elapsed());
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut stop => return Ok(sent),
                }
            } else if futures::FutureExt::now_or_never(&mut stop).is_some() {
                return Ok(sent);
            }
        }
    }
}

pub async fn run(config: &Config, args: Produce) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64);
    let mut simulator = Simulator::new(args.producer, seed);
    let topic = simulator.topic();
    let bus = crate::open_bus(config, crate::Outbox::IfFree).await?;
    let bar = if args.count == 0 { ProgressBar::new_spinner() } else { ProgressBar::new(args.count) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} events, {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(topic.to_string());
    let sent = simulator.publish(bus.as_ref(), args.count, args.rate, &bar, shutdown_signal()).await;
    bar.finish_and_clear();
    let sent = match sent {
        Ok(sent) => sent,
        Err(error) => {
            bus.stop().await?;
            return Err(error);
        }
    };
    super::stop_and_report(bus.as_ref(), sent, &topic, &format!(" (seed {seed})")).await
}
