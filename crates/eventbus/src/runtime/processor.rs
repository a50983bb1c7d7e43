//! What happens to one message, on every backend: decode it, drop a recent repeat, call the
//! handler with bounded exponential backoff, and dead-letter it with the reason if it still
//! fails. Only a stop interrupts it, and then nothing is committed.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::record::{Payload, StoredRecord};
use crate::bus::{BusError, GroupId, Handler, Message, RetryPolicy};
use crate::envelope::masked;
use crate::envelope::{EventId, EventSchema};
use crate::topics::TopicName;

/// Event ids remembered per subscription to drop repeats.
/// The wait after a storage error before trying again.
pub(crate) const STORAGE_RETRY: Duration = Duration::from_millis(200);

/// Characters of an original too large for its dead letter that the letter keeps.
const ORIGINAL_PREFIX_CHARS: usize = 512;

/// The `event_type` of a dead letter.
pub const DEAD_LETTERED: &str = "dead_lettered";

/// The consumer was asked to stop before it finished the message; it will be delivered again.
pub struct Stopped;

/// Where dead letters go: `<topic>.dlq` on the same bus.
#[async_trait]
pub(crate) trait DeadLetterSink: Send + Sync + 'static {
    async fn dead_letter(&self, topic: &TopicName, key: Option<Arc<str>>, letter: EventSchema) -> Result<(), BusError>;
}

/// Waits `delay`; true if `stop` turned true meanwhile.
pub(crate) async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.changed() => {}
    }
    *stop.borrow()
}

/// Takes each message of one subscription from delivery to done.
pub struct Processor {
    group: GroupId,
    retry: RetryPolicy,
    handler: Arc<dyn Handler>,
    sink: Arc<dyn DeadLetterSink>,
    max_message_bytes: usize,
    /// Shared by the records handled at once.
    dedup: Mutex<Dedup>,
}

impl Processor {
    pub(crate) fn new(
        group: GroupId,
        retry: RetryPolicy,
        handler: Arc<dyn Handler>,
        sink: Arc<dyn DeadLetterSink>,
        max_message_bytes: usize,
        dedup_window: usize,
    ) -> Self {
        let dedup = Mutex::new(Dedup { window: dedup_window.max(1), ..Dedup::default() });
        Self { group, retry, handler, sink, max_message_bytes, dedup }
    }

    fn dedup(&self) -> std::sync::MutexGuard<'_, Dedup> {
        self.dedup.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The largest message the subscription takes; a larger one is dead-lettered unread.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Handles one record to the end: success, or a stored dead letter.
    pub(crate) async fn process(
        &self,
        topic: &TopicName,
        record: StoredRecord,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let event = match &record.payload {
            Payload::Bytes(bytes) if bytes.len() > self.max_message_bytes => {
                let error =
                    format!("message of {} bytes exceeds the maximum of {} bytes", bytes.len(), self.max_message_bytes);
                let letter = dead_letter(self.max_message_bytes, topic, &record, &self.group, "oversized", &error, 0);
                return self.send_dead_letter(topic, &record, letter, stop).await;
            }
            Payload::Rejected { reason, .. } => {
                let letter = dead_letter(self.max_message_bytes, topic, &record, &self.group, "undecodable", reason, 0);
                return self.send_dead_letter(topic, &record, letter, stop).await;
            }
            Payload::Event(event) | Payload::Encoded { event, .. } => Arc::clone(event),
            Payload::Bytes(bytes) => match EventSchema::from_json(bytes) {
                Ok(event) => Arc::new(event),
                Err(error) => {
                    let letter = dead_letter(
                        self.max_message_bytes,
                        topic,
                        &record,
                        &self.group,
                        "undecodable",
                        &error.to_string(),
                        0,
                    );
                    return self.send_dead_letter(topic, &record, letter, stop).await;
                }
            },
        };
        if let Some(id) = event.event_id.as_ref().filter(|id| self.dedup().contains(id)) {
            tracing::debug!(%topic, event_id = %id, "Duplicate event dropped");
            return Ok(());
        }
        let message = Message {
            topic: topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key.clone(),
            event: Arc::clone(&event),
        };
        let retry = self.retry;
        let mut attempt = 1;
        loop {
            let result = AssertUnwindSafe(self.handler.handle(message.clone())).catch_unwind().await;
            let error = match result {
                Ok(Ok(())) => {
                    if let Some(id) = &event.event_id {
                        self.dedup().insert(id.clone());
                    }
                    break;
                }
                Ok(Err(error)) if error.is_permanent() => {
                    tracing::warn!(%topic, partition = %record.partition, offset = %record.offset, %error, "Handler rejected the message; dead-lettering");
                    let letter = dead_letter(
                        self.max_message_bytes,
                        topic,
                        &record,
                        &self.group,
                        "rejected",
                        &error.to_string(),
                        attempt,
                    );
                    self.send_dead_letter(topic, &record, letter, stop).await?;
                    break;
                }
                Ok(Err(error)) => error.to_string(),
                Err(panic) => format!("handler panicked: {}", panic_message(&*panic)),
            };
            if *stop.borrow() {
                // A handler that fails while the consumer stops (often because of the stop) is not
                // dead-lettered: the message is delivered again after a restart.
                return Err(Stopped);
            }
            if attempt >= retry.max_attempts.max(1) {
                tracing::warn!(%topic, partition = %record.partition, offset = %record.offset, attempts = attempt, %error, "Handler failed; dead-lettering");
                let letter =
                    dead_letter(self.max_message_bytes, topic, &record, &self.group, "handler_failed", &error, attempt);
                self.send_dead_letter(topic, &record, letter, stop).await?;
                break;
            }
            tracing::debug!(%topic, offset = %record.offset, attempt, %error, "Handler failed; retrying");
            if wait_or_stop(stop, retry.backoff(attempt)).await {
                return Err(Stopped);
            }
            attempt += 1;
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
    ) -> Result<(), Stopped> {
        loop {
            match self.sink.dead_letter(topic, record.key.clone(), letter.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::error!(%topic, offset = %record.offset, %error, "Dead-letter write failed; retrying");
                    if wait_or_stop(stop, STORAGE_RETRY).await {
                        return Err(Stopped);
                    }
                }
            }
        }
    }
}

