//! The state of the dead letters, folded from the records of dead-letter topics in their order.
//!
//! - A letter is open from its first record until a `dead_letter_resolved` or a discard.
//! - In a sequenced subscription, the letters of one key form a sequence in the order they were
//!   written: the first open one is its head, and the key's later records are parked behind it.
//!   A key is free again when its sequence is empty.
//! - Folding the same records again gives the same state: the fold is what every instance, and
//!   every restart, rebuilds from the topic.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::letter::{
    DEAD_LETTERED, DISCARD_REQUESTED, Outcome, PARKED, Place, REDRIVE_REQUESTED, RESOLVED, RETRY_SCHEDULED, Stage,
};
use crate::bus::{GroupId, Offset, Partition, Record};
use crate::envelope::EventSchema;
use crate::topics::TopicName;

/// Where a letter stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LetterState {
    /// Failed; waits for an operator.
    Failed,
    /// Failed after its attempts in place; tried again at `due`.
    Retrying {
        /// The stage, from 1.
        stage: u32,
        /// When it is tried again.
        due: DateTime<Utc>,
    },
    /// Not handled yet: it waits behind an earlier letter of its key.
    Parked {
        /// The letter it was parked behind.
        behind: String,
    },
    /// An operator asked for it to be handled again; the subscription will.
    RedriveRequested,
    /// Done with.
    Resolved {
        /// How it ended.
        outcome: Outcome,
    },
}

impl LetterState {
    /// The state's name, as `--state` filters take it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Retrying { .. } => "retrying",
            Self::Parked { .. } => "parked",
            Self::RedriveRequested => "redrive_requested",
            Self::Resolved { .. } => "resolved",
        }
    }

    /// Whether the letter is done with.
    pub fn is_resolved(&self) -> bool {
        matches!(self, Self::Resolved { .. })
    }
}

/// One entry of a letter's history: a record about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// The record's `event_type`.
    pub event: String,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Its offset in the dead-letter topic.
    pub dlq_offset: Offset,
    /// Who asked, for an operator's request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// From where, for an operator's request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The error, for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A dead letter as the fold knows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Letter {
    /// The letter's id: the same for every record about it.
    pub id: String,
    /// The dead-letter topic that holds it.
    pub dlq_topic: TopicName,
    /// The offset there of its first record.
    pub dlq_offset: Offset,
    /// The group whose subscription failed on it; `None` for a letter written outside one (the
    /// store's relay).
    pub group: Option<GroupId>,
    /// Where the original is, if the letter names it.
    pub place: Option<Place>,
    /// The original's key.
    pub key: Option<String>,
    /// Where it stands.
    #[serde(flatten)]
    pub state: LetterState,
    /// Whether it is part of its key's sequence (later records of the key wait behind it).
    pub sequenced: bool,
    /// The kind of the last failure (`handler_failed`, `rejected`, `undecodable`, `oversized`);
    /// empty for a parked record never handled.
    pub error_kind: String,
    /// The last error.
    pub error: String,
    /// Calls of the handler in the last round.
    pub attempts: u32,
    /// How many times it was redriven.
    pub redrive_count: u32,
    /// The original's `event_type`, if it is an event.
    pub event_type: Option<String>,
    /// The original's `event_id`, if it is an event with one.
    pub event_id: Option<String>,
    /// When the first record about it was written.
    pub first_at: DateTime<Utc>,
    /// When the last one was.
    pub last_at: DateTime<Utc>,
    /// The original as the letter shows it: an event or a value, personal data masked.
    pub original: Option<Value>,
    /// Every record about it, in order: failures, requests with who and from where, outcome.
    /// Kept in an operator's book only.
    pub history: Vec<HistoryEntry>,
    /// Its place in the book's order.
    #[serde(skip)]
    seq: u64,
}

impl Letter {
    /// Whether a redrive applies: it failed, or waits for a retry stage.
    pub fn can_redrive(&self) -> bool {
        matches!(self.state, LetterState::Failed | LetterState::Retrying { .. }) && self.place.is_some()
    }

