//! The recommender on a bus, as `eventbus consume recommendations`, `eventbus demo` and
//! `eventbus serve` run it: the [`subscription`] to both Capera streams in one consumer group
//! ([`DEFAULT_GROUP`] unless the caller names another), the [`Worker`] that evaluates each event
//! and publishes what it recommends, the [`warm_up`] that rebuilds a restarted worker's state from
//! what its group already handled, and [`start`], which runs a worker as a background consumer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use eventbus::{
    BusError, EventBus, EventId, GroupId, HandlerError, Message, Offset, Partition, RetryPolicy, StartPosition,
    Subscription, Topic, TopicName, handler_fn,
};
use tokio::time::Instant;

use crate::{Recommendation, Recommender, RecommenderError};

/// The consumer group the recommender commits in unless the caller names another.
pub const DEFAULT_GROUP: &str = "capera-recommender";

/// How long a state rebuild may take unless the caller says otherwise; a longer one fails with
/// [`ServiceError::WarmUpTimedOut`].
pub const WARM_UP_LIMIT: Duration = Duration::from_secs(600);

/// How often a state rebuild compares its progress with the offsets it must reach.
const WARM_UP_POLL: Duration = Duration::from_millis(200);

/// How long stopping the state rebuild's bus may take.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// Recommendations waiting for a retried publish, at most.
const PENDING: usize = 4096;

/// The topics the recommender reads: bank transactions and market price updates.
pub fn topics() -> Vec<TopicName> {
    vec![Topic::BankTransactions.name(), Topic::MarketPriceUpdates.name()]
}

/// The recommender's subscription: both of its [`topics`] in `group`, from the committed offsets.
pub fn subscription(group: GroupId) -> Subscription {
    Subscription::new(Topic::BankTransactions.name(), group).and_topic(Topic::MarketPriceUpdates.name())
}

/// Why the recommender could not evaluate or publish an event, rebuild its state, or start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The recommender refused the event: it is malformed (see [`RecommenderError`]). No retry
    /// fixes it: let the bus dead-letter the event, and fix the producer.
    #[error(transparent)]
    Recommender(#[from] RecommenderError),
    /// The bus refused a call: publishing, subscribing, reading offsets or stopping; the message
    /// says why. From [`Worker::handle`], let the bus retry the event; from anything else, check
    /// that the bus is running and reachable.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The state rebuild did not reach the group's committed offsets in time. The worker is left
    /// as it was: do not run it as if rebuilt, start over, with a longer limit if the group has
    /// handled a long history.
    #[error("state rebuild did not finish within {limit:?} ({replayed} events replayed)")]
    WarmUpTimedOut {
        /// The limit that passed.
        limit: Duration,
        /// The events replayed until then.
        replayed: u64,
    },
    /// The caller's shutdown future completed (ctrl-c or SIGTERM, say) before the state rebuild
    /// did. The worker is left as it was: stop.
    #[error("state rebuild interrupted after {replayed} events")]
    WarmUpInterrupted {
        /// The events replayed until then.
        replayed: u64,
    },
    /// The state rebuild's bus did not stop in time; its consumer may still be running. The
    /// worker is left as it was: stop rather than open another bus on the same store.
    #[error("the state rebuild's bus did not stop within {limit:?}")]
    StopTimedOut {
        /// The limit that passed.
        limit: Duration,
    },
}

/// The recommender on the bus: its state per account and instrument, and the recommendations
/// computed but not yet published.
///
/// The recommender takes each event once (a second delivery counts as a redelivery and issues
/// nothing), so when publishing fails the recommendations wait here, keyed by the partition
/// the event came from, and the retry of that event publishes them.
#[derive(Debug, Default)]
pub struct Worker {
    recommender: Recommender,
    /// Recommendations computed but not yet published, by the place of their event: the bus
    /// retries a record whose publish failed, and the recommender, which has taken the event in,
    /// would ignore it as a redelivery. At most [`PENDING`] entries; the oldest go first (their
    /// events were dead-lettered).
    pending: BTreeMap<(TopicName, Partition, Offset), (EventId, Vec<Recommendation>)>,
}

