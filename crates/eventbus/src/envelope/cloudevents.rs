//! CloudEvents 1.0: structured-mode JSON and binary-mode Kafka headers.
//!
//! | EventSchema   | CloudEvents                              |
//! |---------------|------------------------------------------|
//! | `event_id`    | `id`                                     |
//! | `source`      | `source`                                 |
//! | `event_type`  | `type`                                   |
//! | `timestamp`   | `time`                                   |
//! | `entity_id`   | `subject`                                |
//! | `entity_type` | extension `entitytype`                   |
//! | `version`     | extension `schemaversion`                |
//! | `data`        | `data` (`datacontenttype` `application/json`) |
//! | `metadata`    | one extension per scalar entry, named by the CloudEvents rules (lowercase letters and digits); entries that cannot be named so travel together as JSON in `nexummetadata` |

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::object::MAX_DEPTH;
use super::schema::array_is_not_an_event;
use super::{EnvelopeError, EventId, EventSchema, EventType, JsonObject};

/// The only CloudEvents version spoken.
pub const SPEC_VERSION: &str = "1.0";
const CONTENT_TYPE: &str = "application/json";
const ENTITY_TYPE: &str = "entitytype";
const SCHEMA_VERSION: &str = "schemaversion";
const LEFTOVER_METADATA: &str = "nexummetadata";
/// Metadata keys whose CloudEvents names are not just the key without underscores.
const RENAMED: &[(&str, &str)] =
    &[("correlation_id", "correlationid"), ("causation_id", "causationid"), ("user_id", "userid")];
/// The context attributes of CloudEvents 1.0 and the names this mapping uses itself: a metadata
/// entry named like one of them cannot be an extension of that name.
const RESERVED: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
    ENTITY_TYPE,
    SCHEMA_VERSION,
    LEFTOVER_METADATA,
];
/// Extensions that may go into Kafka headers: ids for tracing, never personal data. In name
/// order, as a CloudEvent lists its extensions.
const HEADER_EXTENSIONS: &[&str] =
    &["causationid", "correlationid", ENTITY_TYPE, SCHEMA_VERSION, "traceparent", "tracestate"];

/// A CloudEvent in structured mode, the JSON document of the spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// The CloudEvents version, [`SPEC_VERSION`]; a CloudEvent of any other version is refused.
    pub specversion: String,
    /// The event's unique id, from `event_id`.
    pub id: String,
    /// The producing system, from `source` (`nexum` when the event has none).
    pub source: String,
    /// The event type, from `event_type`; `type` in the JSON.
    #[serde(rename = "type")]
    pub ty: String,
    /// When the event happened, from `timestamp`: UTC, RFC 3339 in the JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// The id of the entity the event is about, from `entity_id`; absent when it is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The media type of `data`: `application/json` in every CloudEvent made here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The payload, from `data`: a JSON object; absent or null reads as an empty one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Extension attributes: names of lowercase letters and digits, scalar values.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, Value>,
}

impl CloudEvent {
    /// Maps an event to a CloudEvent. The event needs an `event_id`: complete it first.
    pub fn from_event(event: &EventSchema) -> Result<Self, EnvelopeError> {
        Ok(Self { data: Some(event.data.to_value()), ..Self::attributes_of(event)? })
    }

    /// The CloudEvent of `event` without its data: what the Kafka headers carry.
    fn attributes_of(event: &EventSchema) -> Result<Self, EnvelopeError> {
        let id = event.event_id.as_ref().ok_or(EnvelopeError::MissingField("event_id"))?;
        let mut extensions = BTreeMap::new();
        if !event.entity_type.is_empty() {
            extensions.insert(ENTITY_TYPE.to_owned(), Value::String(event.entity_type.clone()));
        }
        if let Some(version) = &event.version {
            extensions.insert(SCHEMA_VERSION.to_owned(), Value::String(version.clone()));
        }
        let mut leftover = Map::new();
        for (key, value) in &event.metadata {
            let name = extension_name(key);
            let reversible = is_extension_name(&name)
                && metadata_key(&name) == *key
                && !RESERVED.contains(&name.as_str())
                && is_scalar(value);
            if reversible {
                extensions.insert(name, value.clone());
            } else {
                leftover.insert(key.clone(), value.clone());
            }
        }
        if !leftover.is_empty() {
            extensions.insert(LEFTOVER_METADATA.to_owned(), Value::String(Value::Object(leftover).to_string()));
        }
        Ok(Self {
            specversion: SPEC_VERSION.to_owned(),
            id: id.to_string(),
            source: event.source().to_owned(),
            ty: event.event_type.to_string(),
            time: event.timestamp,
            subject: (!event.entity_id.is_empty()).then(|| event.entity_id.clone()),
            datacontenttype: Some(CONTENT_TYPE.to_owned()),
            data: None,
            extensions,
        })
    }