/// The dead letter for a record: the reason, where it came from, and the original message.
/// Its id is derived from the record's place, so writing it twice (after a crash) is detectable.
fn dead_letter(
    max_bytes: usize,
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
    let original = match &record.payload {
        Payload::Event(event) => event.to_json(),
        Payload::Encoded { json: bytes, .. } | Payload::Bytes(bytes) | Payload::Rejected { bytes, .. } => {
            bytes.to_vec()
        }
    };
    let letter = |data| {
        EventSchema::new(DEAD_LETTERED, "dead_letter", place.clone(), data)
            .with_id(EventId::derived(&format!("dlq/{}/{place}", group)))
            .with_source("eventbus")
            .with_metadata("group", group.as_str())
    };
    // Personal data is masked, as in the logs: the dead-letter topic is read by operators and
    // kept apart from the data it came from. The original, unmasked, stays at its place in the
    // source topic, which the letter names.
    let mut full = data.clone();
    let shown = match serde_json::from_slice::<EventSchema>(&original) {
        Ok(event) => {
            let event = masked(&serde_json::to_value(event).unwrap_or(Value::Null));
            full.insert("original_event".into(), event.clone());
            event.to_string()
        }
        Err(_) => {
            let value = match serde_json::from_slice::<Value>(&original) {
                Ok(json) => masked(&json).to_string(),
                Err(_) => String::from_utf8_lossy(&original).into_owned(),
            };
            full.insert("original_value".into(), json!(value));
            value
        }
    };
    let full = letter(full);
    if full.to_json().len() <= max_bytes {
        return full;
    }
    // The original does not fit in a dead letter: keep its size and beginning; the whole of it
    // stays at its place in the source topic.
    let prefix: String = shown.chars().take(ORIGINAL_PREFIX_CHARS).collect();
    data.insert("original_bytes".into(), json!(original.len()));
    data.insert("original_truncated".into(), json!(true));
    data.insert("original_prefix".into(), json!(prefix));
    letter(data)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// The last `window` event ids handled.
#[derive(Default)]
struct Dedup {
    window: usize,
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
            if self.order.len() > self.window
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_window_remembers_the_last_ids_it_is_configured_for() {
        // Given a window of two ids
        let mut dedup = Dedup { window: 2, ..Dedup::default() };
        let [a, b, c] = ["a", "b", "c"].map(|id| id.parse::<EventId>().unwrap());
        // When three are handled
        for id in [&a, &b, &c] {
            dedup.insert(id.clone());
        }
        // Then the oldest is forgotten and the last two are remembered, and no more are kept
        assert!(!dedup.contains(&a) && dedup.contains(&b) && dedup.contains(&c));
        assert_eq!((dedup.seen.len(), dedup.order.len()), (2, 2));
    }
}
