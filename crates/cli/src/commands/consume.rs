//! `eventbus consume recommendations`: the Capera recommender of seed 000. It reads both streams
//! in one group, publishes each recommendation to `capera.recommendations` and prints it.

use std::io::Write;

use capera::{Recommendation, Recommender};
use eventbus::{EventBus, HandlerError, Message, Topic};

use crate::cli::{Consume, Consumer};
use crate::config::Config;
use crate::inbox::{End, inbox};

/// The group the recommender commits in unless `--group` names another.
pub const DEFAULT_GROUP: &str = "capera-recommender";

/// The recommender on the bus: state per account and instrument, and where it publishes.
pub struct Worker {
    recommender: Recommender,
}

impl Worker {
    pub fn new() -> Self {
        Self { recommender: Recommender::new() }
    }

    /// Runs the rules on one event without publishing.
    pub fn recommend(&mut self, message: &Message) -> Result<Vec<Recommendation>, HandlerError> {
        Ok(self.recommender.on_event(&message.event)?)
    }

    /// Runs the rules on one event and publishes what they recommend. Recommendation ids derive
    /// from the input event, so a replay publishes the same ids and readers can drop repeats.
    pub async fn handle(&mut self, bus: &dyn EventBus, message: &Message) -> Result<Vec<Recommendation>, HandlerError> {
        let recommendations = self.recommend(message)?;
        let at = message.event.timestamp.unwrap_or(message.timestamp);
        let topic = Topic::CaperaRecommendations.name();
        for recommendation in &recommendations {
            bus.publish(&topic, recommendation.to_event(at), Some(recommendation.key())).await?;
        }
        Ok(recommendations)
    }
}

pub fn topics() -> Vec<eventbus::TopicName> {
    vec![Topic::BankTransactions.name(), Topic::MarketPriceUpdates.name()]
}

pub async fn run(config: &Config, args: Consume) -> anyhow::Result<()> {
    let Consumer::Recommendations = args.consumer;
    let mut read = args.read;
    read.group.get_or_insert_with(|| DEFAULT_GROUP.to_owned());
    let idle = super::idle(&read)?;
    let bus = crate::open_bus(config).await?;
    let (handler, mut inbox) = inbox();
    bus.subscribe(super::subscription(config, topics(), &read, DEFAULT_GROUP)?, handler).await?;
    let mut worker = Worker::new();
    let (mut consumed, mut issued) = (0u64, 0u64);
    let mut out = std::io::stdout().lock();
    let end = loop {
        if read.max.is_some_and(|max| consumed >= max) {
            break End::Max;
        }
        let delivery = match inbox.next(idle).await {
            Ok(delivery) => delivery,
            Err(end) => break end,
        };
        match worker.handle(bus.as_ref(), &delivery.message).await {
            Ok(recommendations) => {
                for recommendation in &recommendations {
                    // A closed stdout does not stop the recommender: the recommendation is published.
                    let _ = writeln!(out, "{recommendation}");
                }
                issued += recommendations.len() as u64;
                consumed += 1;
                delivery.ack();
            }
            Err(error) => delivery.fail(error),
        }
    };
    drop(out);
    inbox.close(bus.as_ref()).await?;
    eprintln!("Consumed {consumed} event(s), issued {issued} recommendation(s) ({end:?})");
    Ok(())
}
