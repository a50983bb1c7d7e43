//! The seed's `EventSchema`: the flat JSON envelope every event and command travels in.

use std::fmt;
use std::str::FromStr;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::Value;
use uuid::Uuid;

use super::EnvelopeError;
use super::object::JsonObject;

/// The default `source` of an event, as in the seed.
pub const DEFAULT_SOURCE: &str = "nexum";
/// The default schema `version` of an event, as in the seed.
pub const DEFAULT_VERSION: &str = "1.0";

/// The unique id of one event. New ids are UUID v7, which sort by time, kept as their 16 bytes;
/// ids written by other producers are kept exactly as they are, whatever their form. Ids
/// compare, order and hash as their text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventId(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// A UUID written in its canonical text: lower case, hyphenated.
    Uuid(Uuid),
    /// Any other text. Never a canonical UUID, so that equal texts are always equal ids.
    Text(Arc<str>),
}

impl EventId {
    /// A fresh, time-ordered id (UUID v7).
    pub fn new() -> Self {
        Self(Repr::Uuid(Uuid::now_v7()))
    }

    /// An id derived from a name, the same every time (UUID v5). Deterministic producers use it so
    /// that a replay yields the same ids.
    pub fn derived(name: &str) -> Self {
        const NAMESPACE: Uuid = Uuid::from_u128(0x6e65_7875_6d2d_6576_656e_7462_7573_0001);
        Self(Repr::Uuid(Uuid::new_v5(&NAMESPACE, name.as_bytes())))
    }

    /// The id as a UUID, if it is one written in the canonical form.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match &self.0 {
            Repr::Uuid(uuid) => Some(*uuid),
            Repr::Text(_) => None,
        }
    }

    /// Calls `f` with the id's text, without allocating for a UUID.
    pub fn with_str<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        match &self.0 {
            Repr::Uuid(uuid) => f(uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer())),
            Repr::Text(text) => f(text),
        }
    }

    fn from_text(text: &str) -> Self {
        match Uuid::try_parse(text) {
            Ok(uuid) if uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == text => Self(Repr::Uuid(uuid)),
            _ => Self(Repr::Text(Arc::from(text))),
        }
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_str(|text| f.write_str(text))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_str(|text| fmt::Debug::fmt(text, f))
    }
}

impl PartialOrd for EventId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EventId {
    /// The order of the texts. Two UUIDs in canonical text order as their bytes do.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (&self.0, &other.0) {
            (Repr::Uuid(a), Repr::Uuid(b)) => a.cmp(b),
            _ => self.with_str(|a| other.with_str(|b| a.cmp(b))),
        }
    }
}

impl PartialEq<str> for EventId {
    fn eq(&self, other: &str) -> bool {
        self.with_str(|text| text == other)
    }
}

impl PartialEq<&str> for EventId {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl FromStr for EventId {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(EnvelopeError::MissingField("event_id"));
        }
        Ok(Self::from_text(s))
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_str(|text| serializer.serialize_str(text))
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl de::Visitor<'_> for Text {
            type Value = EventId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<EventId, E> {
                // An empty id is refused by `EventSchema::validate`, with the field named.
                Ok(EventId::from_text(text))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// The type of an event in `snake_case`, past tense for events (`transaction_created`) and a
/// noun for commands (`transaction_command`). Shared text: cloning it allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventType(Arc<str>);

impl EventType {
    /// The type as written, e.g. `transaction_created`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EventType {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(EnvelopeError::MissingField("event_type"));
        }
        Ok(Self(Arc::from(s)))
    }
}

impl From<&str> for EventType {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

/// The envelope of every event and command, field for field the seed's `EventSchema`.
///
/// Fields that the seed's own examples leave out (`event_id`, `timestamp`, `source`, `version`,
/// `entity_type`, `entity_id`, `metadata`) may be absent in a document; an absent field stays
/// absent when the event is written again, so a document round-trips unchanged. The accessors
/// apply the seed's defaults, and publishing fills in a missing `event_id` and `timestamp`.
/// Events built with [`EventSchema::new`] carry all nine fields, `metadata` even when empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventSchema {
    /// Unique id of the event; consumers deduplicate on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// What happened, e.g. `transaction_created`.
    pub event_type: EventType,
    /// When it happened, UTC, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "timestamp")]
    pub timestamp: Option<DateTime<Utc>>,
    /// The producing system; `nexum` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The schema version of `data`; `1.0` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The kind of entity the event is about, e.g. `transaction`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entity_type: String,
    /// The id of that entity; the default partition key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entity_id: String,
    /// The payload: read from JSON on demand, shared by clones (see [`JsonObject`]).
    #[serde(default)]
    pub data: JsonObject,
    /// Correlation, causation, user and trace ids. Always written for an event made here, even
    /// when empty (`{}`), as the seed's nine-field `EventSchema` has it; left out again only for a
    /// document read without it.
    #[serde(default = "JsonObject::absent", skip_serializing_if = "JsonObject::is_absent")]
    pub metadata: JsonObject,
}