    /// Maps a CloudEvent back to an event.
    pub fn into_event(self) -> Result<EventSchema, EnvelopeError> {
        if self.specversion != SPEC_VERSION {
            return Err(EnvelopeError::UnsupportedSpecVersion(self.specversion));
        }
        let data = match self.data {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(invalid("data", "must be a JSON object")),
        };
        // Binary mode's `data` is a whole message, which may nest one level more than fits in
        // the event's own document.
        if depth_of(&data) > MAX_DEPTH {
            return Err(too_deep("data"));
        }
        let mut event = EventSchema {
            event_id: Some(self.id.parse::<EventId>()?),
            event_type: self.ty.parse::<EventType>()?,
            timestamp: self.time,
            source: Some(self.source),
            version: None,
            entity_type: String::new(),
            entity_id: self.subject.unwrap_or_default(),
            data: data.into(),
            metadata: JsonObject::default(),
        };
        for (name, value) in self.extensions {
            match (name.as_str(), value) {
                (ENTITY_TYPE, Value::String(v)) => event.entity_type = v,
                (SCHEMA_VERSION, Value::String(v)) => event.version = Some(v),
                (LEFTOVER_METADATA, Value::String(json)) => match serde_json::from_str(&json) {
                    Ok(Value::Object(map)) if depth_of(&map) > MAX_DEPTH => return Err(too_deep(LEFTOVER_METADATA)),
                    Ok(Value::Object(map)) => event.metadata.extend(map),
                    _ => return Err(invalid(LEFTOVER_METADATA, "must be a JSON object in a string")),
                },
                (ENTITY_TYPE | SCHEMA_VERSION | LEFTOVER_METADATA, _) => {
                    return Err(invalid(&name, "must be a string"));
                }
                // In `metadata`, one level down from where it was.
                (_, value) if depth(&value) >= MAX_DEPTH => return Err(too_deep(&name)),
                (_, value) => {
                    event.metadata.insert(metadata_key(&name), value);
                }
            }
        }
        Ok(event)
    }
}

/// One Kafka header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header's name, e.g. `ce_id` or `content-type`.
    pub name: String,
    /// The header's value, as UTF-8 text.
    pub value: String,
}

