//! The `EventBus` trait and the types it speaks: partitions, offsets, groups, subscriptions,
//! messages, handlers and status.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::envelope::{EnvelopeError, EventSchema};
use crate::topics::{TopicError, TopicName};

/// A partition of a topic, numbered from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Partition(pub u32);

/// The position of a message in its partition, numbered from 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Offset(pub u64);

/// The most groups [`EventBus::list_groups`] describes.
pub const MAX_GROUPS: usize = 1000;

/// A consumer group: consumers in one group share committed offsets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GroupId(String);

macro_rules! number_newtype {
    ($($ty:ident($inner:ty)),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl FromStr for $ty {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse::<$inner>().map(Self)
            }
        }
    )*};
}
number_newtype!(Partition(u32), Offset(u64));

impl GroupId {
    /// A group id of 1 to 255 bytes without control characters; anything else is
    /// [`BusError::InvalidGroup`].
    pub fn new(group: impl Into<String>) -> Result<Self, BusError> {
        let group = group.into();
        if group.is_empty() || group.len() > 255 || group.chars().any(char::is_control) {
            return Err(BusError::InvalidGroup(group));
        }
        Ok(Self(group))
    }

    /// The id as it was given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for GroupId {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Where a subscription starts reading each partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The group's committed offset; the earliest offset when the group has none.
    #[default]
    Committed,
    /// The first retained message, whatever was committed.
    Earliest,
    /// Only messages published after the subscription starts.
    Latest,
    /// This offset in every partition (clamped to what is retained).
    Offset(Offset),
    /// The first message appended at or after this time in each partition.
    Timestamp(DateTime<Utc>),
}

impl FromStr for StartPosition {
    type Err = BusError;
    /// `committed`, `earliest`, `latest`, `offset:N` or `time:RFC3339`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BusError::InvalidPosition(s.to_owned());
        match s {
            "committed" => Ok(Self::Committed),
            "earliest" | "beginning" => Ok(Self::Earliest),
            "latest" | "end" => Ok(Self::Latest),
            _ => match s.split_once(':') {
                Some(("offset", n)) => n.parse().map(|n| Self::Offset(Offset(n))).map_err(|_| bad()),
                Some(("time", t)) => {
                    DateTime::parse_from_rfc3339(t).map(|t| Self::Timestamp(t.with_timezone(&Utc))).map_err(|_| bad())
                }
                _ => Err(bad()),
            },
        }
    }
}

/// How a failing handler is retried before its message goes to the dead-letter topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls of the handler in all, the first included. At least 1.
    pub max_attempts: u32,
    /// The wait before the second call; it doubles for each call after that.
    pub initial_backoff: Duration,
    /// The longest wait between two calls.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The wait after failed call number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// What a consumer reads: one or more topics, in a group, from a start position.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// The topics to consume, at least one; each must exist when subscribing, unless auto-create
    /// is on.
    pub topics: Vec<TopicName>,
    /// The group whose committed offsets this subscription resumes from and advances.
    pub group: GroupId,
    /// Where to start. Anything but [`StartPosition::Committed`] resets the group's offsets once,
    /// when subscribing; after that the group resumes from what it committed.
    pub start: StartPosition,
    /// How a failing handler is retried before its message is dead-lettered.
    pub retry: RetryPolicy,
    /// Records handled at once across the subscription's partitions; `None` takes the bus's
    /// `max_in_flight`. Records of one key are handled one at a time whatever this is.
    pub max_in_flight: Option<usize>,
    /// What happens after a record fails its attempts in place: parking, retry stages, redrive.
    pub dead_letters: DeadLetterPolicy,
}

/// What a subscription does with records its handler fails on, after the attempts in place of
/// its [`RetryPolicy`].
///
/// - **Redrive** (on by default): the subscription follows its topics' dead-letter topics and
///   carries out the redrives operators ask for (`eventbus dlq redrive`), in its own group.
///   Subscriptions that only watch (a tail, a live stream) turn it off.
/// - **Sequenced**: when a record of key K fails, the later records of K in this subscription
///   are parked behind it, durably, in the dead-letter topic, and other keys go on. When the
///   failed record is redriven and handled, or discarded, K's parked records are handled in
///   order, and K is free again once none is left.
/// - **Retry stages**: a record that failed its attempts in place waits, durably, for each stage
///   in turn (say 5 s, then 1 min, then 10 min) and is tried again; only after the last stage is
///   it dead-lettered. In a sequenced subscription its key stays parked meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    /// Whether redrives of this group's dead letters are carried out by this subscription.
    pub redrive: bool,
    /// Whether a failed record parks the later records of its key.
    pub sequenced: bool,
    /// The waits before each retry after the attempts in place, in order.
    pub retry_stages: Vec<Duration>,
}