    /// The letter without its original and history: a row of a list.
    pub fn summary(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("original");
            object.remove("history");
        }
        value
    }

    /// The stage it waits for, if it does.
    pub fn stage(&self) -> Option<Stage> {
        match self.state {
            LetterState::Retrying { stage, due } => Some(Stage { number: stage, due }),
            _ => None,
        }
    }
}

/// The sequence of one key in one group and topic.
type SequenceKey = (GroupId, TopicName, String);

/// The dead letters of some dead-letter topics.
#[derive(Debug, Default)]
pub struct Book {
    /// Only records of this group are folded; `None` folds them all.
    only: Option<GroupId>,
    /// Whether resolved letters are kept (an operator's view) or forgotten (a running
    /// subscription, whose memory must stay bounded by what is open).
    keep_resolved: bool,
    letters: HashMap<String, Letter>,
    /// Letters in the order they were first folded.
    order: BTreeMap<u64, String>,
    folded: u64,
    sequences: HashMap<SequenceKey, VecDeque<String>>,
    /// The next offset to fold, per dead-letter topic.
    cursors: HashMap<TopicName, Offset>,
}

fn text<'a>(event: &'a EventSchema, key: &str) -> Option<&'a str> {
    event.data.get(key).and_then(Value::as_str)
}

fn number(event: &EventSchema, key: &str) -> Option<u64> {
    event.data.get(key).and_then(Value::as_u64)
}

impl Book {
    /// A book of every letter, resolved ones included, for operators.
    pub fn all() -> Self {
        Self { keep_resolved: true, ..Self::default() }
    }

    /// A book of the open letters of every group: what is open now, in bounded memory.
    pub fn open_only() -> Self {
        Self::default()
    }

    /// A book of the open letters of `group`, for its subscription.
    pub fn of_group(group: GroupId) -> Self {
        Self { only: Some(group), ..Self::default() }
    }

    /// The next offset to fold in `dlq`.
    pub fn cursor(&self, dlq: &TopicName) -> Offset {
        self.cursors.get(dlq).copied().unwrap_or_default()
    }