/// serde's derive also reads a struct from a JSON array, field by field; an event is an object.
pub(super) fn array_is_not_an_event() -> EnvelopeError {
    EnvelopeError::Json(de::Error::invalid_type(de::Unexpected::Seq, &"an event as a JSON object"))
}

/// Reads `timestamp` as chrono does, with an error that names the field and shows the value.
fn timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    struct Timestamp;
    impl<'de> de::Visitor<'de> for Timestamp {
        type Value = Option<DateTime<Utc>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a `timestamp` in RFC 3339, e.g. 2024-01-01T12:00:00Z")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_str(self)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            text.parse().map(Some).map_err(|e| {
                E::custom(format_args!(
                    "invalid timestamp `{text}` ({e}), expected RFC 3339, e.g. 2024-01-01T12:00:00Z"
                ))
            })
        }
    }
    deserializer.deserialize_option(Timestamp)
}

impl EventSchema {
    /// A complete event: a fresh id, the current time (to the microsecond), the seed's default
    /// source and version, and empty metadata.
    pub fn new(
        event_type: impl Into<String>,
        entity_type: impl Into<String>,
        entity_id: impl Into<String>,
        data: impl Into<JsonObject>,
    ) -> Self {
        Self {
            event_id: Some(EventId::new()),
            event_type: EventType(Arc::from(event_type.into())),
            timestamp: Some(Utc::now().trunc_subsecs(6)),
            source: Some(DEFAULT_SOURCE.to_owned()),
            version: Some(DEFAULT_VERSION.to_owned()),
            entity_type: entity_type.into(),
            entity_id: entity_id.into(),
            data: data.into(),
            metadata: JsonObject::default(),
        }
    }

    /// Parses one JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(array_is_not_an_event());
        }
        let event: Self = serde_json::from_slice(bytes).map_err(EnvelopeError::Json)?;
        event.validate()?;
        Ok(event)
    }

    /// The flat JSON form, the default wire format.
    pub fn to_json(&self) -> Vec<u8> {
        // Most events are a few hundred bytes: one allocation instead of a run of regrowths.
        let mut json = Vec::with_capacity(512);
        serde_json::to_writer(&mut json, self).expect("an EventSchema always serialises: its maps have string keys");
        json
    }

    /// Rejects values that parse as JSON but cannot be an event.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        if self.event_type.0.is_empty() {
            return Err(EnvelopeError::MissingField("event_type"));
        }
        if matches!(&self.event_id, Some(EventId(Repr::Text(text))) if text.is_empty()) {
            return Err(EnvelopeError::MissingField("event_id"));
        }
        Ok(())
    }

    /// Fills in what a publisher must supply: a fresh `event_id` and the current `timestamp`.
    pub fn complete(&mut self) {
        if self.event_id.is_none() {
            self.event_id = Some(EventId::new());
        }
        if self.timestamp.is_none() {
            self.timestamp = Some(Utc::now().trunc_subsecs(6));
        }
    }

    /// The producing system: `source`, or [`DEFAULT_SOURCE`] when absent.
    pub fn source(&self) -> &str {
        self.source.as_deref().unwrap_or(DEFAULT_SOURCE)
    }

    /// The schema version of `data`: `version`, or [`DEFAULT_VERSION`] when absent.
    pub fn version(&self) -> &str {
        self.version.as_deref().unwrap_or(DEFAULT_VERSION)
    }

    /// The partition key used when the publisher gives none: the entity id, if any.
    pub fn default_key(&self) -> Option<&str> {
        (!self.entity_id.is_empty()).then_some(self.entity_id.as_str())
    }

    /// Sets the producing system, e.g. `eventbus` on the dead letters the bus writes itself.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets the event id, e.g. one from [`EventId::derived`] so that a replay yields the same id.
    pub fn with_id(mut self, id: EventId) -> Self {
        self.event_id = Some(id);
        self
    }

    /// Sets when the event happened, in UTC, instead of when it was built or published.
    pub fn with_timestamp(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds or replaces one metadata entry, e.g. `correlation_id`.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}