impl Default for DeadLetterPolicy {
    fn default() -> Self {
        Self { redrive: true, sequenced: false, retry_stages: Vec::new() }
    }
}

impl DeadLetterPolicy {
    /// No dead-letter follower at all: letters are written, and nothing redrives them here.
    pub fn watch_only() -> Self {
        Self { redrive: false, sequenced: false, retry_stages: Vec::new() }
    }

    /// Whether the subscription follows its dead-letter topics.
    pub fn follows(&self) -> bool {
        self.redrive || self.sequenced || !self.retry_stages.is_empty()
    }
}

impl Subscription {
    /// A subscription to `topic` in `group`, from the committed offset.
    pub fn new(topic: TopicName, group: GroupId) -> Self {
        Self {
            topics: vec![topic],
            group,
            start: StartPosition::default(),
            retry: RetryPolicy::default(),
            max_in_flight: None,
            dead_letters: DeadLetterPolicy::default(),
        }
    }

    /// Parks the later records of a key behind one that failed (see [`DeadLetterPolicy`]).
    pub fn sequenced(mut self) -> Self {
        self.dead_letters.sequenced = true;
        self.dead_letters.redrive = true;
        self
    }

    /// Retries a record that failed its attempts in place after each of `stages` in turn,
    /// durably, before it is dead-lettered (see [`DeadLetterPolicy`]).
    pub fn with_retry_stages(mut self, stages: Vec<Duration>) -> Self {
        self.dead_letters.retry_stages = stages;
        self.dead_letters.redrive = true;
        self
    }

    /// For a subscription that only watches (a tail, a live stream): it does not follow its
    /// dead-letter topics, and nothing it dead-letters is redriven to it.
    pub fn watch_only(mut self) -> Self {
        self.dead_letters = DeadLetterPolicy::watch_only();
        self
    }

    /// Also consumes `topic`, in the same group.
    pub fn and_topic(mut self, topic: TopicName) -> Self {
        self.topics.push(topic);
        self
    }

    /// Starts from `start` instead of the committed offset: applied once, as an offset reset,
    /// when subscribing.
    pub fn from(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Retries a failing handler by `retry` instead of the default (5 calls, waits from 100 ms
    /// doubling up to 5 s).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Handles at most `max_in_flight` records at once (at least 1); 1 handles every record of
    /// the subscription one after the other.
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = Some(max_in_flight.max(1));
        self
    }
}

/// One delivered event with its place in the log. Its JSON is what the HTTP API's tail shows.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    /// The topic it was published to.
    pub topic: TopicName,
    /// The partition of `topic` that holds it; messages of one key are all in the same one.
    pub partition: Partition,
    /// Its place in that partition, numbered from 0 (not the next offset to read, which is one
    /// more).
    pub offset: Offset,
    /// When the bus appended it.
    pub timestamp: DateTime<Utc>,
    /// The partition key it was published with: the event's `entity_id` unless the publisher gave
    /// another; `None` for an unkeyed message.
    pub key: Option<Arc<str>>,
    /// The event, decoded from the stored value. A value that is not an event never reaches a
    /// handler: it goes to the dead-letter topic.
    pub event: Arc<EventSchema>,
}

/// A record read with [`EventBus::read`], outside any group: its place in the log and its
/// value.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// The topic it was read from.
    pub topic: TopicName,
    /// Its partition.
    pub partition: Partition,
    /// Its place in the partition.
    pub offset: Offset,
    /// When the bus appended it.
    pub timestamp: DateTime<Utc>,
    /// Its partition key, if it has one.
    pub key: Option<Arc<str>>,
    /// What it holds.
    pub value: RecordValue,
}

/// The value of a [`Record`]: an event, or bytes that are not one.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordValue {
    /// An event, decoded.
    Event(Arc<EventSchema>),
    /// A value that is not an event (consumers dead-letter it), with the reason.
    Invalid {
        /// The value as stored.
        #[serde(serialize_with = "lossy_text")]
        bytes: Bytes,
        /// Why it is not an event.
        reason: String,
    },
}