    /// Folds the next record of a dead-letter topic (records of partition 0, in order).
    pub fn apply(&mut self, record: &Record) {
        let cursor = self.cursors.entry(record.topic.clone()).or_default();
        *cursor = (*cursor).max(Offset(record.offset.0 + 1));
        let Some(event) = record.event() else { return };
        let group = event.metadata.get("group").and_then(Value::as_str).and_then(|g| GroupId::new(g).ok());
        if self.only.is_some() && self.only != group {
            return;
        }
        let Some(id) =
            text(event, "letter_id").map(str::to_owned).or_else(|| event.event_id.as_ref().map(ToString::to_string))
        else {
            return;
        };
        let at = event.timestamp.unwrap_or(record.timestamp);
        let kind = event.event_type.as_str();
        let mut entry = HistoryEntry {
            event: kind.to_owned(),
            at,
            dlq_offset: record.offset,
            actor: text(event, "actor").map(str::to_owned),
            address: text(event, "address").map(str::to_owned),
            error: text(event, "error").map(str::to_owned),
        };
        match kind {
            DEAD_LETTERED | RETRY_SCHEDULED | PARKED => {
                let state = match kind {
                    DEAD_LETTERED => LetterState::Failed,
                    RETRY_SCHEDULED => {
                        let due = event.data.get("due_at").and_then(|v| serde_json::from_value(v.clone()).ok());
                        LetterState::Retrying {
                            stage: number(event, "stage").unwrap_or(1) as u32,
                            due: due.unwrap_or(at),
                        }
                    }
                    _ => LetterState::Parked { behind: text(event, "behind").unwrap_or_default().to_owned() },
                };
                let is_new = !self.letters.contains_key(&id);
                let letter =
                    self.letters.entry(id.clone()).or_insert_with(|| new_letter(&id, record, event, group, at));
                // A resolved letter that fails again (its record delivered again after a crash)
                // is open again, at the end of its key's sequence.
                letter.state = state;
                letter.last_at = at;
                if kind != PARKED {
                    letter.error_kind = text(event, "error_kind").unwrap_or_default().to_owned();
                    letter.error = text(event, "error").unwrap_or_default().to_owned();
                    letter.attempts = number(event, "attempts").unwrap_or_default() as u32;
                    letter.redrive_count = number(event, "redrive_count").unwrap_or_default() as u32;
                } else {
                    entry.error = None;
                }
                // A letter leaves its key's sequence when it fails in a way that does not park (a
                // released record the handler rejects); the key's next record goes on.
                let sequenced = event.data.get("sequenced").and_then(Value::as_bool).unwrap_or(false);
                if letter.sequenced && !sequenced {
                    let key = letter.sequence_key();
                    letter.sequenced = false;
                    if let Some(key) = key {
                        remove_from(&mut self.sequences, &key, &id);
                    }
                }
                letter.sequenced = sequenced;
                if self.keep_resolved {
                    letter.history.push(entry);
                }
                let sequence = letter.sequence_key();
                if is_new {
                    self.folded += 1;
                    letter.seq = self.folded;
                    self.order.insert(self.folded, id.clone());
                }
                if let Some(sequence) = sequence {
                    let queue = self.sequences.entry(sequence).or_default();
                    if !queue.contains(&id) {
                        queue.push_back(id);
                    }
                }
            }
            REDRIVE_REQUESTED | DISCARD_REQUESTED | RESOLVED => {
                let Some(letter) = self.letters.get_mut(&id) else { return };
                letter.last_at = at;
                if self.keep_resolved {
                    letter.history.push(entry);
                }
                match kind {
                    REDRIVE_REQUESTED if letter.can_redrive() => letter.state = LetterState::RedriveRequested,
                    REDRIVE_REQUESTED => {}
                    DISCARD_REQUESTED if !letter.state.is_resolved() => {
                        letter.state = LetterState::Resolved { outcome: Outcome::Discarded };
                        self.close(&id);
                    }
                    DISCARD_REQUESTED => {}
                    _ => {
                        let outcome = event
                            .data
                            .get("outcome")
                            .and_then(|v| serde_json::from_value(v.clone()).ok())
                            .unwrap_or(Outcome::Redriven);
                        letter.redrive_count =
                            number(event, "redrive_count").unwrap_or(u64::from(letter.redrive_count)) as u32;
                        letter.state = LetterState::Resolved { outcome };
                        self.close(&id);
                    }
                }
            }
            _ => {}
        }
    }

    /// Takes a resolved letter out of its sequence, and out of the book unless resolved letters
    /// are kept.
    fn close(&mut self, id: &str) {
        let Some(letter) = self.letters.get(id) else { return };
        if let Some(sequence) = letter.sequence_key() {
            remove_from(&mut self.sequences, &sequence, id);
        }
        if !self.keep_resolved {
            let letter = self.letters.remove(id).expect("looked up above");
            self.order.remove(&letter.seq);
        }
    }

    /// Sets the next offset to fold in `dlq`.
    pub(crate) fn set_cursor(&mut self, dlq: &TopicName, next: Offset) {
        self.cursors.insert(dlq.clone(), next);
    }

    /// A letter by id.
    pub fn get(&self, id: &str) -> Option<&Letter> {
        self.letters.get(id)
    }

    /// Every letter, in the order of their first record.
    pub fn letters(&self) -> impl Iterator<Item = &Letter> {
        self.order.values().filter_map(|id| self.letters.get(id))
    }

