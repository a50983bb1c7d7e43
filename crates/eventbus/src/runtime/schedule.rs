//! Scheduled delivery: an event published with `metadata.deliver_at` (RFC 3339) in the future is
//! held in the schedule topic, [`SCHEDULE_TOPIC`], and published to its own topic at that time.
//!
//! - **At publish** the time is checked: one that does not parse, more than [`PAST_GRACE`] in
//!   the past or further ahead than `max_schedule_ahead` is refused
//!   ([`ScheduleError`]); one now or within the grace is published at once. A future one is
//!   written to the schedule topic as an entry holding the event (its `event_id` already given),
//!   its topic and key, in the same write as the rest of the publish.
//! - **The scheduler** (a task of the bus, on every backend, while the bus runs and
//!   `run_scheduler` is on) folds the schedule topic into the entries still pending, ordered by
//!   due time. It sleeps until the next is due, or until this process schedules one, or at most
//!   [`FOLLOW_INTERVAL`], after which it reads what other processes scheduled. A due entry is
//!   published to its topic with its `event_id`, `deliver_at` renamed `scheduled_for` (so a
//!   consumer that forwards the event's metadata does not schedule it again), together with a
//!   `delivered` marker in the schedule topic, in one write.
//! - **Crashes.** The entry is durable once the publish returns (on a durable backend). The event
//!   and its marker are one write: on the embedded backend one transaction, on Kafka one write to
//!   the outbox, sent as two records; should a crash come between the two there, the entry is
//!   still pending after the restart and the event is delivered again with the same `event_id`,
//!   which consumers drop (the bus dedups by `event_id`; handlers are idempotent).
//! - **Several schedulers** (several `serve` on one store or cluster) each deliver what is due;
//!   each reads the markers just before delivering, so a duplicate needs two of them to act in
//!   the same instant, and it has the same `event_id`: consumers drop it as above.
//! - **Bounds.** The scheduler holds at most `max_scheduled` entries, the earliest due; a
//!   publish in a process that runs it is refused with [`ScheduleError::Full`] when that many are
//!   pending. Entries other processes wrote beyond the bound stay in the topic, and the scheduler
//!   reads the topic again once it has delivered what it holds (see `Book`). It delivers at most
//!   `DELIVER_BATCH` entries between two reads of the topic, and an entry that cannot be
//!   delivered (its topic deleted on the broker, the broker down) is tried again every 500 ms
//!   without holding back the others.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::letter_log::wait_or_stop;
use super::record::{NewRecord, Payload};
use crate::bus::{BusError, Offset, Publication, Record};
use crate::envelope::{EventId, EventSchema};
use crate::topics::TopicName;

/// The topic of scheduled events: one partition, created when the bus opens.
pub const SCHEDULE_TOPIC: &str = "eventbus.scheduled";
/// The metadata entry that schedules an event: an RFC 3339 time.
pub const DELIVER_AT: &str = "deliver_at";
/// The metadata entry a delivered event carries instead of `deliver_at`: the time it was due.
pub const SCHEDULED_FOR: &str = "scheduled_for";
/// How far in the past a `deliver_at` may be and still be delivered (at once): clocks differ,
/// and a request takes time.
pub const PAST_GRACE: Duration = Duration::from_secs(60);
/// The default of `max_schedule_ahead`: 400 days, a yearly standing order and some.
pub const DEFAULT_MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(400 * 24 * 3600);
/// The default of `max_scheduled`.
pub const DEFAULT_MAX_SCHEDULED: usize = 100_000;

/// The longest the scheduler waits before it reads what other processes scheduled.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// The wait after the schedule topic could not be read or an event not delivered.
const RETRY: Duration = Duration::from_millis(500);
/// Records read from the schedule topic at a time.
const READ_BATCH: usize = 500;
/// Entries delivered in one pass, before the topic is read again.
const DELIVER_BATCH: usize = 1_000;
/// The event type of an entry, and of the marker that it was delivered.
const ENTRY: &str = "delivery_scheduled";
const DELIVERED: &str = "scheduled_delivery_done";
/// The longest `deliver_at` text an error repeats.
const MAX_ECHO: usize = 64;