impl Record {
    /// The event, if the value is one.
    pub fn event(&self) -> Option<&Arc<EventSchema>> {
        match &self.value {
            RecordValue::Event(event) => Some(event),
            RecordValue::Invalid { .. } => None,
        }
    }
}

fn lossy_text<S: serde::Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&String::from_utf8_lossy(bytes))
}

/// An event to publish with [`EventBus::publish_many`]: its topic, and its key unless the
/// entity id is the key.
#[derive(Clone, Debug)]
pub struct Publication {
    /// The topic it goes to.
    pub topic: TopicName,
    /// The partition key; `None` takes the event's `entity_id` (no key if that is empty).
    pub key: Option<String>,
    /// The event; a missing `event_id` or `timestamp` is filled in.
    pub event: EventSchema,
}

impl Publication {
    /// `event` to `topic`, keyed by its entity id.
    pub fn new(topic: TopicName, event: EventSchema) -> Self {
        Self { topic, key: None, event }
    }

    /// Keys the event by `key` instead of its entity id.
    pub fn keyed(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

/// Where a published event was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The partition. While `offset` is `None` it is where the key maps; an unkeyed event's
    /// partition is chosen at delivery and reads 0 until then.
    pub partition: Partition,
    /// The offset in the partition. `None` only on Kafka while the broker is unreachable: the event
    /// is durable in the local outbox and will be delivered, in order, when the broker is back.
    pub offset: Option<Offset>,
    /// For an event scheduled by `metadata.deliver_at`: the time it will be published to its
    /// topic. `partition` and `offset` are then its place in the schedule topic,
    /// [`SCHEDULE_TOPIC`](crate::SCHEDULE_TOPIC), not in its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<DateTime<Utc>>,
}

impl Published {
    /// An event stored at `offset` in `partition`.
    pub fn at(partition: Partition, offset: Offset) -> Self {
        Self { partition, offset: Some(offset), scheduled: None }
    }

    /// An event whose place is not known yet: `partition` is where its key maps.
    pub fn pending(partition: Partition) -> Self {
        Self { partition, offset: None, scheduled: None }
    }
}

/// A handler's failure. Any error converts into it with `?`; it keeps the source.
#[derive(Debug)]
pub struct HandlerError {
    source: Box<dyn std::error::Error + Send + Sync>,
    permanent: bool,
}

impl HandlerError {
    /// A failure described by a message alone. It is retried like any other.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self { source: message.to_string().into(), permanent: false }
    }

    /// A failure that no retry can fix, such as an event of an unknown version: the message goes
    /// to the dead-letter topic at once, with this error as the reason.
    pub fn permanent(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { source: error.into(), permanent: true }
    }

    /// Whether the failure skips the retries and sends the message to the dead-letter topic at
    /// once.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self { source: error.into(), permanent: false }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

/// Reacts to delivered events. It must be idempotent: delivery is at least once.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one message. `Ok` lets the group commit past it; an error is retried by the
    /// subscription's [`RetryPolicy`], and a permanent error, or one that outlasts the retries,
    /// sends the message to the dead-letter topic.
    async fn handle(&self, message: Message) -> Result<(), HandlerError>;
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, message: Message) -> Result<(), HandlerError> {
        (self.0)(message).await
    }
}

/// A handler from an async closure.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// Which engine carries the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Logs in RAM, for tests and development: nothing survives the process.
    Memory,
    /// Every publish is also a structured `tracing` line, personal data masked; events are
    /// delivered in-process, from memory.
    Log,
    /// Durable logs in SQLite under a data directory, which several processes may share. The
    /// default.
    Embedded,
    /// A Kafka cluster through rdkafka, optionally fronted by a durable local outbox (feature
    /// `kafka`).
    Kafka,
}

impl BackendKind {
    /// The type name the seed's `GET /kafka/status` reports.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Memory => "InMemoryEventBus",
            Self::Log => "LogEventBus",
            Self::Embedded => "EmbeddedEventBus",
            Self::Kafka => "KafkaEventBus",
        }
    }

    /// Whether what was published survives a crash of the process: false for the memory and
    /// log backends, which keep events in RAM.
    pub fn is_durable(self) -> bool {
        matches!(self, Self::Embedded | Self::Kafka)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memory => "memory",
            Self::Log => "log",
            Self::Embedded => "embedded",
            Self::Kafka => "kafka",
        })
    }
}

