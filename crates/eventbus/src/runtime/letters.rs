//! A subscription's dead letters while it runs: the keys it has parked, the records waiting for a
//! retry stage, and the redrives operators ask for.
//!
//! The state is a [`Book`] folded from the subscription's dead-letter topics, which are its only
//! durable form: a restart, or another instance of the group, folds the same records and gets the
//! same state. A follower task reads what others write there (operators' requests, other
//! instances' letters) and acts on the letters that are due: a parked record whose turn came, a
//! redrive, a retry stage.
//!
//! Order: the records of a parked key are handled by the follower, one at a time, in the order
//! they were parked, after the letter they wait behind is resolved. While the key has a letter
//! open, the consumer parks each new record of the key at the end of its sequence (under the
//! book's lock), so none overtakes another. The follower acts only on partitions its consumer
//! holds, so one instance of a group acts on a key.
//!
//! Crashes: a letter is written before the record's offset is committed. A record delivered
//! again whose letter the book holds is not written twice. A letter handled and not yet marked
//! resolved when the process died is handled again after the restart, and the handler's
//! idempotence (the record keeps its `event_id`) keeps the effect single.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};

use super::letter_log::{self, DeadLetterLog, Stopped, original_bytes};
use super::record::StoredRecord;
use crate::bus::{BusError, DeadLetterPolicy, GroupId, Offset, Partition, Record, RecordValue};
use crate::dlq::book::{Book, Letter};
use crate::dlq::letter::{self, Failure, FailureKind, Original, Place, Stage};
use crate::envelope::EventSchema;
use crate::topics::TopicName;

/// How often the follower looks for records others wrote while its group has letters open (a
/// redrive asked for by an operator is carried out within it).
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// How often it looks while its group has none: a letter of its own is folded as it is written,
/// and a partition taken over wakes it at once.
const IDLE_FOLLOW_INTERVAL: Duration = Duration::from_secs(5);
/// Records read from a dead-letter topic at a time.
const READ_BATCH: usize = 500;

/// The dead letters of one subscription.
pub(crate) struct Letters {
    group: GroupId,
    policy: DeadLetterPolicy,
    log: Arc<dyn DeadLetterLog>,
    /// The largest letter written whole; a larger original is kept by its beginning.
    max_message_bytes: usize,
    /// The subscription's dead-letter topics.
    dlq_topics: Vec<TopicName>,
    book: tokio::sync::Mutex<Book>,
    /// Whether any key is parked: the consumer skips the book's lock while none is.
    parked: AtomicBool,
    /// True once the book holds everything written before the consumer last took partitions.
    ready: watch::Sender<bool>,
    /// The partitions the subscription's consumer holds.
    owned: Mutex<HashSet<(TopicName, Partition)>>,
    /// Ids of records this process wrote and folded already, not read back yet.
    own: Mutex<HashSet<String>>,
    wake: Notify,
}

