//! The records of a dead-letter topic (`<topic>.dlq`, one partition, so one order): what failed,
//! what waits behind it, what operators asked for, and how each letter ended. Every record about
//! one letter carries its `letter_id` and the place of the original, so the topic alone is the
//! durable state of the dead letters, on every backend.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::bus::{GroupId, Offset, Partition};
use crate::envelope::{EventId, EventSchema, masked};
use crate::topics::TopicName;

/// A record handled and failed: the head of its key's sequence, or a letter alone.
pub const DEAD_LETTERED: &str = "dead_lettered";
/// A record failed after its attempts in place and waits, durably, for its next retry stage.
pub const RETRY_SCHEDULED: &str = "retry_scheduled";
/// A later record of a key whose earlier record failed: it waits behind that one, unhandled.
pub const PARKED: &str = "dead_letter_parked";
/// An operator asked for a letter to be handled again.
pub const REDRIVE_REQUESTED: &str = "dead_letter_redrive_requested";
/// An operator asked for a letter to be dropped: its key's next record goes on.
pub const DISCARD_REQUESTED: &str = "dead_letter_discard_requested";
/// A letter is done with: handled after a redrive, a retry or a release, or discarded.
pub const RESOLVED: &str = "dead_letter_resolved";

/// Characters of an original too large for its dead letter that the letter keeps.
const ORIGINAL_PREFIX_CHARS: usize = 512;

/// Where a record was read: with the group, what names its letter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Place {
    /// The topic it was read from.
    pub topic: TopicName,
    /// Its partition.
    pub partition: Partition,
    /// Its offset.
    pub offset: Offset,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

impl Place {
    /// The id of the letter of the record at this place in `group`: the same after a crash, so
    /// a letter written twice is one letter. It is the id dead letters have always had.
    pub fn letter_id(&self, group: &GroupId) -> EventId {
        EventId::derived(&format!("dlq/{group}/{self}"))
    }
}

/// Why a record could not be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Larger than `max_message_bytes`: never read.
    Oversized,
    /// Not an event.
    Undecodable,
    /// The handler refused it for good (a permanent error): its answer is final.
    Rejected,
    /// The handler failed on every attempt, or panicked.
    HandlerFailed,
    /// The original is no longer in its topic (retention removed it): it cannot be handled again.
    Missing,
}

impl FailureKind {
    /// The name in a letter's `error_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Undecodable => "undecodable",
            Self::Rejected => "rejected",
            Self::HandlerFailed => "handler_failed",
            Self::Missing => "missing",
        }
    }

    /// Whether a failure of this kind parks the later records of its key, in a sequenced
    /// subscription. Only a handler that failed does: the message is fine, its handling is not
    /// done, and nothing of its key may overtake it (nor may it when its original is gone: an
    /// operator decides). A rejection is the handler's final answer,
    /// and a value that is not an event has none to give.
    pub fn parks(self) -> bool {
        matches!(self, Self::HandlerFailed | Self::Missing)
    }
}

/// A failure: its kind, the error, and the calls of the handler it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The error, as the handler or the decoder gave it.
    pub error: String,
    /// Calls of the handler made (0 when it was never called).
    pub attempts: u32,
}

/// The original of a letter: the record's place, key and value.
pub struct Original<'a> {
    /// Where it was read.
    pub place: &'a Place,
    /// Its key.
    pub key: Option<&'a str>,
    /// Its value as stored (flat JSON when it is an event).
    pub value: &'a [u8],
}

/// How a record waits for its next retry stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    /// The stage, from 1.
    pub number: u32,
    /// When it is tried again.
    pub due: DateTime<Utc>,
}

/// How a letter ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Handled after an operator's redrive.
    Redriven,
    /// Handled in a retry stage.
    Retried,
    /// A parked record, handled once the records before it of its key were done.
    Released,
    /// Dropped by an operator.
    Discarded,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Redriven => "redriven",
            Self::Retried => "retried",
            Self::Released => "released",
            Self::Discarded => "discarded",
        }
    }
}

/// Who asked for an action, and from where: the audit of every operator action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The token's name and role, or the user at the console.
    pub who: String,
    /// The client's address, or the host the CLI ran on.
    pub address: String,
}

/// The fields every record of a letter carries.
fn common(letter: &EventId, original: &Original<'_>) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("letter_id".into(), json!(letter.to_string()));
    data.insert("original_topic".into(), json!(original.place.topic.as_str()));
    data.insert("original_partition".into(), json!(original.place.partition.0));
    data.insert("original_offset".into(), json!(original.place.offset.0));
    data.insert("original_key".into(), json!(original.key));
    data
}

fn record(event_type: &str, id: EventId, group: &GroupId, place: &Place, data: Map<String, Value>) -> EventSchema {
    EventSchema::new(event_type, "dead_letter", place.to_string(), data)
        .with_id(id)
        .with_source("eventbus")
        .with_metadata("group", group.as_str())
}