/// The state of the bus: the data behind `GET /kafka/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BusStatus {
    /// The engine that carries the events.
    pub backend: BackendKind,
    /// Whether the bus is started: `true` from `start` until `stop`. A stopped bus refuses
    /// publishes.
    pub running: bool,
    /// Events retained in all topics.
    pub total_events: u64,
    /// Events retained per topic, for topics that hold any.
    pub events_by_topic: BTreeMap<TopicName, u64>,
    /// Events waiting in the local outbox for the broker (Kafka only).
    pub outbox_backlog: Option<u64>,
    /// Events scheduled with `metadata.deliver_at` that this bus holds until their time; `None`
    /// where it does not deliver scheduled events (a bus without `run_scheduler`).
    pub scheduled_pending: Option<u64>,
}

impl BusStatus {
    /// The status of a bus holding `topics`; empty topics are left out.
    pub(crate) fn of(
        backend: BackendKind,
        running: bool,
        topics: &[TopicDescription],
        outbox_backlog: Option<u64>,
        scheduled_pending: Option<u64>,
    ) -> Self {
        let events_by_topic: BTreeMap<_, _> =
            topics.iter().map(|t| (t.name.clone(), t.retained())).filter(|(_, n)| *n > 0).collect();
        let total_events = events_by_topic.values().sum();
        Self { backend, running, total_events, events_by_topic, outbox_backlog, scheduled_pending }
    }
}

/// The bounds of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    /// Which partition of the topic these bounds are for.
    pub partition: Partition,
    /// The first retained offset (Kafka's log start offset).
    pub earliest: Offset,
    /// The offset the next message will get (Kafka's high watermark).
    pub latest: Offset,
}

/// A topic and its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicDescription {
    /// The name of the topic described.
    pub name: TopicName,
    /// The bounds of each of its partitions, one entry per partition.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicDescription {
    /// How many messages the topic holds now: `latest - earliest`, summed over its partitions.
    pub fn retained(&self) -> u64 {
        self.partitions.iter().map(|p| p.latest.0 - p.earliest.0).sum()
    }
}

/// The committed position of a group in one partition, and how far behind it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupOffset {
    /// The partition these figures are for.
    pub partition: Partition,
    /// The group's committed offset: the first one it has not finished, where it resumes.
    pub offset: Offset,
    /// Offsets above `offset` that the group finished already (records of other keys handled
    /// ahead of an unfinished one): they are not delivered to it again.
    pub finished: Vec<Offset>,
    /// How many messages the group has still to handle: the partition's latest offset minus
    /// `offset`, less those finished already; 0 when it has caught up.
    pub lag: u64,
}

/// Where a group is in one topic: its committed offset and lag per partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupTopic {
    /// The topic.
    pub topic: TopicName,
    /// The partitions the group committed in, by partition.
    pub partitions: Vec<GroupOffset>,
    /// The lag of the group in the topic: the sum of its partitions' lag.
    pub lag: u64,
}