impl Worker {
    /// A worker with a fresh [`Recommender`] with the default thresholds.
    pub fn new() -> Self {
        Self::default()
    }

    /// A worker with a fresh [`Recommender`] with these thresholds and bounds.
    pub fn with_config(config: crate::RecommenderConfig) -> Result<Self, RecommenderError> {
        Ok(Self { recommender: Recommender::with_config(config)?, pending: BTreeMap::new() })
    }

    /// The recommender and the state it holds.
    pub fn recommender(&self) -> &Recommender {
        &self.recommender
    }

    /// Runs the rules on one event without publishing.
    pub fn recommend(&mut self, message: &Message) -> Result<Vec<Recommendation>, RecommenderError> {
        self.recommender.on_event(&message.event)
    }

    /// Runs the rules on one event and publishes what they recommend to
    /// [`Recommendation::TOPIC`], keyed by subject. Recommendation ids derive from the input
    /// event, so a replay publishes the same ids and readers can drop repeats.
    pub async fn handle(&mut self, bus: &dyn EventBus, message: &Message) -> Result<Vec<Recommendation>, ServiceError> {
        let place = (message.topic.clone(), message.partition, message.offset);
        let id = message.event.event_id.clone();
        let recommendations = match self.pending.remove(&place) {
            Some((pending, recommendations)) if Some(&pending) == id.as_ref() => recommendations,
            _ => self.recommend(message)?,
        };
        let at = message.event.timestamp.unwrap_or(message.timestamp);
        let events = recommendations.iter().map(|r| r.to_event(at)).collect();
        let keys = recommendations.iter().map(|r| r.key().to_owned()).collect();
        if let Err(error) = bus.publish_batch(&Recommendation::TOPIC.name(), events, Some(keys)).await {
            if let Some(id) = id {
                self.pending.insert(place, (id, recommendations));
                while self.pending.len() > PENDING {
                    self.pending.pop_first();
                }
            }
            return Err(error.into());
        }
        Ok(recommendations)
    }
}