impl Header {
    fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

/// Binary mode for Kafka: the CloudEvents attributes as `ce_*` headers, and the seed's flat
/// EventSchema JSON as the value. Only tracing ids go into headers, never personal data.
pub fn to_binary(event: &EventSchema) -> Result<(Vec<Header>, Vec<u8>), EnvelopeError> {
    Ok((binary_headers(event)?, event.to_json()))
}

/// The CloudEvents binary-mode headers of `event`, as [`to_binary`] writes them beside its flat
/// JSON.
pub fn binary_headers(event: &EventSchema) -> Result<Vec<Header>, EnvelopeError> {
    let id = event.event_id.as_ref().ok_or(EnvelopeError::MissingField("event_id"))?;
    let mut headers = Vec::with_capacity(8);
    headers.extend([
        Header::new("ce_specversion", SPEC_VERSION),
        Header::new("ce_id", id.to_string()),
        Header::new("ce_source", event.source()),
        Header::new("ce_type", event.event_type.to_string()),
    ]);
    if let Some(time) = event.timestamp {
        headers.push(Header::new("ce_time", time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
    }
    if !event.entity_id.is_empty() {
        headers.push(Header::new("ce_subject", event.entity_id.clone()));
    }
    headers.push(Header::new("content-type", CONTENT_TYPE));
    // Taken straight from the event: `entity_type`, `version`, and the metadata entries that map
    // to these names reversibly (`attributes_of`), when they are strings.
    for name in HEADER_EXTENSIONS {
        let value = match *name {
            ENTITY_TYPE => (!event.entity_type.is_empty()).then(|| event.entity_type.clone()),
            SCHEMA_VERSION => event.version.clone(),
            other => match event.metadata.get(&metadata_key(other)) {
                Some(Value::String(value)) => Some(value.clone()),
                _ => None,
            },
        };
        if let Some(value) = value {
            headers.push(Header::new(format!("ce_{name}"), value));
        }
    }
    Ok(headers)
}

/// Reads a Kafka message in any form. Without `ce_*` headers the value is a flat EventSchema, or
/// a structured-mode CloudEvent if it has a `specversion` and no `event_type`. With them, a value that is the flat EventSchema of those headers (its `event_type` and
/// `event_id` are `ce_type` and `ce_id`, as [`to_binary`] writes it) is taken as it is; any other
/// value is the `data` of a binary-mode CloudEvent whose attributes come from the headers. So a
/// `data` that has an `event_type` of its own is still read as data.
pub fn from_binary(headers: &[Header], value: &[u8]) -> Result<EventSchema, EnvelopeError> {
    let parsed: Value = serde_json::from_slice(value).map_err(EnvelopeError::Json)?;
    let header = |name: &str| headers.iter().find(|h| h.name == name).map(|h| h.value.clone());
    let has_ce_headers = headers.iter().any(|h| h.name == "ce_specversion");
    let same = |field: &str, name: &str| {
        header(name).is_some_and(|h| parsed.get(field).and_then(Value::as_str) == Some(h.as_str()))
    };
    let is_structured = !has_ce_headers && parsed.get("specversion").is_some() && parsed.get("event_type").is_none();
    if is_structured {
        let cloud_event: CloudEvent = serde_json::from_value(parsed).map_err(EnvelopeError::Json)?;
        return cloud_event.into_event();
    }
    let is_flat = !has_ce_headers || (same("event_type", "ce_type") && same("event_id", "ce_id"));
    if is_flat {
        if parsed.is_array() {
            return Err(array_is_not_an_event());
        }
        let event: EventSchema = serde_json::from_value(parsed).map_err(EnvelopeError::Json)?;
        event.validate()?;
        return Ok(event);
    }
    let required = |name: &'static str| header(name).ok_or(EnvelopeError::MissingField(name));
    let time = match header("ce_time") {
        Some(t) => {
            Some(DateTime::parse_from_rfc3339(&t).map_err(|e| invalid("time", &e.to_string()))?.with_timezone(&Utc))
        }
        None => None,
    };
    let extensions = headers
        .iter()
        .filter_map(|h| {
            let name = h.name.strip_prefix("ce_")?;
            let known = ["specversion", "id", "source", "type", "time", "subject"].contains(&name);
            (!known).then(|| (name.to_owned(), Value::String(h.value.clone())))
        })
        .collect();
    CloudEvent {
        specversion: required("ce_specversion")?,
        id: required("ce_id")?,
        source: required("ce_source")?,
        ty: required("ce_type")?,
        time,
        subject: header("ce_subject"),
        datacontenttype: header("content-type"),
        data: Some(parsed),
        extensions,
    }
    .into_event()
}

fn invalid(name: &str, reason: &str) -> EnvelopeError {
    EnvelopeError::InvalidAttribute { name: name.to_owned(), reason: reason.to_owned() }
}

fn too_deep(name: &str) -> EnvelopeError {
    invalid(name, &format!("nested deeper than the {MAX_DEPTH} levels an event's data and metadata may take"))
}

/// How many levels of arrays and objects `value` opens: 0 for a scalar.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => depth_of(map),
        _ => 0,
    }
}

/// How many levels an object opens, itself counted.
fn depth_of(map: &Map<String, Value>) -> usize {
    1 + map.values().map(depth).max().unwrap_or(0)
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Bool(_)) || value.as_i64().is_some()
}