/// A consumer group of the bus, as [`EventBus::list_groups`] finds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupDescription {
    /// The group.
    pub group: GroupId,
    /// The topics it committed offsets in, by name. Empty for a group that has members but has
    /// committed nothing yet (Kafka, and the embedded store's live members).
    pub topics: Vec<GroupTopic>,
    /// The lag of the group over all its topics.
    pub lag: u64,
}

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The topic does not exist. Create it (`eventbus topics create`) or enable auto-create.
    #[error("unknown topic `{0}`: create it with `eventbus topics create {0}` or enable auto_create_topics")]
    UnknownTopic(TopicName),
    /// A topic of that name exists already.
    #[error("topic `{0}` already exists")]
    TopicExists(TopicName),
    /// The topic name breaks Kafka's naming rules; the source says which. Fix the name.
    #[error(transparent)]
    InvalidTopic(#[from] TopicError),
    /// Partition counts are between 1 and 10,000.
    #[error("invalid partition count {0}: expected 1 to 10000")]
    InvalidPartitions(u32),
    /// The consumer group id is empty, longer than 255 bytes or holds a control character. Pick
    /// another id.
    #[error("invalid consumer group `{0}`")]
    InvalidGroup(String),
    /// A start position that does not parse. Write `committed`, `earliest`, `latest`, `offset:N`
    /// or `time:` followed by an RFC 3339 time.
    #[error("invalid position `{0}`: expected committed, earliest, latest, offset:N or time:RFC3339")]
    InvalidPosition(String),
    /// The topic has no such partition.
    #[error("topic `{topic}` has no partition {partition}: it has {partitions}")]
    UnknownPartition {
        /// The topic.
        topic: TopicName,
        /// The partition asked for.
        partition: Partition,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// `publish_batch` got a different number of keys than events.
    #[error("{keys} keys given for {events} events")]
    KeyCountMismatch {
        /// How many keys were given.
        keys: usize,
        /// How many events were given.
        events: usize,
    },
    /// The bus is stopped. Call `start` first.
    #[error("the event bus is not running")]
    NotRunning,
    /// Another subscription of this process already consumes the topic in this group.
    #[error("group `{group}` already consumes `{topic}` in this process")]
    AlreadySubscribed {
        /// The group that already consumes the topic.
        group: GroupId,
        /// The topic that the group already consumes.
        topic: TopicName,
    },
    /// `metadata.deliver_at` was refused: not a time, in the past, too far ahead, or too many
    /// events are scheduled; the source says which, with the value and the bound.
    #[error(transparent)]
    Schedule(#[from] crate::runtime::ScheduleError),
    /// The event cannot be encoded, e.g. it has no event id where one is needed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The message is larger than the configured maximum.
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// The size of the encoded message, in bytes.
        size: usize,
        /// The configured maximum, `max_message_bytes`, in bytes.
        max: usize,
    },
    /// The backend's store or broker failed. The source is the backend's own error
    /// (`EmbeddedError`, `KafkaError`), and its message says whether the store is locked,
    /// corrupt or unreachable, or whether the broker is unreachable, refused or did not
    /// acknowledge in time. [`BusError::backend_error`] gives it back to branch on its kind.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl BusError {
    /// The backend's own error, if this is a [`BusError::Backend`] of type `E`.
    pub fn backend_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Self::Backend(source) => source.downcast_ref(),
            _ => None,
        }
    }
}