/// Adds the original, personal data masked as in the logs: the dead-letter topic is read by
/// operators and kept apart from the data it came from. The original, unmasked, stays at its
/// place in the source topic, which the letter names, and a redrive reads it there. An original
/// that does not fit in `max_bytes` keeps only its size and beginning.
fn with_original(
    max_bytes: usize,
    mut data: Map<String, Value>,
    original: &[u8],
    build: impl Fn(Map<String, Value>) -> EventSchema,
) -> EventSchema {
    let mut full = data.clone();
    let shown = match serde_json::from_slice::<EventSchema>(original) {
        Ok(event) => {
            let event = masked(&serde_json::to_value(event).unwrap_or(Value::Null));
            full.insert("original_event".into(), event.clone());
            event.to_string()
        }
        Err(_) => {
            let value = match serde_json::from_slice::<Value>(original) {
                Ok(json) => masked(&json).to_string(),
                Err(_) => String::from_utf8_lossy(original).into_owned(),
            };
            full.insert("original_value".into(), json!(value));
            value
        }
    };
    let full = build(full);
    if full.to_json().len() <= max_bytes {
        return full;
    }
    let prefix: String = shown.chars().take(ORIGINAL_PREFIX_CHARS).collect();
    data.insert("original_bytes".into(), json!(original.len()));
    data.insert("original_truncated".into(), json!(true));
    data.insert("original_prefix".into(), json!(prefix));
    build(data)
}

/// The letter of a record that failed: dead-lettered, or waiting for retry `stage`. The record's
/// id is derived from the letter, the redrive count and the stage, so writing it twice after a
/// crash is the same record.
pub(crate) fn failed(
    max_bytes: usize,
    group: &GroupId,
    original: &Original<'_>,
    failure: &Failure,
    redrive_count: u32,
    stage: Option<Stage>,
    sequenced: bool,
) -> EventSchema {
    let letter = original.place.letter_id(group);
    let mut data = common(&letter, original);
    data.insert("error_kind".into(), json!(failure.kind.as_str()));
    data.insert("error".into(), json!(failure.error));
    data.insert("attempts".into(), json!(failure.attempts));
    data.insert("redrive_count".into(), json!(redrive_count));
    data.insert("sequenced".into(), json!(sequenced && failure.kind.parks()));
    let (event_type, id) = match (stage, redrive_count) {
        (Some(stage), _) => {
            data.insert("stage".into(), json!(stage.number));
            data.insert("due_at".into(), json!(stage.due));
            (RETRY_SCHEDULED, EventId::derived(&format!("{letter}/redrive/{redrive_count}/stage/{}", stage.number)))
        }
        // The first letter of a place keeps the id letters have always had.
        (None, 0) => (DEAD_LETTERED, letter.clone()),
        (None, n) => (DEAD_LETTERED, EventId::derived(&format!("{letter}/redrive/{n}"))),
    };
    with_original(max_bytes, data, original.value, |data| record(event_type, id.clone(), group, original.place, data))
}

/// The letter of a record parked behind `behind`, the first unfinished letter of its key.
pub(crate) fn parked(max_bytes: usize, group: &GroupId, original: &Original<'_>, behind: &str) -> EventSchema {
    let letter = original.place.letter_id(group);
    let mut data = common(&letter, original);
    data.insert("behind".into(), json!(behind));
    data.insert("sequenced".into(), json!(true));
    let id = EventId::derived(&format!("{letter}/parked"));
    with_original(max_bytes, data, original.value, |data| record(PARKED, id.clone(), group, original.place, data))
}

/// The end of a letter.
pub(crate) fn resolved(group: &GroupId, original: &Original<'_>, outcome: Outcome, redrive_count: u32) -> EventSchema {
    let letter = original.place.letter_id(group);
    let mut data = common(&letter, original);
    data.insert("outcome".into(), json!(outcome.as_str()));
    data.insert("redrive_count".into(), json!(redrive_count));
    record(RESOLVED, EventId::new(), group, original.place, data)
}

/// An operator's request about a letter, with who asked and from where, and the letter's
/// original as the letter shows it (personal data masked).
pub(crate) fn request(
    event_type: &str,
    group: &GroupId,
    original: &Original<'_>,
    original_event: Option<&Value>,
    actor: &Actor,
) -> EventSchema {
    let letter = original.place.letter_id(group);
    let mut data = common(&letter, original);
    // The letter's masked original, for a consumer of the request (the bank rejects a
    // discarded command by its id).
    if let Some(event) = original_event.filter(|event| event.is_object()) {
        data.insert("original_event".into(), event.clone());
    }
    data.insert("actor".into(), json!(actor.who));
    data.insert("address".into(), json!(actor.address));
    record(event_type, EventId::new(), group, original.place, data)
}