/// CloudEvents attribute names: 1 to 20 lowercase ASCII letters or digits.
fn is_extension_name(name: &str) -> bool {
    (1..=20).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn extension_name(key: &str) -> String {
    if let Some((_, ext)) = RENAMED.iter().find(|(k, _)| *k == key) {
        return (*ext).to_owned();
    }
    key.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

fn metadata_key(name: &str) -> String {
    match RENAMED.iter().find(|(_, ext)| *ext == name) {
        Some((key, _)) => (*key).to_owned(),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headers as the full CloudEvent mapping gives them: what `binary_headers` must match.
    fn headers_of_the_cloud_event(event: &EventSchema) -> Vec<Header> {
        let ce = CloudEvent::attributes_of(event).unwrap();
        let mut headers = vec![
            Header::new("ce_specversion", SPEC_VERSION),
            Header::new("ce_id", ce.id),
            Header::new("ce_source", ce.source),
            Header::new("ce_type", ce.ty),
        ];
        if let Some(time) = ce.time {
            headers.push(Header::new("ce_time", time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
        }
        if let Some(subject) = ce.subject {
            headers.push(Header::new("ce_subject", subject));
        }
        headers.push(Header::new("content-type", CONTENT_TYPE));
        for (name, value) in ce.extensions {
            if let (true, Value::String(value)) = (HEADER_EXTENSIONS.contains(&name.as_str()), value) {
                headers.push(Header::new(format!("ce_{name}"), value));
            }
        }
        headers
    }

    #[test]
    fn binary_headers_are_those_of_the_cloud_event_mapping() {
        // Given events with and without each field and metadata entry a header may come from,
        // and look-alike keys that must not make a header
        let metadata = [
            serde_json::json!({}),
            serde_json::json!({"correlation_id": "c-1", "causation_id": "e-0", "traceparent": "00-ab-cd-01"}),
            serde_json::json!({"tracestate": "k=v", "correlationid": "x", "trace_parent": "y", "user_id": "u"}),
            serde_json::json!({"correlation_id": 7, "causation_id": null, "entitytype": "account"}),
        ];
        for (n, metadata) in metadata.into_iter().enumerate() {
            let mut event =
                EventSchema::new("transaction_created", "transaction", format!("txn_{n}"), serde_json::Map::new());
            event.metadata = metadata.as_object().unwrap().clone().into();
            if n % 2 == 1 {
                event.version = None;
                event.timestamp = None;
                event.entity_type = String::new();
                event.entity_id = String::new();
            }
            // When its headers are built directly
            // Then they are those of the CloudEvent mapping, in the same order
            assert_eq!(binary_headers(&event).unwrap(), headers_of_the_cloud_event(&event), "event {n}");
        }
    }

    #[test]
    fn data_and_metadata_deeper_than_an_event_holds_are_refused_and_what_is_read_reads_back() {
        // Regression (fault suite R3): a binary-mode value nested 127 levels became `data`, and
        // the event's own flat JSON (128 levels) was then refused by `from_binary`.
        let nested = |levels: usize| format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));
        let headers: Vec<Header> =
            [("ce_specversion", SPEC_VERSION), ("ce_id", "1"), ("ce_source", "s"), ("ce_type", "t")]
                .into_iter()
                .map(|(name, value)| Header::new(name, value))
                .collect();
        // Given binary-mode values as deep as an event's data may be, and one level deeper
        // When they are decoded
        let event = from_binary(&headers, nested(MAX_DEPTH).as_bytes()).expect("as deep as an event holds");
        let error = from_binary(&headers, nested(MAX_DEPTH + 1).as_bytes()).expect_err("one level more");
        // Then the first is read, and its flat JSON reads back as the same event
        assert_eq!(from_binary(&[], &event.to_json()).unwrap(), event);
        // And the second is refused, naming `data`
        assert!(error.to_string().contains("`data`: nested deeper than the 126 levels"), "{error}");
        // And metadata, from an extension or from `nexummetadata`, is held to the same depth
        let extension =
            format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","deep":{}}}"#, nested(MAX_DEPTH));
        let leftover = serde_json::to_string(&nested(MAX_DEPTH + 1)).unwrap();
        let leftover =
            format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","nexummetadata":{leftover}}}"#);
        for (document, name) in [(extension, "deep"), (leftover, LEFTOVER_METADATA)] {
            let error = from_binary(&[], document.as_bytes()).expect_err("metadata one level too deep");
            assert!(error.to_string().contains(&format!("`{name}`: nested deeper")), "{error}");
        }
    }
}