/// The event bus: publish events to topics and consume them in groups.
///
/// **Order.** A key always maps to the same partition of a topic (Kafka's murmur2 rule), and a
/// subscription hands a handler the records of one key one at a time, in offset order: the next
/// record of a key starts only when the one before it is done (handled, or dead-lettered). That
/// is the ordering guarantee: *per key*. Records of different keys, and of different partitions,
/// are handled concurrently, up to the subscription's `max_in_flight`, in no set order; records
/// without a key have no order among them.
///
/// **Delivery** is at least once. What a group commits in each partition is a watermark that never
/// passes a record not finished, with the records finished above it, so a slow or retried record
/// holds back only its own key. After a crash, the records not recorded as finished are delivered
/// again; handlers should be idempotent (the runtime also drops repeats of an `event_id` it has
/// just seen).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Which engine carries this bus's events.
    fn backend(&self) -> BackendKind;

    /// Starts consuming for every subscription made so far, and for those made later.
    async fn start(&self) -> Result<(), BusError>;

    /// Stops consuming, waits for handlers in flight and commits their offsets.
    async fn stop(&self) -> Result<(), BusError>;

    /// Whether the bus is started: `true` from `start` until `stop`. Only a running bus publishes
    /// and consumes.
    fn is_running(&self) -> bool;

    /// Publishes one event. The key defaults to the event's `entity_id`; a missing `event_id` or
    /// `timestamp` is filled in. `Ok` means the event is stored (durably, on a durable backend).
    async fn publish(&self, topic: &TopicName, event: EventSchema, key: Option<&str>) -> Result<Published, BusError> {
        let keys = key.map(|k| vec![k.to_owned()]);
        let mut published = self.publish_batch(topic, vec![event], keys).await?;
        Ok(published.pop().expect("publish_batch returns one result per event"))
    }

    /// Publishes events to one topic in order, in one write. `keys`, if given, has one key per
    /// event.
    async fn publish_batch(
        &self,
        topic: &TopicName,
        events: Vec<EventSchema>,
        keys: Option<Vec<String>>,
    ) -> Result<Vec<Published>, BusError> {
        if let Some(keys) = keys.as_ref().filter(|keys| keys.len() != events.len()) {
            return Err(BusError::KeyCountMismatch { keys: keys.len(), events: events.len() });
        }
        let mut keys = keys.map(Vec::into_iter);
        let publications = events
            .into_iter()
            .map(|event| Publication { topic: topic.clone(), key: keys.as_mut().and_then(Iterator::next), event })
            .collect();
        self.publish_many(publications).await
    }

    /// Publishes events to any number of topics in one write: on a durable backend they are
    /// stored together or not at all, with one sync. Order is kept within each topic (and so
    /// within each key); across topics there is no order. Returns one result per event, in the
    /// order given.
    async fn publish_many(&self, publications: Vec<Publication>) -> Result<Vec<Published>, BusError>;

    /// Publishes raw bytes, as a producer outside this project would. Consumers send a value that
    /// is not an event to the dead-letter topic with the reason.
    async fn publish_bytes(&self, topic: &TopicName, key: Option<&str>, value: Bytes) -> Result<Published, BusError>;

    /// Calls `handler` for every message of the subscribed topics, in order per partition.
    async fn subscribe(&self, subscription: Subscription, handler: Arc<dyn Handler>) -> Result<(), BusError>;

    /// Whether this bus's consumers of `group` run and have joined the group since they
    /// started: each was dealt its share of the partitions (perhaps none, when other members
    /// hold them all), so records of the group are being handled. `None` if this bus has no
    /// subscription in `group`. A readiness probe waits for it.
    async fn joined(&self, group: &GroupId) -> Option<bool>;

    /// Up to `max` records of one partition from offset `from` on (from the first retained one
    /// if `from` is below it), outside any group: nothing is committed and no handler runs.
    /// Fewer, or none, at the end of the partition.
    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, BusError>;

    /// The state of the bus: its backend, whether it runs, the events retained per topic and, on
    /// Kafka, the outbox backlog.
    async fn status(&self) -> Result<BusStatus, BusError>;

    /// Events published here that wait in a local outbox for the broker: durable, not yet
    /// published. `None` where there is no outbox. Answers while the broker is down, and after
    /// a stop (what is left then goes out at the next start on the same outbox).
    async fn outbox_backlog(&self) -> Result<Option<u64>, BusError>;

    /// Creates a topic of `partitions` partitions (1 to 10,000) and its dead-letter topic.
    /// [`BusError::TopicExists`] if the topic is there already.
    async fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<(), BusError>;

    /// Every topic with the bounds of its partitions, dead-letter topics included.
    async fn list_topics(&self) -> Result<Vec<TopicDescription>, BusError>;

    /// One topic with the bounds of its partitions; [`BusError::UnknownTopic`] if it does not
    /// exist and auto-create is off.
    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, BusError>;

    /// The group's committed offsets and lag in a topic.
    async fn group_offsets(&self, group: &GroupId, topic: &TopicName) -> Result<Vec<GroupOffset>, BusError>;

    /// Forgets a group's committed offsets, like `kafka-consumer-groups --delete`. Stop its
    /// consumers first. Deleting a group that does not exist succeeds.
    async fn delete_group(&self, group: &GroupId) -> Result<(), BusError>;

    /// Every consumer group of the bus (at most [`MAX_GROUPS`], by id), with its committed offsets
    /// and lag in each topic it committed in: the groups of other processes too, like
    /// `kafka-consumer-groups --list --describe`. A group whose topic was deleted since is shown
    /// without it.
    async fn list_groups(&self) -> Result<Vec<GroupDescription>, BusError>;

    /// Moves a group's committed offset in one partition of `topic` to `to`, like
    /// `kafka-consumer-groups --reset-offsets --topic T:P`; the other partitions keep theirs.
    /// Returns the group's offsets in every partition of the topic. Stop the group's consumers
    /// first: a running consumer commits over the reset.
    async fn reset_partition_offset(
        &self,
        group: &GroupId,
        topic: &TopicName,
        partition: Partition,
        to: StartPosition,
    ) -> Result<Vec<GroupOffset>, BusError>;

    /// Moves a group's committed offsets, like `kafka-consumer-groups --reset-offsets`. Returns the
    /// new offsets. Stop the group's consumers first.
    async fn reset_offsets(
        &self,
        group: &GroupId,
        topic: &TopicName,
        to: StartPosition,
    ) -> Result<Vec<GroupOffset>, BusError>;
}
