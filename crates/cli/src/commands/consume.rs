//! `eventbus consume recommendations`: the Capera recommender of seed 000. It reads both streams
//! in one group, publishes each recommendation to `capera.recommendations` and prints it.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use capera::{Recommendation, Recommender};
use eventbus::{
    EventBus, EventId, GroupId, HandlerError, Message, Offset, Partition, StartPosition, Subscription, Topic, TopicName,
};

use crate::cli::{Consume, Consumer};
use crate::config::Config;
use crate::inbox::{End, inbox};

/// The group the recommender commits in unless `--group` names another.
pub const DEFAULT_GROUP: &str = "capera-recommender";

/// The recommender on the bus: state per account and instrument, and where it publishes.
pub struct Worker {
    recommender: Recommender,
    /// Recommendations computed but not yet all published, by input event id. The recommender
    /// takes each event once; if a publish fails, the retry publishes these instead.
    pending: HashMap<EventId, Vec<Recommendation>>,
}

impl Worker {
    pub fn new() -> Self {
        Self { recommender: Recommender::new(), pending: HashMap::new() }
    }

    /// Runs the rules on one event without publishing.
    pub fn recommend(&mut self, message: &Message) -> Result<Vec<Recommendation>, HandlerError> {
        Ok(self.recommender.on_event(&message.event)?)
    }

    /// Runs the rules on one event and publishes what they recommend. Recommendation ids derive
    /// from the input event, so a replay publishes the same ids and readers can drop repeats.
    pub async fn handle(&mut self, bus: &dyn EventBus, message: &Message) -> Result<Vec<Recommendation>, HandlerError> {
        let id = message.event.event_id.clone();
        let recommendations = match id.as_ref().and_then(|id| self.pending.remove(id)) {
            Some(pending) => pending,
            None => self.recommend(message)?,
        };
        let at = message.event.timestamp.unwrap_or(message.timestamp);
        let topic = Topic::CaperaRecommendations.name();
        let events = recommendations.iter().map(|r| r.to_event(at)).collect();
        let keys = recommendations.iter().map(|r| r.key().to_owned()).collect();
        if let Err(error) = bus.publish_batch(&topic, events, Some(keys)).await {
            if let Some(id) = id {
                self.pending.insert(id, recommendations);
            }
            return Err(error.into());
        }
        Ok(recommendations)
    }
}

/// Rebuilds the recommender's state from the events `group` has already handled (everything
/// before its committed offsets), without publishing, so that a restarted consumer recommends
/// exactly what an uninterrupted one would. Returns how many events it replayed.
pub async fn warm_up(config: &Config, worker: &mut Worker, group: &GroupId) -> anyhow::Result<u64> {
    let bus = crate::open_bus(config).await?;
    let mut targets = HashMap::new();
    for topic in topics() {
        for committed in bus.group_offsets(group, &topic).await? {
            targets.insert((topic.clone(), committed.partition), committed.offset);
        }
    }
    if targets.is_empty() {
        bus.stop().await?;
        return Ok(0);
    }
    let state_group = GroupId::new(format!("{group}.state"))?;
    let (handler, mut inbox) = inbox();
    bus.subscribe(subscription(state_group.clone()).from(StartPosition::Earliest), handler).await?;
    let started = std::time::Instant::now();
    let mut replayed = 0;
    // Done when the rebuild group has passed every target; duplicates, dead letters and expired
    // records never reach the handler but still move its offsets.
    while !reached(bus.as_ref(), &state_group, &targets).await? {
        anyhow::ensure!(started.elapsed() < WARM_UP_LIMIT, "state rebuild did not finish within {WARM_UP_LIMIT:?}");
        match inbox.next(Some(Duration::from_millis(200))).await {
            Ok(delivery) => {
                let message = &delivery.message;
                let target = targets.get(&(message.topic.clone(), message.partition)).copied().unwrap_or(Offset(0));
                if message.offset < target {
                    // An event the rules refused was dead-lettered the first time; it changes no state.
                    let _ = worker.recommend(message);
                    replayed += 1;
                }
                delivery.ack();
            }
            Err(End::Idle) => {}
            Err(end) => anyhow::bail!("state rebuild interrupted after {replayed} events ({end:?})"),
        }
    }
    inbox.close(bus.as_ref()).await?;
    Ok(replayed)
}

/// How long a state rebuild may take.
const WARM_UP_LIMIT: Duration = Duration::from_secs(600);

async fn reached(
    bus: &dyn EventBus,
    group: &GroupId,
    targets: &HashMap<(TopicName, Partition), Offset>,
) -> anyhow::Result<bool> {
    let mut committed = HashMap::new();
    for topic in topics() {
        for o in bus.group_offsets(group, &topic).await? {
            committed.insert((topic.clone(), o.partition), o.offset);
        }
    }
    Ok(targets.iter().all(|(place, target)| committed.get(place).is_some_and(|offset| offset >= target)))
}

pub fn topics() -> Vec<eventbus::TopicName> {
    vec![Topic::BankTransactions.name(), Topic::MarketPriceUpdates.name()]
}

/// The recommender's subscription: both Capera streams in one group.
pub fn subscription(group: GroupId) -> Subscription {
    Subscription::new(Topic::BankTransactions.name(), group).and_topic(Topic::MarketPriceUpdates.name())
}

pub async fn run(config: &Config, args: Consume) -> anyhow::Result<()> {
    let Consumer::Recommendations = args.consumer;
    let mut read = args.read;
    read.group.get_or_insert_with(|| DEFAULT_GROUP.to_owned());
    let idle = super::idle(&read)?;
    let subscription = super::subscription(config, topics(), &read, DEFAULT_GROUP)?;
    let mut worker = Worker::new();
    if !read.from_beginning {
        let rebuilt = warm_up(config, &mut worker, &subscription.group).await?;
        tracing::info!(rebuilt, "Recommender state rebuilt from the events the group already handled");
    }
    let bus = crate::open_bus(config).await?;
    let (handler, mut inbox) = inbox();
    bus.subscribe(subscription, handler).await?;
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
