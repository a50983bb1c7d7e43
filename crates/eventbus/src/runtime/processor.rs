//! What happens to one message, on every backend: decode it, drop a recent repeat, park it behind
//! an earlier failed record of its key (in a sequenced subscription), call the handler with
//! bounded exponential backoff, and if it still fails, write its letter: a retry stage, or a dead
//! letter with the reason. Only a stop interrupts it, and then nothing is committed.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::watch;

use super::letter_log::{Stopped, original_bytes, wait_or_stop};
use super::letters::Letters;
use super::record::{Payload, StoredRecord};
use crate::bus::{GroupId, Handler, Message, RetryPolicy};
use crate::dlq::letter::{self, Failure, FailureKind, Original, Place};
use crate::envelope::{EventId, EventSchema};
use crate::topics::TopicName;
use crate::trace;

/// Takes each message of one subscription from delivery to done.
pub struct Processor {
    group: GroupId,
    retry: RetryPolicy,
    handler: Arc<dyn Handler>,
    max_message_bytes: usize,
    /// Shared by the records handled at once.
    dedup: Mutex<Dedup>,
    /// The subscription's dead letters: parked keys, retry stages, redrives.
    letters: Arc<Letters>,
}

impl Processor {
    pub(crate) fn new(
        group: GroupId,
        retry: RetryPolicy,
        handler: Arc<dyn Handler>,
        max_message_bytes: usize,
        dedup_window: usize,
        letters: Arc<Letters>,
    ) -> Self {
        let dedup = Mutex::new(Dedup { window: dedup_window.max(1), ..Dedup::default() });
        Self { group, retry, handler, max_message_bytes, dedup, letters }
    }

    fn dedup(&self) -> std::sync::MutexGuard<'_, Dedup> {
        self.dedup.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn group(&self) -> &GroupId {
        &self.group
    }

    pub(crate) fn letters(&self) -> &Arc<Letters> {
        &self.letters
    }

    /// The largest message the subscription takes; a larger one is dead-lettered unread.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Handles one record to the end: success, a parked record, or a stored letter.
    pub(crate) async fn process(
        &self,
        topic: &TopicName,
        record: StoredRecord,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let event = match self.decode(&record) {
            Ok(event) => event,
            Err(failure) => return self.fail(topic, &record, failure, 0, None, stop).await,
        };
        if let Some(id) = event.event_id.as_ref().filter(|id| self.dedup().contains(id)) {
            tracing::debug!(%topic, event_id = %id, "Duplicate event dropped");
            return Ok(());
        }
        if self.letters.parks(topic, &record, stop).await? {
            return Ok(());
        }
        let message = Message {
            topic: topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key.clone(),
            event,
        };
        match self.attempt(message, stop).await? {
            Ok(()) => Ok(()),
            Err(failure) => self.fail(topic, &record, failure, 0, None, stop).await,
        }
    }

    /// The record's event, or why it has none.
    pub(crate) fn decode(&self, record: &StoredRecord) -> Result<Arc<EventSchema>, Failure> {
        let undecodable = |error: String| Failure { kind: FailureKind::Undecodable, error, attempts: 0 };
        match &record.payload {
            Payload::Bytes(bytes) if bytes.len() > self.max_message_bytes => Err(Failure {
                kind: FailureKind::Oversized,
                error: format!(
                    "message of {} bytes exceeds the maximum of {} bytes",
                    bytes.len(),
                    self.max_message_bytes
                ),
                attempts: 0,
            }),
            Payload::Rejected { reason, .. } => Err(undecodable(reason.clone())),
            Payload::Event(event) | Payload::Encoded { event, .. } => Ok(Arc::clone(event)),
            Payload::Bytes(bytes) => {
                EventSchema::from_json(bytes).map(Arc::new).map_err(|e| undecodable(e.to_string()))
            }
        }
    }

    /// Calls the handler, retrying by the subscription's policy: `Ok(Ok)` when it succeeded (the
    /// event id is then remembered), `Ok(Err)` with the failure when it did not.
    pub(crate) async fn attempt(
        &self,
        message: Message,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Result<(), Failure>, Stopped> {
        let (topic, partition, offset) = (message.topic.clone(), message.partition, message.offset);
        let event_id = message.event.event_id.clone();
        let retry = self.retry;
        let mut attempt = 1;
        loop {
            let handling = trace::handling(&self.group, &message, self.handler.handle(message.clone()));
            let result = AssertUnwindSafe(handling).catch_unwind().await;
            let error = match result {
                Ok(Ok(())) => {
                    if let Some(id) = event_id {
                        self.dedup().insert(id);
                    }
                    return Ok(Ok(()));
                }
                Ok(Err(error)) if error.is_permanent() => {
                    tracing::warn!(%topic, %partition, %offset, %error, "Handler rejected the message; dead-lettering");
                    return Ok(Err(Failure {
                        kind: FailureKind::Rejected,
                        error: error.to_string(),
                        attempts: attempt,
                    }));
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
                tracing::warn!(%topic, %partition, %offset, attempts = attempt, %error, "Handler failed");
                return Ok(Err(Failure { kind: FailureKind::HandlerFailed, error, attempts: attempt }));
            }
            tracing::debug!(%topic, %offset, attempt, %error, "Handler failed; retrying");
            if wait_or_stop(stop, retry.backoff(attempt)).await {
                return Err(Stopped);
            }
            attempt += 1;
        }
    }

    /// Writes the letter of a record that failed, `redrive_count` redrives in, after retry stage
    /// `stage` (`None` for its first round): it waits for the next stage if there is one, and is
    /// dead-lettered otherwise. Retried until stored: the partition moves on only then.
    pub(crate) async fn fail(
        &self,
        topic: &TopicName,
        record: &StoredRecord,
        failure: Failure,
        redrive_count: u32,
        stage: Option<u32>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        let place = Place { topic: topic.clone(), partition: record.partition, offset: record.offset };
        let value = original_bytes(&record.payload);
        let original = Original { place: &place, key: record.key.as_deref(), value: &value };
        let next = self.letters.next_stage(&failure, stage);
        let letter = letter::failed(
            self.max_message_bytes,
            &self.group,
            &original,
            &failure,
            redrive_count,
            next,
            self.letters.sequenced(),
        );
        if next.is_none() {
            tracing::warn!(%topic, partition = %record.partition, offset = %record.offset, kind = failure.kind.as_str(), "Dead-lettered");
        }
        self.letters.write(topic, record.key.clone(), letter, stop).await
    }
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