    /// How many letters are open, by dead-letter topic and state name.
    pub fn open_by_state(&self) -> BTreeMap<(TopicName, &'static str), u64> {
        let mut counts = BTreeMap::new();
        for letter in self.letters.values().filter(|l| !l.state.is_resolved()) {
            *counts.entry((letter.dlq_topic.clone(), letter.state.name())).or_default() += 1;
        }
        counts
    }

    /// Whether the book holds no letter.
    pub fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }

    /// Whether any key is parked.
    pub fn any_parked(&self) -> bool {
        !self.sequences.is_empty()
    }

    /// The head of the sequence of `key` in `group` and `topic`, if the key is parked.
    pub fn head(&self, group: &GroupId, topic: &TopicName, key: &str) -> Option<&Letter> {
        let sequence = (group.clone(), topic.clone(), key.to_owned());
        self.sequences.get(&sequence)?.front().and_then(|id| self.letters.get(id))
    }

    /// The letters a subscription acts on now: each sequence's head if it is parked, redriven or
    /// due for a retry, and every letter outside a sequence that is redriven or due. In the
    /// order of their first record.
    pub fn actionable(&self, now: DateTime<Utc>) -> Vec<&Letter> {
        let heads: std::collections::HashSet<&String> = self.sequences.values().filter_map(VecDeque::front).collect();
        self.letters()
            .filter(|letter| !letter.sequenced || heads.contains(&letter.id))
            .filter(|letter| match &letter.state {
                LetterState::Parked { .. } | LetterState::RedriveRequested => true,
                LetterState::Retrying { due, .. } => *due <= now,
                _ => false,
            })
            .collect()
    }

    /// The earliest retry due, if any letter waits for one.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.letters
            .values()
            .filter_map(|letter| match letter.state {
                LetterState::Retrying { due, .. } => Some(due),
                _ => None,
            })
            .min()
    }
}

impl Letter {
    fn sequence_key(&self) -> Option<SequenceKey> {
        match (self.sequenced, &self.group, &self.place, &self.key) {
            (true, Some(group), Some(place), Some(key)) => Some((group.clone(), place.topic.clone(), key.clone())),
            _ => None,
        }
    }
}

fn remove_from(sequences: &mut HashMap<SequenceKey, VecDeque<String>>, sequence: &SequenceKey, id: &str) {
    if let Some(queue) = sequences.get_mut(sequence) {
        queue.retain(|other| other != id);
        if queue.is_empty() {
            sequences.remove(sequence);
        }
    }
}