impl Letters {
    pub(crate) fn new(
        group: &GroupId,
        topics: &[TopicName],
        policy: DeadLetterPolicy,
        log: Arc<dyn DeadLetterLog>,
        max_message_bytes: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            group: group.clone(),
            log,
            max_message_bytes,
            dlq_topics: topics.iter().map(TopicName::dlq).collect(),
            book: tokio::sync::Mutex::new(Book::of_group(group.clone())),
            parked: AtomicBool::new(false),
            ready: watch::channel(!policy.follows()).0,
            owned: Mutex::default(),
            own: Mutex::default(),
            wake: Notify::new(),
            policy,
        })
    }

    pub(crate) fn sequenced(&self) -> bool {
        self.policy.sequenced
    }

    /// Whether the subscription has a follower (see [`DeadLetterPolicy::follows`]).
    pub(crate) fn follows(&self) -> bool {
        self.policy.follows()
    }

    pub(crate) fn log(&self) -> &dyn DeadLetterLog {
        &*self.log
    }

    /// The consumer now reads `partition`: the follower catches up before the consumer handles a
    /// record of a sequenced subscription, so a key another instance parked stays parked here.
    pub(crate) fn take(&self, topic: &TopicName, partition: Partition) {
        self.owned.lock().expect("owned lock").insert((topic.clone(), partition));
        if self.policy.sequenced {
            self.ready.send_replace(false);
            self.wake.notify_one();
        }
    }

    /// The consumer no longer reads `partition`.
    pub(crate) fn give_up(&self, topic: &TopicName, partition: Partition) {
        self.owned.lock().expect("owned lock").remove(&(topic.clone(), partition));
    }

    fn holds(&self, place: &Place) -> bool {
        self.owned.lock().expect("owned lock").contains(&(place.topic.clone(), place.partition))
    }

    /// The stage a record that failed waits for next, after `stage`; `None` to dead-letter it.
    pub(crate) fn next_stage(&self, failure: &Failure, stage: Option<u32>) -> Option<Stage> {
        if failure.kind != FailureKind::HandlerFailed {
            return None;
        }
        let number = stage.map_or(1, |n| n + 1);
        let wait = *self.policy.retry_stages.get(number as usize - 1)?;
        let due = chrono::Duration::from_std(wait)
            .ok()
            .and_then(|wait| Utc::now().checked_add_signed(wait))
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        Some(Stage { number, due })
    }

    /// Parks the record if its key has a letter open, and says whether it did: it is then done
    /// for the consumer. A record whose letter the book holds already (delivered again after a
    /// crash) is done too.
    pub(crate) async fn parks(
        &self,
        topic: &TopicName,
        record: &StoredRecord,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool, Stopped> {
        let Some(key) = record.key.as_deref().filter(|_| self.policy.sequenced) else { return Ok(false) };
        if !*self.ready.borrow() {
            let mut ready = self.ready.subscribe();
            tokio::select! {
                result = ready.wait_for(|ready| *ready) => { result.map_err(|_| Stopped)?; }
                _ = stop.wait_for(|stop| *stop) => return Err(Stopped),
            }
        }
        if !self.parked.load(Ordering::Acquire) {
            return Ok(false);
        }
        let group = &self.group;
        let place = Place { topic: topic.clone(), partition: record.partition, offset: record.offset };
        let mut book = self.book.lock().await;
        if book.get(&place.letter_id(group).to_string()).is_some() {
            return Ok(true);
        }
        let Some(head) = book.head(group, topic, key) else { return Ok(false) };
        let value = original_bytes(&record.payload);
        let original = Original { place: &place, key: Some(key), value: &value };
        let letter = letter::parked(self.max_message_bytes, group, &original, &head.id);
        tracing::info!(%topic, partition = %record.partition, offset = %record.offset, "Parked behind an earlier failed record of its key");
        self.append(&mut book, topic, record.key.clone(), letter, stop).await?;
        Ok(true)
    }

    /// Writes a letter and folds it.
    pub(crate) async fn write(
        &self,
        topic: &TopicName,
        key: Option<Arc<str>>,
        letter: EventSchema,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let mut book = self.book.lock().await;
        self.append(&mut book, topic, key, letter, stop).await
    }

    async fn append(
        &self,
        book: &mut Book,
        topic: &TopicName,
        key: Option<Arc<str>>,
        letter: EventSchema,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        letter_log::append(&*self.log, topic, key.clone(), letter.clone(), stop).await?;
        if !self.policy.follows() {
            return Ok(());
        }
        let id = letter.event_id.as_ref().map(ToString::to_string).unwrap_or_default();
        self.own.lock().expect("own lock").insert(id);
        // Folded now, as it will be read back: the dead-letter topic has one partition, and the
        // offset only orders it among records the fold reads later, which commute with it.
        let dlq = topic.dlq();
        let cursor = book.cursor(&dlq);
        let record = Record {
            topic: dlq,
            partition: Partition(0),
            offset: cursor,
            timestamp: Utc::now(),
            key,
            value: RecordValue::Event(Arc::new(letter)),
        };
        book.apply(&record);
        book.set_cursor(&record.topic, cursor);
        self.parked.store(book.any_parked(), Ordering::Release);
        self.wake.notify_one();
        Ok(())
    }

    /// Folds what was written to the dead-letter topics since the last read, skipping this
    /// process's own records, folded when written.
    pub(crate) async fn catch_up(&self) -> Result<(), BusError> {
        let mut book = self.book.lock().await;
        for dlq in &self.dlq_topics {
            // Bounded: a topic is read to its end as it was when the loop began, a batch at a time.
            let end = match self.log.end(dlq).await {
                Ok(end) => end,
                Err(BusError::UnknownTopic(_)) => continue,
                Err(error) => return Err(error),
            };
            for _ in 0..100_000 {
                let from = book.cursor(dlq);
                if from >= end {
                    break;
                }
                let records = match self.log.read(dlq, Partition(0), from, READ_BATCH).await {
                    Ok(records) => records,
                    Err(BusError::UnknownTopic(_)) => break,
                    Err(error) => return Err(error),
                };
                for record in &records {
                    let own = record.event().and_then(|e| e.event_id.as_ref()).map(ToString::to_string);
                    let mine = own.is_some_and(|id| self.own.lock().expect("own lock").remove(&id));
                    if mine {
                        book.set_cursor(dlq, Offset(record.offset.0 + 1));
                    } else {
                        book.apply(record);
                    }
                }
                if records.len() < READ_BATCH {
                    break;
                }
            }
        }
        self.parked.store(book.any_parked(), Ordering::Release);
        Ok(())
    }

    /// Says that the book holds what was written before the consumer last took partitions.
    pub(crate) fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    /// The first letter due now on a partition the consumer holds, if any.
    pub(crate) async fn next_due(&self) -> Option<Letter> {
        let book = self.book.lock().await;
        book.actionable(Utc::now())
            .into_iter()
            .find(|letter| letter.place.as_ref().is_some_and(|p| self.holds(p)))
            .cloned()
    }

    /// How long the follower may sleep: until the next retry due, at most its interval.
    pub(crate) async fn idle_for(&self) -> Duration {
        let book = self.book.lock().await;
        let interval = if book.is_empty() { IDLE_FOLLOW_INTERVAL } else { FOLLOW_INTERVAL };
        let until_due = book.next_due().map(|due| (due - Utc::now()).to_std().unwrap_or_default());
        until_due.map_or(interval, |d| d.min(interval))
    }

    /// Resolves when a letter of this process was written or a partition was taken.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }
}