/// Rebuilds `worker`'s state from the events `group` has already handled (everything before its
/// committed offsets), without publishing, so that a restarted consumer recommends exactly what
/// an uninterrupted one would. Returns how many events it replayed.
///
/// `bus` must be started and must be a bus of its own over the same topics as the consumer's
/// (the same store, the same brokers): the rebuild reads them from the earliest offset in the
/// throwaway group `<group>.state`, and stops `bus` when it is done, since a bus cannot
/// unsubscribe. It gives up after `limit`, or when `shutdown` completes. Unless it returns `Ok`
/// (or if the future is dropped), the worker is left as it was.
pub async fn warm_up(
    bus: Arc<dyn EventBus>,
    worker: &mut Worker,
    group: &GroupId,
    limit: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, ServiceError> {
    let deadline = Instant::now() + limit;
    let rebuild =
        Arc::new(Mutex::new(Rebuild { recommender: worker.recommender.clone(), targets: HashMap::new(), replayed: 0 }));
    let waited = tokio::select! {
        waited = tokio::time::timeout_at(deadline, replay(bus.as_ref(), group, &rebuild)) => Some(waited),
        () = shutdown => None,
    };
    let stopped = tokio::time::timeout(STOP_LIMIT, bus.stop()).await;
    let Rebuild { recommender, replayed, .. } = std::mem::take(&mut *lock(&rebuild));
    match waited {
        None => return Err(ServiceError::WarmUpInterrupted { replayed }),
        Some(Err(_elapsed)) => return Err(ServiceError::WarmUpTimedOut { limit, replayed }),
        Some(Ok(result)) => result?,
    }
    match stopped {
        Err(_elapsed) => return Err(ServiceError::StopTimedOut { limit: STOP_LIMIT }),
        Ok(result) => result?,
    }
    worker.recommender = recommender;
    Ok(replayed)
}

/// A state rebuild in progress, shared with the handler of the `<group>.state` subscription.
#[derive(Default)]
struct Rebuild {
    recommender: Recommender,
    /// What the consumer group handled in each partition: the rebuild applies those events.
    targets: HashMap<(TopicName, Partition), Handled>,
    replayed: u64,
}

/// What a group handled in one partition, as it committed it: everything before its offset, and
/// the offsets above it that it finished ahead (records of other keys).
#[derive(Clone, Debug, Default)]
struct Handled {
    next: Offset,
    finished: HashSet<Offset>,
}

impl Handled {
    fn contains(&self, offset: Offset) -> bool {
        offset < self.next || self.finished.contains(&offset)
    }

    /// The offset after the last one handled.
    fn end(&self) -> Offset {
        self.finished.iter().map(|o| Offset(o.0 + 1)).max().map_or(self.next, |end| end.max(self.next))
    }
}

impl Rebuild {
    fn apply(&mut self, message: &Message) {
        let handled = self.targets.get(&(message.topic.clone(), message.partition));
        if handled.is_some_and(|handled| handled.contains(message.offset)) {
            // An event the rules refused was dead-lettered the first time; it changes no state.
            let _ = self.recommender.on_event(&message.event);
            self.replayed += 1;
        }
    }
}

fn lock(rebuild: &Mutex<Rebuild>) -> std::sync::MutexGuard<'_, Rebuild> {
    rebuild.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Replays the events `group` handled into `rebuild` (those before its committed offsets, and
/// those it committed as finished above them), through the group `<group>.state`, until that
/// group has passed every one of them. Duplicates, dead letters and expired records never reach
/// the handler but still move the offsets.
async fn replay(bus: &dyn EventBus, group: &GroupId, rebuild: &Arc<Mutex<Rebuild>>) -> Result<(), ServiceError> {
    let targets = committed(bus, group).await?;
    if targets.is_empty() {
        return Ok(());
    }
    lock(rebuild).targets = targets.clone();
    let state_group = GroupId::new(format!("{group}.state"))?;
    let handler = {
        let rebuild = Arc::clone(rebuild);
        handler_fn(move |message: Message| {
            lock(&rebuild).apply(&message);
            std::future::ready(Ok::<(), HandlerError>(()))
        })
    };
    bus.subscribe(subscription(state_group.clone()).from(StartPosition::Earliest).watch_only(), handler).await?;
    loop {
        let reached = committed(bus, &state_group).await?;
        if targets.iter().all(|(place, target)| reached.get(place).is_some_and(|state| state.next >= target.end())) {
            return Ok(());
        }
        tokio::time::sleep(WARM_UP_POLL).await;
    }
}

/// What `group` handled in each partition of the recommender's [`topics`], as it committed it.
async fn committed(bus: &dyn EventBus, group: &GroupId) -> Result<HashMap<(TopicName, Partition), Handled>, BusError> {
    let mut handled = HashMap::new();
    for topic in topics() {
        for committed in bus.group_offsets(group, &topic).await? {
            let finished = committed.finished.into_iter().collect();
            handled.insert((topic.clone(), committed.partition), Handled { next: committed.offset, finished });
        }
    }
    Ok(handled)
}

/// Runs `worker` on `bus` as a background consumer of [`subscription`]`(group)` until the bus
/// stops: each event is evaluated, its recommendations published, then its offset committed. A
/// failure is retried by `retry`, then the event is dead-lettered with the error as the reason.
pub async fn start(
    bus: &Arc<dyn EventBus>,
    worker: Worker,
    group: GroupId,
    retry: RetryPolicy,
) -> Result<(), ServiceError> {
    let worker = Arc::new(tokio::sync::Mutex::new(worker));
    // Weak: the bus holds the handler, which must not keep the bus alive in turn.
    let publisher = Arc::downgrade(bus);
    let handler = handler_fn(move |message: Message| {
        let (worker, publisher) = (Arc::clone(&worker), publisher.clone());
        async move {
            let bus = publisher.upgrade().ok_or_else(|| HandlerError::msg("the bus was dropped"))?;
            worker.lock().await.handle(bus.as_ref(), &message).await?;
            Ok(())
        }
    });
    bus.subscribe(subscription(group).with_retry(retry), handler).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use eventbus::{BusConfig, EventSchema, MemoryBus};

    use super::*;
    use crate::{BankTransactionSimulator, MarketPriceSimulator};

    fn start_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 4, 7, 9, 0, 0).unwrap()
    }

    /// A started in-memory bus with the catalog topics.
    async fn bus() -> (MemoryBus, Arc<dyn EventBus>) {
        let bus = MemoryBus::memory(BusConfig { auto_create_topics: true, ..Default::default() }).await.unwrap();
        bus.start().await.unwrap();
        let shared: Arc<dyn EventBus> = Arc::new(bus.clone());
        (bus, shared)
    }

    /// Publishes `minutes` minutes of both simulated feeds, one event of each per minute, from
    /// minute `from`; returns them in the order published.
    async fn publish(
        bus: &dyn EventBus,
        feeds: &mut (BankTransactionSimulator, MarketPriceSimulator),
        from: i64,
        minutes: i64,
    ) -> Vec<EventSchema> {
        let mut published = Vec::new();
        for minute in from..from + minutes {
            let at = start_time() + chrono::Duration::minutes(minute);
            for (topic, (key, event)) in [
                (BankTransactionSimulator::TOPIC, feeds.0.next_event(at)),
                (MarketPriceSimulator::TOPIC, feeds.1.next_event(at)),
            ] {
                bus.publish(&topic.name(), event.clone(), Some(&key)).await.unwrap();
                published.push(event);
            }
        }
        published
    }

    fn message(event: EventSchema) -> Message {
        Message {
            topic: Topic::BankTransactions.name(),
            partition: Partition(0),
            offset: Offset(0),
            timestamp: event.timestamp.unwrap_or_else(start_time),
            key: None,
            event: Arc::new(event),
        }
    }

    #[tokio::test]
    async fn warm_up_replays_exactly_what_the_group_committed() {
        // Given 400 events the group has handled (its offsets are at the end of both topics) and
        // 400 more it has not
        let (memory, bus) = bus().await;
        let mut feeds = (BankTransactionSimulator::new(5, 8), MarketPriceSimulator::new(5, 4));
        let handled = publish(bus.as_ref(), &mut feeds, 0, 200).await;
        let group = GroupId::new("restarted").unwrap();
        for topic in topics() {
            bus.reset_offsets(&group, &topic, StartPosition::Latest).await.unwrap();
        }
        let unhandled = publish(bus.as_ref(), &mut feeds, 200, 200).await;

        // When a new worker warms up on the bus
        let mut worker = Worker::new();
        let replayed =
            warm_up(Arc::clone(&bus), &mut worker, &group, WARM_UP_LIMIT, std::future::pending()).await.unwrap();

        // Then it replayed the 400 handled events, and stopped the bus
        assert_eq!(replayed, 400);
        assert!(!memory.is_running());
        // And it recommends on the rest exactly what a worker that saw everything in order does
        let mut uninterrupted = Recommender::new();
        for event in &handled {
            uninterrupted.on_event(event).unwrap();
        }
        let mut issued = 0;
        for event in unhandled {
            let expected = uninterrupted.on_event(&event).unwrap();
            issued += expected.len();
            assert_eq!(worker.recommend(&message(event)).unwrap(), expected);
        }
        assert!(issued > 0, "the comparison saw no recommendation");
    }

    #[tokio::test]
    async fn warm_up_of_a_group_that_never_committed_replays_nothing_and_stops_the_bus() {
        // Given events that no group has handled
        let (memory, bus) = bus().await;
        let mut feeds = (BankTransactionSimulator::new(6, 4), MarketPriceSimulator::new(6, 2));
        publish(bus.as_ref(), &mut feeds, 0, 20).await;
        // When a worker warms up for a new group, then nothing is replayed and the bus is stopped
        let mut worker = Worker::new();
        let group = GroupId::new("new").unwrap();
        let replayed = warm_up(bus, &mut worker, &group, WARM_UP_LIMIT, std::future::pending()).await.unwrap();
        assert_eq!(replayed, 0);
        assert_eq!(worker.recommender().accounts_tracked(), 0);
        assert!(!memory.is_running());
    }

    #[tokio::test]
    async fn an_interrupted_warm_up_leaves_the_worker_as_it_was() {
        // Given a group that has handled some events
        let (memory, bus) = bus().await;
        let mut feeds = (BankTransactionSimulator::new(7, 4), MarketPriceSimulator::new(7, 2));
        publish(bus.as_ref(), &mut feeds, 0, 20).await;
        let group = GroupId::new("interrupted").unwrap();
        for topic in topics() {
            bus.reset_offsets(&group, &topic, StartPosition::Latest).await.unwrap();
        }
        // When the shutdown future is ready before the rebuild is done
        let mut worker = Worker::new();
        let result = warm_up(bus, &mut worker, &group, WARM_UP_LIMIT, std::future::ready(())).await;
        // Then the rebuild fails, the worker has no state and the bus is stopped
        assert!(matches!(result, Err(ServiceError::WarmUpInterrupted { .. })), "{result:?}");
        assert_eq!(worker.recommender().accounts_tracked(), 0);
        assert!(!memory.is_running());
    }

    #[tokio::test]
    async fn a_failed_publish_is_retried_with_the_recommendations_computed_the_first_time() {
        // Given a worker that has seen 20 prices of 100.00 for AAPL
        let (memory, bus) = bus().await;
        let mut worker = Worker::new();
        let price = |n: u32, price: &str| {
            let mut market = MarketPriceSimulator::new(1, 1);
            let (_, mut event) = market.next_event(start_time());
            event.event_id = Some(format!("AAPL-{n}").parse().unwrap());
            event.data.insert("symbol".into(), "AAPL".into());
            event.data.insert("currency".into(), "USD".into());
            event.data.insert("price".into(), price.into());
            message(event)
        };
        for n in 1..=20 {
            assert!(worker.handle(bus.as_ref(), &price(n, "100.00")).await.unwrap().is_empty());
        }
        // When a dip arrives while the bus cannot publish
        memory.stop().await.unwrap();
        let dip = price(21, "90.00");
        let failed = worker.handle(bus.as_ref(), &dip).await;
        assert!(matches!(failed, Err(ServiceError::Bus(BusError::NotRunning))), "{failed:?}");
        // Then its retry publishes the recommendation, although the recommender has taken the event
        memory.start().await.unwrap();
        let retried = worker.handle(bus.as_ref(), &dip).await.unwrap();
        assert_eq!(retried.iter().map(|r| r.rule).collect::<Vec<_>>(), [crate::Rule::PriceDip]);
        let published = memory.get_events(Some(&Recommendation::TOPIC.name()));
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].1.event_id.as_ref(), Some(&retried[0].recommendation_id));
        // And a redelivery after that publishes nothing more
        assert!(worker.handle(bus.as_ref(), &dip).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_started_worker_publishes_what_the_recommender_issues_and_commits() {
        // Given a worker started as a background consumer
        let (memory, bus) = bus().await;
        let group = GroupId::new("background").unwrap();
        start(&bus, Worker::new(), group.clone(), RetryPolicy::default()).await.unwrap();
        // When both feeds publish 300 events each
        let mut feeds = (BankTransactionSimulator::new(8, 6), MarketPriceSimulator::new(8, 3));
        let events = publish(bus.as_ref(), &mut feeds, 0, 300).await;
        // Then the recommendations a sequential run issues are published, each once
        let mut sequential = Recommender::new();
        let mut expected: Vec<EventId> =
            events.iter().flat_map(|e| sequential.on_event(e).unwrap()).map(|r| r.recommendation_id).collect();
        expected.sort();
        assert!(!expected.is_empty());
        let published = || {
            let mut ids: Vec<EventId> = memory
                .get_events(Some(&Recommendation::TOPIC.name()))
                .into_iter()
                .filter_map(|(_, e)| e.event_id.clone())
                .collect();
            ids.sort();
            ids
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while published().len() < expected.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(published(), expected);
        // And the group's offsets reach the end of both topics
        while committed(bus.as_ref(), &group).await.unwrap().values().map(|h| h.next.0).sum::<u64>() < 600
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(committed(bus.as_ref(), &group).await.unwrap().values().map(|h| h.next.0).sum::<u64>(), 600);
        memory.stop().await.unwrap();
    }
}
