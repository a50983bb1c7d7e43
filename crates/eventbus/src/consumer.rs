//! The consumer runtime: reads partitions in order, calls the handler, retries with bounded
//! exponential backoff, dead-letters what still fails, drops recent repeats, and commits offsets
//! only after the handler is done with a message.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::bus::{BusError, GroupId, Handler, Message, Offset, Partition, Subscription};
use crate::envelope::{EventId, EventSchema};
use crate::local::Inner;
use crate::storage::{Payload, Storage, StoredRecord};
use crate::topics::TopicName;

/// Records read from one partition at a time.
const BATCH: usize = 512;
/// Event ids remembered per subscription to drop repeats.
const DEDUP_WINDOW: usize = 100_000;
/// The wait after a storage error before trying again.
const STORAGE_RETRY: Duration = Duration::from_millis(200);

/// The `event_type` of a dead letter.
pub const DEAD_LETTERED: &str = "dead_lettered";

/// Why a consumer gave up on the message it was handling.
enum Interrupted {
    /// `stop` was called; the message will be delivered again after a restart.
    Stopped,
}

struct Cursor {
    topic: TopicName,
    partition: Partition,
    next: Offset,
}

/// Runs one subscription until `stop` turns true.
pub(crate) async fn run<S: Storage>(
    inner: Arc<Inner<S>>,
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let group = subscription.group.clone();
    let mut consumer = Consumer { inner, subscription, handler, dedup: Dedup::default() };
    let mut cursors = loop {
        match consumer.cursors().await {
            Ok(cursors) => break cursors,
            Err(error) => {
                tracing::error!(%group, %error, "Cannot resolve start offsets; retrying");
                if wait_or_stop(&mut stop, STORAGE_RETRY).await {
                    return;
                }
            }
        }
    };
    tracing::info!(%group, partitions = cursors.len(), "Consumer started");
    let mut changes = consumer.inner.storage.changes();
    let poll = consumer.inner.storage.poll_interval();
    while !*stop.borrow() {
        changes.borrow_and_update();
        let mut progressed = false;
        for cursor in &mut cursors {
            match consumer.poll(cursor, &mut stop).await {
                Ok(n) => progressed |= n > 0,
                Err(Interrupted::Stopped) => break,
            }
        }
        if !progressed {
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
    tracing::info!(%group, "Consumer stopped");
}

/// Waits `delay`; true if `stop` turned true meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.changed() => {}
    }
    *stop.borrow()
}

struct Consumer<S> {
    inner: Arc<Inner<S>>,
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    dedup: Dedup,
}

impl<S: Storage> Consumer<S> {
    async fn cursors(&self) -> Result<Vec<Cursor>, BusError> {
        let mut cursors = Vec::new();
        for topic in &self.subscription.topics {
            let positions = self.inner.resolve(&self.subscription.group, topic, self.subscription.start).await?;
            cursors.extend(positions.into_iter().map(|(partition, next)| Cursor {
                topic: topic.clone(),
                partition,
                next,
            }));
        }
        Ok(cursors)
    }

    /// Handles the next batch of one partition and commits it. Returns how many were handled.
    async fn poll(&mut self, cursor: &mut Cursor, stop: &mut watch::Receiver<bool>) -> Result<usize, Interrupted> {
        let read = self.inner.storage.read(&cursor.topic, cursor.partition, cursor.next, BATCH).await;
        let records = match read {
            Ok(records) => records,
            Err(error) => {
                tracing::error!(topic = %cursor.topic, partition = %cursor.partition, %error, "Read failed; retrying");
                wait_or_stop(stop, STORAGE_RETRY).await;
                return Ok(0);
            }
        };
        let Some(first) = records.first() else { return Ok(0) };
        if first.offset > cursor.next {
            // Retention removed what we had not read yet; carry on from the log start, as Kafka's
            // auto.offset.reset=earliest does.
            tracing::warn!(topic = %cursor.topic, partition = %cursor.partition, from = %cursor.next, to = %first.offset, "Offsets expired by retention were skipped");
        }
        let mut handled = 0;
        let mut outcome = Ok(());
        for record in records {
            let offset = record.offset;
            if let Err(stopped) = self.process(&cursor.topic, record, stop).await {
                outcome = Err(stopped);
                break;
            }
            cursor.next = Offset(offset.0 + 1);
            handled += 1;
        }
        if handled > 0 {
            self.commit(cursor, stop).await;
        }
        outcome.map(|()| handled)
    }

