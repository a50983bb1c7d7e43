//! The follower of a subscription's dead-letter topics: it folds what others write there (an
//! operator's redrive or discard, another instance's letters) and acts on the letters that are
//! due, one at a time, on the partitions its consumer holds: a parked record whose turn came, a
//! redrive, a retry stage. A letter it handles again is read from its place in the source topic,
//! keeps its `event_id`, and carries its redrive count.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::letter_log::{Stopped, original_bytes, wait_or_stop};
use super::letters::Letters;
use super::processor::Processor;
use super::record::{Payload, StoredRecord};
use crate::bus::{BusError, Message, RecordValue};
use crate::dlq::book::{Letter, LetterState};
use crate::dlq::letter::{self, Failure, FailureKind, Original, Outcome};

/// Starts the follower of a subscription that has one.
pub(crate) fn spawn(processor: Arc<Processor>, stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    processor.letters().follows().then(|| tokio::spawn(follow(processor, stop)))
}

/// Folds what others write, and acts on the letters that are due, until the stop.
async fn follow(processor: Arc<Processor>, mut stop: watch::Receiver<bool>) {
    let letters = Arc::clone(processor.letters());
    while !*stop.borrow() {
        match letters.catch_up().await {
            Ok(()) => letters.mark_ready(),
            Err(error) => {
                tracing::warn!(group = %processor.group(), %error, "Cannot read the dead-letter topics; trying again");
                if wait_or_stop(&mut stop, STORAGE_RETRY_FOLLOW).await {
                    return;
                }
                continue;
            }
        }
        if act(&processor, &letters, &mut stop).await.is_err() {
            return;
        }
        let wait = letters.idle_for().await;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = letters.woken() => {}
            _ = stop.changed() => {}
        }
    }
}

/// The wait after a failed read of the dead-letter topics.
const STORAGE_RETRY_FOLLOW: Duration = Duration::from_millis(500);

/// Acts on every letter due now on the partitions held, one at a time, until none is left.
async fn act(processor: &Processor, letters: &Letters, stop: &mut watch::Receiver<bool>) -> Result<(), Stopped> {
    // Bounded: each pass resolves or re-letters one letter, and a letter that fails again is
    // no longer due (it waits for an operator or a later stage).
    for _ in 0..1_000_000 {
        let Some(letter) = letters.next_due().await else { return Ok(()) };
        handle(processor, letters, &letter, stop).await?;
    }
    Ok(())
}

/// Handles one due letter again: reads its original at its place and calls the handler.
async fn handle(
    processor: &Processor,
    letters: &Letters,
    letter: &Letter,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Stopped> {
    let place = letter.place.clone().expect("only letters with a place are due");
    let redrive_count = letter.redrive_count + u32::from(letter.state == LetterState::RedriveRequested);
    let read = loop {
        match letters.log().read(&place.topic, place.partition, place.offset, 1).await {
            Ok(read) => break read,
            // The topic or partition is gone: as missing as a record retention removed.
            Err(BusError::UnknownTopic(_) | BusError::UnknownPartition { .. }) => break Vec::new(),
            Err(error) => {
                tracing::warn!(%place, %error, "Cannot read a dead letter's original; trying again");
                if wait_or_stop(stop, STORAGE_RETRY_FOLLOW).await {
                    return Err(Stopped);
                }
            }
        }
    };
    let Some(original) = read.into_iter().find(|r| r.offset == place.offset) else {
        // Retention removed it, or its topic is gone: nothing can be handled again; an operator
        // discards the letter.
        let failure = Failure {
            kind: FailureKind::Missing,
            error: format!("the original at {place} is no longer retained"),
            attempts: 0,
        };
        let stored = StoredRecord {
            partition: place.partition,
            offset: place.offset,
            timestamp: Utc::now(),
            key: letter.key.as_deref().map(Arc::from),
            payload: Payload::Bytes(bytes::Bytes::new()),
        };
        return processor.fail(&place.topic, &stored, failure, redrive_count, None, stop).await;
    };
    let stored = StoredRecord {
        partition: original.partition,
        offset: original.offset,
        timestamp: original.timestamp,
        key: original.key.clone(),
        payload: match &original.value {
            RecordValue::Event(event) => Payload::Event(Arc::clone(event)),
            RecordValue::Invalid { bytes, reason } => {
                Payload::Rejected { bytes: bytes.clone(), reason: reason.clone() }
            }
        },
    };
    let event = match processor.decode(&stored) {
        Ok(event) => event,
        Err(failure) => return processor.fail(&place.topic, &stored, failure, redrive_count, None, stop).await,
    };
    let event = if redrive_count > 0 {
        let mut event = (*event).clone();
        event.metadata.insert("redrive_count".into(), redrive_count.into());
        Arc::new(event)
    } else {
        event
    };
    let message = Message {
        topic: place.topic.clone(),
        partition: place.partition,
        offset: place.offset,
        timestamp: original.timestamp,
        key: original.key.clone(),
        event,
    };
    let (outcome, stage) = match &letter.state {
        LetterState::RedriveRequested => (Outcome::Redriven, None),
        LetterState::Retrying { stage, .. } => (Outcome::Retried, Some(*stage)),
        _ => (Outcome::Released, None),
    };
    tracing::info!(%place, state = letter.state.name(), redrive_count, "Handling a dead letter again");
    match processor.attempt(message, stop).await? {
        Ok(()) => {
            let value = original_bytes(&stored.payload);
            let original = Original { place: &place, key: stored.key.as_deref(), value: &value };
            let resolved = letter::resolved(processor.group(), &original, outcome, redrive_count);
            letters.write(&place.topic, stored.key.clone(), resolved, stop).await
        }
        Err(failure) => processor.fail(&place.topic, &stored, failure, redrive_count, stage, stop).await,
    }
}