/// Why a scheduled event was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// `metadata.deliver_at` is not an RFC 3339 time.
    #[error("invalid deliver_at `{0}`: expected an RFC 3339 time, e.g. 2027-01-31T09:00:00Z")]
    Invalid(String),
    /// `metadata.deliver_at` is more than a minute in the past.
    #[error("deliver_at {deliver_at} is in the past: it may be at most 60 s before now ({now})")]
    InPast {
        /// The time asked for.
        deliver_at: String,
        /// The time of the bus when it refused it.
        now: String,
    },
    /// `metadata.deliver_at` is further ahead than the bus's `max_schedule_ahead`.
    #[error("deliver_at {deliver_at} is too far ahead: at most {max_days} days from now, until {latest}")]
    TooFarAhead {
        /// The time asked for.
        deliver_at: String,
        /// The bound, `max_schedule_ahead`, in whole days.
        max_days: u64,
        /// The latest time accepted now.
        latest: String,
    },
    /// As many events as `max_scheduled` wait for their time already.
    #[error("{max} events are scheduled already, the most this bus holds (max_scheduled): try again later")]
    Full {
        /// The bound, `max_scheduled`.
        max: usize,
    },
}

/// The schedule topic's name.
pub(crate) fn topic() -> TopicName {
    TopicName::new(SCHEDULE_TOPIC).expect("a valid topic name")
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// When `event` is to be delivered: `None` if it has no `deliver_at` or is due now (within
/// [`PAST_GRACE`]), and then a `deliver_at` is renamed `scheduled_for` as on a delivered event;
/// refused if the time does not parse, is too far past or too far ahead.
pub(crate) fn due(
    event: &mut EventSchema,
    now: DateTime<Utc>,
    max_ahead: Duration,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    // Metadata kept as the text it came in is not parsed for an event that cannot have the key.
    if event.metadata.raw().is_some_and(|text| !text.contains(DELIVER_AT)) {
        return Ok(None);
    }
    let Some(value) = event.metadata.get(DELIVER_AT) else { return Ok(None) };
    let echo = |text: &str| text.chars().take(MAX_ECHO).collect::<String>();
    let text = match value {
        Value::String(text) => text,
        other => return Err(ScheduleError::Invalid(echo(&other.to_string()))),
    };
    let at = DateTime::parse_from_rfc3339(text).map_err(|_| ScheduleError::Invalid(echo(text)))?.to_utc();
    let grace = chrono::Duration::from_std(PAST_GRACE).expect("a minute");
    if at < now - grace {
        return Err(ScheduleError::InPast { deliver_at: rfc3339(at), now: rfc3339(now) });
    }
    let latest = chrono::Duration::from_std(max_ahead)
        .ok()
        .and_then(|ahead| now.checked_add_signed(ahead))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if at > latest {
        let max_days = max_ahead.as_secs() / 86_400;
        return Err(ScheduleError::TooFarAhead { deliver_at: rfc3339(at), max_days, latest: rfc3339(latest) });
    }
    if at > now {
        return Ok(Some(at));
    }
    delivered(event, at);
    Ok(None)
}

/// `event` as it is delivered: `deliver_at` renamed `scheduled_for`, so that a consumer that
/// copies the metadata forward does not schedule it again.
fn delivered(event: &mut EventSchema, due: DateTime<Utc>) {
    event.metadata.remove(DELIVER_AT);
    event.metadata.insert(SCHEDULED_FOR.into(), rfc3339(due).into());
}

/// The entry that holds `event` in the schedule topic until `due`, for `topic` and `key`.
/// `event` has its `event_id` already.
pub(crate) fn entry(topic: &TopicName, key: Option<&str>, event: &EventSchema, due: DateTime<Utc>) -> EventSchema {
    let id = event_id(event);
    let data = json!({
        "topic": topic,
        "key": key,
        "deliver_at": rfc3339(due),
        "event": serde_json::to_value(event).expect("an EventSchema always serialises"),
    });
    let Value::Object(data) = data else { unreachable!("built as an object") };
    EventSchema::new(ENTRY, "scheduled_event", id.clone(), data)
        .with_id(EventId::derived(&format!("scheduled/{id}/{}", rfc3339(due))))
        .with_source("eventbus")
}

fn event_id(event: &EventSchema) -> String {
    event.event_id.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// The entries among `records`: those of the events that `dues` says are scheduled.
pub(crate) fn entries(records: &[NewRecord], dues: &[Option<DateTime<Utc>>]) -> Vec<Arc<EventSchema>> {
    records
        .iter()
        .zip(dues)
        .filter(|(_, due)| due.is_some())
        .filter_map(|(record, _)| match &record.payload {
            Payload::Event(entry) | Payload::Encoded { event: entry, .. } => Some(Arc::clone(entry)),
            Payload::Bytes(_) | Payload::Rejected { .. } => None,
        })
        .collect()
}

/// The schedule topic, and the publishing of what is due: what the scheduler needs of the bus.
#[async_trait]
pub(crate) trait ScheduleLog: Send + Sync + 'static {
    /// Up to `max` records of the schedule topic from `from` on.
    async fn read_schedule(&self, from: Offset, max: usize) -> Result<Vec<Record>, BusError>;

    /// Publishes a due event and the marker that it was delivered, in one write.
    async fn deliver(&self, event: Publication, marker: Publication) -> Result<(), BusError>;
}

/// An entry's place in the book: its due time, then its event id.
type Key = (DateTime<Utc>, String);

/// An event waiting for its time.
#[derive(Clone)]
struct Pending {
    topic: TopicName,
    key: Option<String>,
    event: EventSchema,
}

/// The entries not delivered yet, as folded from the schedule topic, at most `max` of them: the
/// earliest due.
///
/// When more are pending, those due from the first one left out on (the horizon) are not held,
/// and once every held one is delivered the topic is read again from its start. That read skips
/// what the one before knew to be delivered: the entries below its cursor due before its
/// horizon. (An entry written after that cursor and due before that horizon can narrow the
/// next horizon below it; entries between the two are then delivered again, with their
/// `event_id`, and consumers drop them.)
#[derive(Default)]
struct Book {
    /// The next offset of the schedule topic to read.
    cursor: Offset,
    /// By due time, then event id.
    pending: BTreeMap<Key, Pending>,
    /// Entries due at or after it are left out for the bound.
    horizon: Option<DateTime<Utc>>,
    /// Entries below this offset and due before this time are delivered.
    floor: Option<(Offset, DateTime<Utc>)>,
}

impl Book {
    fn apply(&mut self, record: &Record, max: usize) {
        self.cursor = Offset(record.offset.0 + 1);
        match record.event() {
            Some(event) => self.apply_event(event, Some(record.offset), max),
            None => tracing::warn!(offset = %record.offset, "Skipped a schedule record that is not an event"),
        }
    }

    /// Folds an entry or a marker, read at `offset` (`None`: written by this process just now).
    /// Idempotent: an entry folded twice is held once.
    fn apply_event(&mut self, event: &EventSchema, offset: Option<Offset>, max: usize) {
        let (Some(id), Some(due)) = (
            Some(event.entity_id.clone()).filter(|id| !id.is_empty()),
            event.data.get("deliver_at").and_then(Value::as_str).and_then(|t| t.parse::<DateTime<Utc>>().ok()),
        ) else {
            tracing::warn!(event_type = %event.event_type, "Skipped a schedule record without an event id or a time");
            return;
        };
        match event.event_type.as_str() {
            ENTRY => {
                let delivered =
                    matches!((self.floor, offset), (Some((below, before)), Some(at)) if at < below && due < before);
                if delivered || self.horizon.is_some_and(|horizon| due >= horizon) {
                    return;
                }
                let Some(pending) = decode(event) else {
                    tracing::warn!(event_type = %event.event_type, "Skipped a schedule entry that does not decode");
                    return;
                };
                self.pending.insert((due, id), pending);
                if self.pending.len() > max
                    && let Some(((left_out, _), _)) = self.pending.pop_last()
                {
                    self.horizon = Some(left_out);
                }
            }
            DELIVERED => {
                self.pending.remove(&(due, id));
            }
            _ => {}
        }
    }

    /// The book to read the topic again with, once every held entry is delivered and some were
    /// left out; `None` otherwise.
    fn reread(&self) -> Option<Book> {
        let horizon = self.horizon.filter(|_| self.pending.is_empty())?;
        Some(Book { floor: Some((self.cursor, horizon)), ..Book::default() })
    }
}

fn decode(entry: &EventSchema) -> Option<Pending> {
    let topic = entry.data.get("topic").and_then(Value::as_str).and_then(|t| TopicName::new(t).ok())?;
    let key = entry.data.get("key").and_then(Value::as_str).map(str::to_owned);
    let event: EventSchema = serde_json::from_value(entry.data.get("event")?.clone()).ok()?;
    Some(Pending { topic, key, event })
}

/// The scheduler of one bus.
pub(crate) struct Scheduler {
    runs: bool,
    max: usize,
    book: Mutex<Book>,
    wake: Notify,
    task: tokio::sync::Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

impl Scheduler {
    /// A scheduler that delivers (if `runs`) and holds at most `max` entries.
    pub(crate) fn new(runs: bool, max: usize) -> Self {
        Self { runs, max: max.max(1), book: Mutex::default(), wake: Notify::new(), task: tokio::sync::Mutex::default() }
    }

    /// The entries held, pending delivery, if this process delivers.
    pub(crate) fn pending(&self) -> Option<u64> {
        self.runs.then(|| self.lock().pending.len() as u64)
    }

    /// Refuses `count` more entries if this process delivers and holds its bound already.
    pub(crate) fn admit(&self, count: usize) -> Result<(), ScheduleError> {
        if self.runs && count > 0 && self.lock().pending.len() + count > self.max {
            return Err(ScheduleError::Full { max: self.max });
        }
        Ok(())
    }

    /// This process wrote `entries`: the scheduler holds them now (and again, idempotently, when
    /// it reads them back), and wakes for them.
    pub(crate) fn hold(&self, entries: &[Arc<EventSchema>]) {
        if !self.runs || entries.is_empty() {
            return;
        }
        let mut book = self.lock();
        for entry in entries {
            book.apply_event(entry, None, self.max);
        }
        drop(book);
        self.wake.notify_one();
    }

    /// Starts the scheduler task, if this process delivers.
    pub(crate) async fn start(self: &Arc<Self>, log: Arc<dyn ScheduleLog>) {
        let mut task = self.task.lock().await;
        if !self.runs || task.is_some() {
            return;
        }
        let (stop, stopped) = watch::channel(false);
        *task = Some((stop, tokio::spawn(run(Arc::clone(self), log, stopped))));
    }

    /// Stops the scheduler task and waits for it. What is pending stays in the topic.
    pub(crate) async fn stop(&self) {
        let Some((stop, task)) = self.task.lock().await.take() else { return };
        stop.send_replace(true);
        if let Err(error) = task.await {
            tracing::error!(%error, "Scheduler task ended abnormally");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds what was written to the schedule topic since the last read, to its end.
    async fn catch_up(&self, log: &dyn ScheduleLog) -> Result<(), BusError> {
        // Bounded: the topic is read to its end a batch at a time.
        for _ in 0..100_000 {
            let from = self.lock().cursor;
            let records = log.read_schedule(from, READ_BATCH).await?;
            let mut book = self.lock();
            for record in &records {
                book.apply(record, self.max);
            }
            if records.len() < READ_BATCH {
                break;
            }
        }
        Ok(())
    }

    /// Delivers the entries due now, earliest first, up to [`DELIVER_BATCH`]. One that cannot be
    /// delivered does not hold back those behind it: it is tried again at the next pass. False
    /// if any failed.
    async fn deliver_due(&self, log: &dyn ScheduleLog) -> bool {
        let now = Utc::now();
        let due: Vec<(Key, Pending)> = {
            let book = self.lock();
            book.pending
                .iter()
                .take_while(|((due, _), _)| *due <= now)
                .take(DELIVER_BATCH)
                .map(|(key, pending)| (key.clone(), pending.clone()))
                .collect()
        };
        let mut delivered_all = true;
        for ((due, id), Pending { topic, key, mut event }) in due {
            delivered(&mut event, due);
            let marker = EventSchema::new(
                DELIVERED,
                "scheduled_event",
                id.clone(),
                json!({"topic": topic, "deliver_at": rfc3339(due)}).as_object().cloned().unwrap_or_default(),
            )
            .with_id(EventId::derived(&format!("delivered/{id}/{}", rfc3339(due))))
            .with_source("eventbus");
            let publication = Publication { topic: topic.clone(), key, event };
            match log.deliver(publication, Publication::new(self::topic(), marker)).await {
                Ok(()) => {
                    let late_ms = (Utc::now() - due).num_milliseconds();
                    tracing::info!(%topic, event_id = %id, late_ms, "Delivered a scheduled event");
                    self.lock().pending.remove(&(due, id));
                }
                Err(error) => {
                    tracing::warn!(%topic, event_id = %id, %error, "Cannot deliver a scheduled event; trying again");
                    delivered_all = false;
                }
            }
        }
        delivered_all
    }

    /// How long to sleep: until the next entry is due, at most [`FOLLOW_INTERVAL`].
    fn wait(&self) -> Duration {
        let book = self.lock();
        let next = book.pending.keys().next().map(|(due, _)| (*due - Utc::now()).to_std().unwrap_or_default());
        next.map_or(FOLLOW_INTERVAL, |d| d.min(FOLLOW_INTERVAL))
    }

    /// After the bound left entries out and what was held is delivered, the topic is read again
    /// from its start for them.
    /// True if it starts reading again.
    fn reread_if_overflowed(&self) -> bool {
        let mut book = self.lock();
        let Some(reread) = book.reread() else { return false };
        tracing::info!(max = self.max, "Reading the schedule topic again for entries beyond the bound");
        *book = reread;
        true
    }
}

/// Folds the schedule topic and delivers what is due, until the stop.
async fn run(scheduler: Arc<Scheduler>, log: Arc<dyn ScheduleLog>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let failed = match scheduler.catch_up(&*log).await {
            Ok(()) => !scheduler.deliver_due(&*log).await,
            Err(error) => {
                tracing::warn!(%error, "Cannot read the schedule topic; trying again");
                true
            }
        };
        if failed {
            if wait_or_stop(&mut stop, RETRY).await {
                return;
            }
            continue;
        }
        if scheduler.reread_if_overflowed() {
            continue;
        }
        let wait = scheduler.wait();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = scheduler.wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> EventSchema {
        EventSchema::new("t", "e", "1", serde_json::Map::new()).with_metadata(DELIVER_AT, text)
    }

    const YEAR: Duration = DEFAULT_MAX_SCHEDULE_AHEAD;

    #[test]
    fn a_deliver_at_is_checked_against_the_minute_past_and_the_horizon() {
        // Given a fixed now
        let now: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        // Then no deliver_at, or one within the minute past, is due now
        let mut plain = EventSchema::new("t", "e", "1", serde_json::Map::new());
        assert_eq!(due(&mut plain, now, YEAR).unwrap(), None);
        let mut just_past = at("2026-12-01T09:59:30Z");
        assert_eq!(due(&mut just_past, now, YEAR).unwrap(), None);
        assert_eq!(just_past.metadata.get(SCHEDULED_FOR), Some(&Value::from("2026-12-01T09:59:30Z")));
        assert_eq!(just_past.metadata.get(DELIVER_AT), None);
        // and a future one is due then, in any offset
        let later: DateTime<Utc> = "2026-12-01T11:00:00Z".parse().unwrap();
        assert_eq!(due(&mut at("2026-12-01T12:00:00+01:00"), now, YEAR).unwrap(), Some(later));
        // and the past, the far future and what is not a time are refused, saying why
        let past = due(&mut at("2026-12-01T09:58:00Z"), now, YEAR).unwrap_err().to_string();
        assert!(past.contains("2026-12-01T09:58:00Z is in the past"), "{past}");
        let far = due(&mut at("2029-01-01T00:00:00Z"), now, YEAR).unwrap_err().to_string();
        assert!(far.contains("at most 400 days from now, until 2028-01-05T10:00:00Z"), "{far}");
        let bad = due(&mut at("tomorrow"), now, YEAR).unwrap_err().to_string();
        assert!(bad.contains("invalid deliver_at `tomorrow`"), "{bad}");
        let mut number = EventSchema::new("t", "e", "1", serde_json::Map::new()).with_metadata(DELIVER_AT, 5);
        assert!(matches!(due(&mut number, now, YEAR), Err(ScheduleError::Invalid(v)) if v == "5"));
    }

    /// A schedule topic in memory, whose deliveries to `t.gone` fail.
    #[derive(Default)]
    struct FakeLog {
        records: Mutex<Vec<Record>>,
        delivered: Mutex<Vec<TopicName>>,
    }

    impl FakeLog {
        fn append(&self, event: EventSchema) {
            let mut records = self.records.lock().unwrap();
            let offset = Offset(records.len() as u64);
            records.push(Record {
                topic: topic(),
                partition: crate::bus::Partition(0),
                offset,
                timestamp: Utc::now(),
                key: None,
                value: crate::bus::RecordValue::Event(Arc::new(event)),
            });
        }
    }

    #[async_trait]
    impl ScheduleLog for FakeLog {
        async fn read_schedule(&self, from: Offset, max: usize) -> Result<Vec<Record>, BusError> {
            let records = self.records.lock().unwrap();
            Ok(records.iter().skip(from.0 as usize).take(max).cloned().collect())
        }

        async fn deliver(&self, event: Publication, marker: Publication) -> Result<(), BusError> {
            if event.topic.as_str() == "t.gone" {
                return Err(BusError::UnknownTopic(event.topic));
            }
            self.delivered.lock().unwrap().push(event.topic);
            self.append(marker.event);
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_entry_that_cannot_be_delivered_does_not_hold_back_the_ones_behind_it() {
        // Given two entries due now, the earlier one for a topic that is gone
        let log = Arc::new(FakeLog::default());
        let now = Utc::now();
        for (name, ago) in [("t.gone", 2), ("t.here", 1)] {
            let due = now - chrono::Duration::seconds(ago);
            log.append(entry(&TopicName::new(name).unwrap(), None, &at(&rfc3339(due)), due));
        }
        // When the scheduler runs
        let scheduler = Arc::new(Scheduler::new(true, 10));
        scheduler.start(Arc::clone(&log) as Arc<dyn ScheduleLog>).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        scheduler.stop().await;
        // Then the later one is delivered, once, and the earlier one still waits
        assert_eq!(*log.delivered.lock().unwrap(), [TopicName::new("t.here").unwrap()]);
        let pending: Vec<_> = scheduler.lock().pending.values().map(|p| p.topic.to_string()).collect();
        assert_eq!(pending, ["t.gone"]);
    }

    #[tokio::test]
    async fn entries_past_the_bound_are_read_again_and_delivered_once_the_held_ones_are() {
        // Given five entries due now, written by another process, and a scheduler that holds two
        let log = Arc::new(FakeLog::default());
        let now = Utc::now();
        for n in 0..5 {
            let due = now - chrono::Duration::seconds(10 - n);
            log.append(entry(&TopicName::new("t.here").unwrap(), None, &at(&rfc3339(due)), due));
        }
        let scheduler = Arc::new(Scheduler::new(true, 2));
        // When it runs
        scheduler.start(Arc::clone(&log) as Arc<dyn ScheduleLog>).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        scheduler.stop().await;
        // Then every entry is delivered once, and it never held more than two
        assert_eq!(log.delivered.lock().unwrap().len(), 5);
        assert!(scheduler.lock().pending.is_empty());
    }

    #[test]
    fn an_entry_decodes_to_its_event_topic_and_key() {
        // Given an event scheduled for a topic and key
        let event = at("2026-12-01T11:00:00Z");
        let topic = TopicName::new("t.one").unwrap();
        let due: DateTime<Utc> = "2026-12-01T11:00:00Z".parse().unwrap();
        // When its entry is decoded
        let pending = decode(&entry(&topic, Some("k"), &event, due)).unwrap();
        // Then it is the same event, for the same place
        assert_eq!((pending.topic, pending.key.as_deref()), (topic, Some("k")));
        assert_eq!(pending.event, event);
    }
}
