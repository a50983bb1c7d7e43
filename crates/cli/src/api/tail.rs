//! Recent events of every topic, on every backend: `GET /kafka/events` and the live tail
//! `GET /events/stream` (Server-Sent Events).
//!
//! The API follows every topic that exists at start, from an hour back, in its own group, like
//! Kafka UI's live mode. It keeps the last few hundred ([`ApiConfig::tail_per_topic`](super::ApiConfig)) events of each topic in memory
//! and hands each new one to the live streams.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::Utc;
use eventbus::{EventBus, GroupId, Message, StartPosition, Subscription, TopicName};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::masking::for_caller;
use super::{ApiError, ApiState, Caller};

/// The most events kept per topic, and the most `GET /kafka/events` shows.
pub const MAX_PER_TOPIC: usize = 500;
/// The group the API follows the topics in, followed by the instance's name: each instance
/// follows every partition.
pub const GROUP: &str = "eventbus-api-tail";
/// How often the API looks for topics created since it started.
const NEW_TOPICS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How far back the API starts reading when it starts.
const LOOK_BACK: chrono::Duration = chrono::Duration::hours(1);

pub struct Tail {
    metrics: Arc<super::metrics::Metrics>,
    /// The group of the topics followed from the start; each batch of topics found later gets
    /// a group of its own (this one with `.1`, `.2`, ...): joining this group would make its
    /// running members rebalance.
    group: GroupId,
    /// Batches of topics followed since the start.
    batches: std::sync::atomic::AtomicU32,
    recent: Mutex<HashMap<TopicName, VecDeque<Arc<Message>>>>,
    /// Events kept per topic.
    keep: usize,
    live: broadcast::Sender<Arc<Message>>,
    closed: watch::Sender<bool>,
}