fn new_letter(id: &str, record: &Record, event: &EventSchema, group: Option<GroupId>, at: DateTime<Utc>) -> Letter {
    let place = (|| {
        let topic = TopicName::new(text(event, "original_topic")?).ok()?;
        let partition = Partition(u32::try_from(number(event, "original_partition")?).ok()?);
        Some(Place { topic, partition, offset: Offset(number(event, "original_offset")?) })
    })();
    let original = event.data.get("original_event").or_else(|| event.data.get("original_value")).cloned();
    let field = |name: &str| {
        event.data.get("original_event").and_then(|o| o.get(name)).and_then(Value::as_str).map(str::to_owned)
    };
    Letter {
        id: id.to_owned(),
        dlq_topic: record.topic.clone(),
        dlq_offset: record.offset,
        group,
        place,
        key: text(event, "original_key").map(str::to_owned),
        state: LetterState::Failed,
        sequenced: false,
        error_kind: String::new(),
        error: String::new(),
        attempts: 0,
        redrive_count: 0,
        event_type: field("event_type").or_else(|| text(event, "original_event_type").map(str::to_owned)),
        event_id: field("event_id").or_else(|| text(event, "original_event_id").map(str::to_owned)),
        first_at: at,
        last_at: at,
        original,
        history: Vec::new(),
        seq: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::bus::RecordValue;
    use crate::dlq::letter::{self, Actor, Failure, FailureKind, Original};

    fn place(offset: u64) -> Place {
        Place { topic: TopicName::new("work").unwrap(), partition: Partition(0), offset: Offset(offset) }
    }

    /// The records of one story: event 0 of acc_1 fails, 1 and 2 park behind it, an operator
    /// redrives 0, and the three are resolved.
    fn story() -> Vec<EventSchema> {
        let group = GroupId::new("bank").unwrap();
        fn original(place: &Place) -> Original<'_> {
            Original { place, key: Some("acc_1"), value: b"{}" }
        }
        let (p0, p1, p2) = (place(0), place(1), place(2));
        let failure = Failure { kind: FailureKind::HandlerFailed, error: "down".into(), attempts: 3 };
        let head = p0.letter_id(&group).to_string();
        let actor = Actor { who: "ops".into(), address: "127.0.0.1".into() };
        vec![
            letter::failed(1 << 20, &group, &original(&p0), &failure, 0, None, true),
            letter::parked(1 << 20, &group, &original(&p1), &head),
            letter::parked(1 << 20, &group, &original(&p2), &head),
            letter::request(letter::REDRIVE_REQUESTED, &group, &original(&p0), None, &actor),
            letter::resolved(&group, &original(&p0), Outcome::Redriven, 1),
            letter::resolved(&group, &original(&p1), Outcome::Released, 0),
        ]
    }

    fn fold(events: &[EventSchema], book: &mut Book) {
        for (offset, event) in events.iter().enumerate() {
            let record = Record {
                topic: TopicName::new("work.dlq").unwrap(),
                partition: Partition(0),
                offset: Offset(offset as u64),
                timestamp: Utc::now(),
                key: Some(Arc::from("acc_1")),
                value: RecordValue::Event(Arc::new(event.clone())),
            };
            book.apply(&record);
        }
    }

    fn states(book: &Book) -> Vec<(String, &'static str)> {
        book.letters().map(|l| (l.place.as_ref().unwrap().to_string(), l.state.name())).collect()
    }

    #[test]
    fn the_story_ends_with_the_last_parked_record_at_the_head_of_its_key() {
        // Given the records of a failure, two parked records, a redrive and two resolutions
        let mut book = Book::all();
        // When they are folded
        fold(&story(), &mut book);
        // Then the third record is the head of acc_1 and due, and the others are resolved
        let group = GroupId::new("bank").unwrap();
        let head = book.head(&group, &TopicName::new("work").unwrap(), "acc_1").unwrap();
        assert_eq!(head.place, Some(place(2)));
        assert_eq!(book.actionable(Utc::now()).len(), 1);
        assert_eq!(
            states(&book),
            [("work/0/0".into(), "resolved"), ("work/0/1".into(), "resolved"), ("work/0/2".into(), "parked")]
        );
        // And a subscription's book, which forgets resolved letters, holds only the open one
        let mut running = Book::of_group(group);
        fold(&story(), &mut running);
        assert_eq!(states(&running), [("work/0/2".into(), "parked")]);
    }

    proptest! {
        /// A record written twice (a crash between the write and the commit) changes nothing:
        /// whichever records of the story are repeated, right after themselves, the fold ends the
        /// same.
        #[test]
        fn a_record_folded_twice_gives_the_same_state(repeats in proptest::collection::vec(any::<bool>(), 6)) {
            let story = story();
            let mut once = Book::all();
            fold(&story, &mut once);
            let doubled: Vec<EventSchema> = story
                .iter()
                .zip(&repeats)
                .flat_map(|(event, twice)| std::iter::repeat_n(event.clone(), if *twice { 2 } else { 1 }))
                .collect();
            let mut twice = Book::all();
            fold(&doubled, &mut twice);
            prop_assert_eq!(states(&once), states(&twice));
            let group = GroupId::new("bank").unwrap();
            let topic = TopicName::new("work").unwrap();
            prop_assert_eq!(
                once.head(&group, &topic, "acc_1").map(|l| l.id.clone()),
                twice.head(&group, &topic, "acc_1").map(|l| l.id.clone())
            );
        }
    }
}