    async fn commit(&self, cursor: &Cursor, stop: &mut watch::Receiver<bool>) {
        let group = &self.subscription.group;
        loop {
            match self.inner.storage.commit(group, &cursor.topic, vec![(cursor.partition, cursor.next)]).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(%group, topic = %cursor.topic, %error, "Offset commit failed; retrying");
                    // On stop the commit is abandoned: the messages will be delivered again.
                    if wait_or_stop(stop, STORAGE_RETRY).await {
                        return;
                    }
                }
            }
        }
    }

    async fn process(
        &mut self,
        topic: &TopicName,
        record: StoredRecord,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Interrupted> {
        let event = match &record.payload {
            Payload::Event(event) => Arc::clone(event),
            Payload::Bytes(bytes) => match EventSchema::from_json(bytes) {
                Ok(event) => Arc::new(event),
                Err(error) => {
                    let letter =
                        dead_letter(topic, &record, &self.subscription.group, "undecodable", &error.to_string(), 0);
                    return self.send_dead_letter(topic, &record, letter, stop).await;
                }
            },
        };
        if let Some(id) = event.event_id.as_ref().filter(|id| self.dedup.contains(id)) {
            tracing::debug!(%topic, event_id = %id, "Duplicate event dropped");
            return Ok(());
        }
        let message = Message {
            topic: topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key.as_deref().map(str::to_owned),
            event: Arc::clone(&event),
        };
        let retry = self.subscription.retry;
        let mut attempt = 1;
        loop {
            let result = AssertUnwindSafe(self.handler.handle(message.clone())).catch_unwind().await;
            let error = match result {
                Ok(Ok(())) => break,
                Ok(Err(error)) => error.to_string(),
                Err(panic) => format!("handler panicked: {}", panic_message(&*panic)),
            };
            if *stop.borrow() {
                // A handler that fails while the consumer stops (often because of the stop) is not
                // dead-lettered: the message is delivered again after a restart.
                return Err(Interrupted::Stopped);
            }
            if attempt >= retry.max_attempts.max(1) {
                tracing::warn!(%topic, partition = %record.partition, offset = %record.offset, attempts = attempt, %error, "Handler failed; dead-lettering");
                let letter = dead_letter(topic, &record, &self.subscription.group, "handler_failed", &error, attempt);
                self.send_dead_letter(topic, &record, letter, stop).await?;
                break;
            }
            tracing::debug!(%topic, offset = %record.offset, attempt, %error, "Handler failed; retrying");
            if wait_or_stop(stop, retry.backoff(attempt)).await {
                return Err(Interrupted::Stopped);
            }
            attempt += 1;
        }
        if let Some(id) = &event.event_id {
            self.dedup.insert(id.clone());
        }
        Ok(())
    }

    /// Appends the dead letter, retrying until it is stored: the partition moves on only then.
    async fn send_dead_letter(
        &self,
        topic: &TopicName,
        record: &StoredRecord,
        letter: EventSchema,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Interrupted> {
        loop {
            let sent = async {
                let dlq = self.inner.ensure_dlq(topic).await?;
                self.inner.append_event(&dlq, record.key.clone(), letter.clone()).await
            };
            match sent.await {
                Ok(_) => return Ok(()),
                Err(error) => {
                    tracing::error!(%topic, offset = %record.offset, %error, "Dead-letter write failed; retrying");
                    if wait_or_stop(stop, STORAGE_RETRY).await {
                        return Err(Interrupted::Stopped);
                    }
                }
            }
        }
    }
}

/// The dead letter for a record: the reason, where it came from, and the original message.
/// Its id is derived from the record's place, so writing it twice (after a crash) is detectable.
fn dead_letter(
    topic: &TopicName,
    record: &StoredRecord,
    group: &GroupId,
    kind: &str,
    error: &str,
    attempts: u32,
) -> EventSchema {
    let place = format!("{topic}/{}/{}", record.partition, record.offset);
    let mut data = Map::new();
    data.insert("original_topic".into(), json!(topic.as_str()));
    data.insert("original_partition".into(), json!(record.partition.0));
    data.insert("original_offset".into(), json!(record.offset.0));
    data.insert("original_key".into(), json!(record.key.as_deref()));
    data.insert("error_kind".into(), json!(kind));
    data.insert("error".into(), json!(error));
    data.insert("attempts".into(), json!(attempts));
    match &record.payload {
        Payload::Event(event) => {
            data.insert("original_event".into(), serde_json::to_value(&**event).unwrap_or(Value::Null));
        }
        Payload::Bytes(bytes) => match serde_json::from_slice::<EventSchema>(bytes) {
            Ok(event) => {
                data.insert("original_event".into(), serde_json::to_value(event).unwrap_or(Value::Null));
            }
            Err(_) => {
                data.insert("original_value".into(), json!(String::from_utf8_lossy(bytes)));
            }
        },
    }
    EventSchema::new(DEAD_LETTERED, "dead_letter", place.clone(), data)
        .with_id(EventId::derived(&format!("dlq/{}/{place}", group)))
        .with_source("eventbus")
        .with_metadata("group", group.as_str())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// The last `DEDUP_WINDOW` event ids handled.
#[derive(Default)]
struct Dedup {
    seen: HashSet<EventId, foldhash::fast::RandomState>,
    order: VecDeque<EventId>,
}

impl Dedup {
    fn contains(&self, id: &EventId) -> bool {
        self.seen.contains(id)
    }

    fn insert(&mut self, id: EventId) {
        if self.seen.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > DEDUP_WINDOW
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }
}