impl Tail {
    /// Follows every topic of `bus`, and each topic created later (looked for every few
    /// seconds until [`close`](Self::close)).
    pub async fn start(
        bus: Arc<dyn EventBus>,
        metrics: Arc<super::metrics::Metrics>,
        instance: &str,
        keep: usize,
    ) -> Result<Arc<Self>, eventbus::BusError> {
        let (live, _) = broadcast::channel(4096);
        let group = GroupId::new(format!("{GROUP}.{instance}"))?;
        let tail = Arc::new(Self {
            metrics,
            group,
            batches: std::sync::atomic::AtomicU32::new(0),
            recent: Mutex::default(),
            keep: keep.clamp(1, MAX_PER_TOPIC),
            live,
            closed: watch::channel(false).0,
        });
        let mut followed = HashSet::new();
        tail.follow_new(&*bus, &mut followed, StartPosition::Timestamp(Utc::now() - LOOK_BACK)).await?;
        let (watcher, mut closed) = (Arc::clone(&tail), tail.closed.subscribe());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(NEW_TOPICS_EVERY) => {}
                    _ = closed.wait_for(|closed| *closed) => return,
                }
                if let Err(error) = watcher.follow_new(&*bus, &mut followed, StartPosition::Earliest).await {
                    tracing::debug!(%error, "Cannot look for new topics; trying again");
                }
            }
        });
        Ok(tail)
    }

    /// Subscribes to the topics of `bus` not in `followed` yet, from `start`.
    async fn follow_new(
        self: &Arc<Self>,
        bus: &dyn EventBus,
        followed: &mut HashSet<TopicName>,
        start: StartPosition,
    ) -> Result<(), eventbus::BusError> {
        let new: Vec<TopicName> =
            bus.list_topics().await?.into_iter().map(|t| t.name).filter(|name| !followed.contains(name)).collect();
        let mut topics = new.iter().cloned();
        let Some(first) = topics.next() else { return Ok(()) };
        let group = match self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
            0 => self.group.clone(),
            batch => GroupId::new(format!("{}.{batch}", self.group))?,
        };
        let subscription =
            topics.fold(Subscription::new(first, group), Subscription::and_topic).from(start).watch_only();
        let keeper = Arc::clone(self);
        bus.subscribe(
            subscription,
            eventbus::handler_fn(move |message: Message| {
                let keeper = Arc::clone(&keeper);
                async move {
                    keeper.keep(message);
                    Ok(())
                }
            }),
        )
        .await?;
        followed.extend(new);
        Ok(())
    }

    fn keep(&self, message: Message) {
        if let Some(at) = message.event.timestamp
            && let Ok(age) = (Utc::now() - at).to_std()
        {
            self.metrics.delivery.observe(age);
        }
        let delivered = Arc::new(message);
        {
            let mut recent = self.lock();
            let kept = recent.entry(delivered.topic.clone()).or_default();
            if kept.len() >= self.keep {
                kept.pop_front();
            }
            kept.push_back(Arc::clone(&delivered));
        }
        // No live stream listening is fine.
        let _ = self.live.send(delivered);
    }

    /// Ends every live stream, so that the server can stop.
    pub fn close(&self) {
        let _ = self.closed.send(true);
    }

    /// The newest `limit` events of `topic`, or of all topics, newest first; and how many are
    /// kept in all.
    fn recent(&self, topic: Option<&TopicName>, limit: usize) -> (Vec<Arc<Message>>, usize) {
        let recent = self.lock();
        let mut events: Vec<Arc<Message>> = match topic {
            Some(topic) => recent.get(topic).map(|kept| kept.iter().cloned().collect()).unwrap_or_default(),
            None => recent.values().flatten().cloned().collect(),
        };
        events.sort_by(|a, b| (b.timestamp, &b.topic, b.offset).cmp(&(a.timestamp, &a.topic, a.offset)));
        let total = events.len();
        events.truncate(limit);
        (events, total)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicName, VecDeque<Arc<Message>>>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recent {
    topic: Option<String>,
    limit: Option<usize>,
}

fn topic_filter(topic: Option<&str>) -> Result<Vec<TopicName>, ApiError> {
    topic
        .into_iter()
        .flat_map(|list| list.split(','))
        .filter(|name| !name.is_empty())
        .map(|name| TopicName::new(name).map_err(|e| ApiError::bad_request("invalid_topic", e.to_string())))
        .collect()
}

/// 404 for a topic the bus does not have: a stream of it would stay empty for good.
async fn check_known(state: &ApiState, topics: &[TopicName]) -> Result<(), ApiError> {
    let bus = Arc::clone(&state.backend().bus);
    for topic in topics {
        bus.describe_topic(topic).await?;
    }
    Ok(())
}

/// `GET /kafka/events?topic=&limit=`: the seed's shape, `{"events": [...], "total", "showing"}`.
pub async fn events(State(state): State<ApiState>, Query(query): Query<Recent>) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PER_TOPIC).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", format!("limit must be 1 to {MAX_PER_TOPIC}")));
    }
    let topics = topic_filter(query.topic.as_deref())?;
    if topics.len() > 1 {
        return Err(ApiError::bad_request("invalid_topic", "name one topic, or none for all"));
    }
    check_known(&state, &topics).await?;
    let (events, total) = state.backend().tail.recent(topics.first(), limit);
    Ok(Json(json!({"events": events, "total": total, "showing": events.len()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Live {
    /// Topics to follow, comma-separated; all if absent.
    topic: Option<String>,
}

/// `GET /events/stream?topic=a,b`: every new event as an SSE `event` message whose data is the
/// JSON of [`Message`]. A client too slow to keep up gets a `lagged` message saying how many
/// events it missed.
pub async fn stream(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<Live>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let topics = topic_filter(query.topic.as_deref())?;
    check_known(&state, &topics).await?;
    let tail = Arc::clone(&state.backend().tail);
    let start = (tail.live.subscribe(), tail.closed.subscribe(), topics, caller);
    let stream = futures::stream::unfold(start, |(mut live, mut closed, topics, caller)| async move {
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                _ = closed.wait_for(|closed| *closed) => return None,
            };
            let event = match received {
                Ok(delivered) if topics.is_empty() || topics.contains(&delivered.topic) => {
                    // Masked for a viewer, as the JSON answers are (`masking::mask_json`).
                    match serde_json::to_value(&*delivered) {
                        Ok(value) => Event::default().event("event").json_data(for_caller(&caller, value)),
                        Err(error) => Err(axum::Error::new(error)),
                    }
                    .unwrap_or_else(|_| Event::default())
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Event::default().event("lagged").data(missed.to_string())
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok(event), (live, closed, topics, caller)));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
