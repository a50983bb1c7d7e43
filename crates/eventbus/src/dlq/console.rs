//! What operators do with dead letters, over any [`EventBus`]: find them by a [`Filter`], and ask
//! for redrives and discards. A request is a record in the letter's dead-letter topic, naming who
//! asked and from where; the subscription of the letter's group carries it out.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::book::{Book, Letter};
use super::letter::{self, Actor, DISCARD_REQUESTED, Original, REDRIVE_REQUESTED};
use crate::bus::{BusError, EventBus, GroupId, Partition, Publication};
use crate::topics::TopicName;

/// Records read from a dead-letter topic at a time.
const READ_BATCH: usize = 1000;
/// Letters one request may act on, at most.
pub const MAX_LETTERS_PER_REQUEST: usize = 10_000;

/// Errors of the dead-letter console.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlqError {
    /// The bus failed; the source says how.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// No letter has this id. `eventbus dlq list` shows the ids.
    #[error("no dead letter `{0}`")]
    UnknownLetter(String),
    /// A filter or an argument that does not parse; the message says which and why.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// A request names no letter.
    #[error("no dead letter matches: nothing to {0}")]
    NothingToDo(&'static str),
    /// A request names more letters than one request may.
    #[error("{count} letters match; one request acts on at most {MAX_LETTERS_PER_REQUEST}: narrow the filter")]
    TooMany {
        /// How many matched.
        count: usize,
    },
}

/// Which letters by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateFilter {
    /// Every letter not resolved (the default).
    #[default]
    Open,
    /// Failed, waiting for an operator.
    Failed,
    /// Waiting for a retry stage.
    Retrying,
    /// Parked behind an earlier letter of its key.
    Parked,
    /// A redrive was asked for and is not done yet.
    RedriveRequested,
    /// Done with.
    Resolved,
    /// All of them.
    All,
}

impl FromStr for StateFilter {
    type Err = DlqError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "open" => Self::Open,
            "failed" => Self::Failed,
            "retrying" => Self::Retrying,
            "parked" => Self::Parked,
            "redrive_requested" => Self::RedriveRequested,
            "resolved" => Self::Resolved,
            "all" => Self::All,
            other => {
                return Err(DlqError::InvalidFilter(format!(
                    "unknown state `{other}`: expected open, failed, retrying, parked, redrive_requested, resolved or all"
                )));
            }
        })
    }
}

impl StateFilter {
    /// Whether only letters not resolved can match.
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Resolved | Self::All)
    }
}

/// Which letters an operator means. Every field given must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The source topic (or its dead-letter topic).
    pub topic: Option<TopicName>,
    /// The group whose subscription failed.
    pub group: Option<GroupId>,
    /// Text the error contains, case-insensitive.
    pub error: Option<String>,
    /// Letters last written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Letters last written before this time.
    pub until: Option<DateTime<Utc>>,
    /// By state; open letters by default.
    pub state: StateFilter,
}

impl Filter {
    /// Whether `letter` matches.
    pub fn matches(&self, letter: &Letter) -> bool {
        let topic = self.topic.as_ref().is_none_or(|topic| {
            letter.dlq_topic == *topic || letter.place.as_ref().is_some_and(|place| place.topic == *topic)
        });
        let group = self.group.as_ref().is_none_or(|group| letter.group.as_ref() == Some(group));
        let error = self.error.as_ref().is_none_or(|text| letter.error.to_lowercase().contains(&text.to_lowercase()));
        let since = self.since.is_none_or(|since| letter.last_at >= since);
        let until = self.until.is_none_or(|until| letter.last_at < until);
        let state = match self.state {
            StateFilter::Open => !letter.state.is_resolved(),
            StateFilter::All => true,
            StateFilter::Failed => letter.state.name() == "failed",
            StateFilter::Retrying => letter.state.name() == "retrying",
            StateFilter::Parked => letter.state.name() == "parked",
            StateFilter::RedriveRequested => letter.state.name() == "redrive_requested",
            StateFilter::Resolved => letter.state.is_resolved(),
        };
        topic && group && error && since && until && state
    }

    /// The filter an operator typed: each field as text, absent when not given (open letters by
    /// default). Whatever does not parse is [`DlqError::InvalidFilter`], naming the field.
    pub fn parse(
        topic: Option<&str>,
        group: Option<&str>,
        error: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
        state: Option<&str>,
    ) -> Result<Self, DlqError> {
        let invalid = |field: &str, error: &dyn std::fmt::Display| DlqError::InvalidFilter(format!("{field}: {error}"));
        Ok(Self {
            topic: topic.map(TopicName::new).transpose().map_err(|e| invalid("topic", &e))?,
            group: group.map(GroupId::new).transpose().map_err(|e| invalid("group", &e))?,
            error: error.map(str::to_owned),
            since: since.map(Self::parse_time).transpose()?,
            until: until.map(Self::parse_time).transpose()?,
            state: state.map(str::parse).transpose()?.unwrap_or_default(),
        })
    }

    /// Reads a time bound: RFC 3339, or a duration back from now (`15m`, `2h`, `7d`).
    pub fn parse_time(text: &str) -> Result<DateTime<Utc>, DlqError> {
        if let Ok(time) = DateTime::parse_from_rfc3339(text) {
            return Ok(time.with_timezone(&Utc));
        }
        let bad = || {
            DlqError::InvalidFilter(format!(
                "`{text}` is not a time: expected RFC 3339 (2026-12-06T10:00:00Z) or an age such as 15m, 2h, 7d"
            ))
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: i64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        let age = chrono::Duration::try_seconds(number.checked_mul(seconds).ok_or_else(bad)?).ok_or_else(bad)?;
        Utc::now().checked_sub_signed(age).ok_or_else(bad)
    }
}

/// Reads every dead-letter topic, or those of `topic`, into a book of all letters.
pub async fn load(bus: &dyn EventBus, topic: Option<&TopicName>) -> Result<Book, DlqError> {
    let mut book = Book::all();
    refresh(bus, &mut book, topic).await?;
    Ok(book)
}

/// Folds into `book` what every dead-letter topic, or those of `topic`, holds past what the book
/// has read: a book kept between calls reads each record once.
pub async fn refresh(bus: &dyn EventBus, book: &mut Book, topic: Option<&TopicName>) -> Result<(), DlqError> {
    let topics = match topic {
        Some(topic) => {
            let dlq = if topic.is_dlq() { topic.clone() } else { topic.dlq() };
            match bus.describe_topic(&dlq).await {
                Ok(description) => vec![description],
                Err(BusError::UnknownTopic(_)) => Vec::new(),
                Err(error) => return Err(error.into()),
            }
        }
        // One listing gives every topic's end: no call per topic.
        None => bus.list_topics().await?.into_iter().filter(|t| t.name.is_dlq()).collect(),
    };
    for description in topics {
        let dlq = description.name;
        let end = description.partitions.first().map_or(0, |p| p.latest.0);
        // Bounded: read to the end the topic had when this began.
        while book.cursor(&dlq).0 < end {
            let records = bus.read(&dlq, Partition(0), book.cursor(&dlq), READ_BATCH).await?;
            if records.is_empty() {
                break;
            }
            for record in &records {
                book.apply(record);
            }
        }
    }
    Ok(())
}

/// What an operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Handle the letter again, in its group, keeping its `event_id`.
    Redrive,
    /// Drop the letter; its key's next record goes on.
    Discard,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Self::Redrive => "redrive",
            Self::Discard => "discard",
        }
    }
}

/// What became of one letter of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Acted {
    /// The letter.
    pub id: String,
    /// Whether the request was recorded.
    pub requested: bool,
    /// Why not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Asks for `action` on each of `ids`, as `actor`: one request record per letter, in the
/// letter's dead-letter topic. Letters the action does not apply to are answered with the
/// reason and left alone; an unknown id fails the whole request before anything is written.
pub async fn request(
    bus: &dyn EventBus,
    book: &Book,
    ids: &[String],
    action: Action,
    actor: &Actor,
) -> Result<Vec<Acted>, DlqError> {
    if ids.is_empty() {
        return Err(DlqError::NothingToDo(action.verb()));
    }
    if ids.len() > MAX_LETTERS_PER_REQUEST {
        return Err(DlqError::TooMany { count: ids.len() });
    }
    let letters = ids
        .iter()
        .map(|id| book.get(id).ok_or_else(|| DlqError::UnknownLetter(id.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut acted = Vec::with_capacity(letters.len());
    let mut publications = Vec::new();
    for letter in letters {
        match refusal(letter, action) {
            Some(reason) => acted.push(Acted { id: letter.id.clone(), requested: false, reason: Some(reason) }),
            None => {
                let (Some(group), Some(place)) = (&letter.group, &letter.place) else { unreachable!("checked") };
                let original = Original { place, key: letter.key.as_deref(), value: &[] };
                let event_type = match action {
                    Action::Redrive => REDRIVE_REQUESTED,
                    Action::Discard => DISCARD_REQUESTED,
                };
                let shown = letter.original.as_ref().filter(|_| letter.event_type.is_some());
                let record = letter::request(event_type, group, &original, shown, actor);
                let publication = Publication::new(letter.dlq_topic.clone(), record);
                publications.push(match &letter.key {
                    Some(key) => publication.keyed(key.clone()),
                    None => publication,
                });
                acted.push(Acted { id: letter.id.clone(), requested: true, reason: None });
            }
        }
    }
    if !publications.is_empty() {
        bus.publish_many(publications).await?;
        tracing::info!(who = %actor.who, address = %actor.address, action = action.verb(), letters = acted.iter().filter(|a| a.requested).count(), "Dead-letter action requested");
    }
    Ok(acted)
}

/// Why `action` does not apply to `letter`, if it does not.
fn refusal(letter: &Letter, action: Action) -> Option<String> {
    if letter.group.is_none() || letter.place.is_none() {
        return Some(
            "the letter names no subscription and no place (it was written by the store's relay): publish the event again"
                .into(),
        );
    }
    if letter.state.is_resolved() {
        return Some(format!("already resolved ({})", letter.state.name()));
    }
    match (action, &letter.state) {
        (Action::Redrive, super::LetterState::Parked { behind }) => {
            Some(format!("parked behind {behind}: redrive or discard that letter, and this one follows"))
        }
        (Action::Redrive, super::LetterState::RedriveRequested) => Some("a redrive is already requested".into()),
        _ => None,
    }
}
