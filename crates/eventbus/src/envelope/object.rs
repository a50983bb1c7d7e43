//! [`JsonObject`]: a JSON object kept as the text it came in, and parsed the first time a field
//! is read. An event's `data` and `metadata` are these: an event read from the log, relayed or
//! delivered is neither parsed into maps nor copied field by field unless someone looks inside.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A JSON object, read on demand. It derefs to a [`Map`]: `object["amount"]`, `object.get(..)`,
/// `object.insert(..)` work as on a map. Until a field is read, it is only the object's text,
/// shared by every clone; once read, the map is shared too. Changing it drops the text.
///
/// Written out, it is its text as it came in when nothing changed it, else the map, compact.
#[derive(Clone, Default)]
pub struct JsonObject {
    /// The object's JSON text, checked to be a valid object when it was read.
    raw: Option<Arc<RawValue>>,
    /// The object as a map, parsed from `raw` on first use.
    map: OnceLock<Arc<Map<String, Value>>>,
    /// The document this was read from had no such field (see [`absent`](Self::absent)).
    absent: bool,
}

impl JsonObject {
    /// An empty object that stands for a field a document left out, so that the document is
    /// written again without it. Any change makes it present.
    pub fn absent() -> Self {
        Self { absent: true, ..Self::default() }
    }

    /// Whether this stands for a field left out, and nothing changed it since.
    pub fn is_absent(&self) -> bool {
        self.absent
    }

    /// Whether the object has no field.
    pub fn is_empty(&self) -> bool {
        match (self.map.get(), self.raw.as_deref()) {
            (Some(map), _) => map.is_empty(),
            (None, Some(raw)) => raw.get().trim_start().trim_start_matches('{').trim_start().starts_with('}'),
            (None, None) => true,
        }
    }

    /// The object as a map.
    pub fn as_map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| {
            let parsed = match self.raw.as_deref() {
                // The text was checked when it was read: valid JSON, an object, numbers in range.
                Some(raw) => serde_json::from_str(raw.get()).unwrap_or_default(),
                None => Map::new(),
            };
            Arc::new(parsed)
        })
    }

    /// A copy of the object as a map.
    pub fn to_map(&self) -> Map<String, Value> {
        self.as_map().clone()
    }

    /// A copy of the object as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// The object's text, if it is kept as text: it came in as text and nothing changed it since.
    pub fn raw(&self) -> Option<&str> {
        self.raw.as_deref().map(|raw| raw.get())
    }

    /// Reads an object from its JSON text, checking it as [`JsonObject`]'s `Deserialize` does.
    pub fn from_text(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl Deref for JsonObject {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        self.as_map()
    }
}

impl DerefMut for JsonObject {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.as_map();
        // The text no longer says what the map will: it goes.
        self.raw = None;
        self.absent = false;
        let map = self.map.get_mut().expect("parsed above");
        Arc::make_mut(map)
    }
}

impl<'a> IntoIterator for &'a JsonObject {
    type Item = (&'a String, &'a Value);
    type IntoIter = serde_json::map::Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_map().iter()
    }
}

impl From<Map<String, Value>> for JsonObject {
    fn from(map: Map<String, Value>) -> Self {
        let object = Self::default();
        let _ = object.map.set(Arc::new(map));
        object
    }
}

impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        match (self.raw(), other.raw()) {
            (Some(a), Some(b)) if a == b => true,
            _ => self.as_map() == other.as_map(),
        }
    }
}

impl PartialEq<Map<String, Value>> for JsonObject {
    fn eq(&self, other: &Map<String, Value>) -> bool {
        self.as_map() == other
    }
}

impl fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.map.get(), self.raw()) {
            (Some(map), _) => map.fmt(f),
            (None, Some(raw)) => f.write_str(raw),
            (None, None) => f.write_str("{}"),
        }
    }
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self.raw.as_deref(), self.map.get()) {
            (Some(raw), _) => raw.serialize(serializer),
            (None, Some(map)) => map.serialize(serializer),
            (None, None) => Map::new().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    /// Keeps the object's text, after checking, without building anything, that it is an object
    /// a map can be read from: valid JSON, numbers in range, no deeper than serde_json allows.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
        let text = raw.get();
        if !text.trim_start().starts_with('{') {
            let value: Value = serde_json::from_str(text).map_err(de::Error::custom)?;
            return Err(de::Error::invalid_type(unexpected(&value), &"a map"));
        }
        let mut reader = serde_json::Deserializer::from_str(text);
        CheckedVisitor(MAX_DEPTH).deserialize(&mut reader).and_then(|_| reader.end()).map_err(de::Error::custom)?;
        Ok(Self { raw: Some(Arc::from(raw)), map: OnceLock::new(), absent: false })
    }
}

/// What a JSON value that is not an object is, for the error message, as serde says it.
fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => de::Unexpected::Unsigned(u),
            (_, Some(i), _) => de::Unexpected::Signed(i),
            (_, _, Some(f)) => de::Unexpected::Float(f),
            _ => de::Unexpected::Other("a number"),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// The most levels an event's `data` or `metadata` may nest, the object itself counted: what
/// still fits in an event document read whole. serde_json reads 127 levels, and the document
/// around the object is one of them; an object checked alone could use all 127 and make an event
/// whose own JSON no reader of the whole document accepts.
pub(super) const MAX_DEPTH: usize = 126;

/// A JSON value read through without being kept: it fails where reading it into a [`Value`]
/// would (a number out of range) or where it would not fit in an event (deeper than
/// [`MAX_DEPTH`]), and allocates nothing.
struct Checked;

/// Reads a [`Checked`] value that may still open `.0` levels of arrays and objects.
#[derive(Clone, Copy)]
struct CheckedVisitor(usize);

impl CheckedVisitor {
    /// The visitor of what a container holds, one level further down.
    fn inside<E: de::Error>(self) -> Result<Self, E> {
        self.0.checked_sub(1).map(Self).ok_or_else(|| E::custom(format_args!("nested deeper than {MAX_DEPTH} levels")))
    }
}

impl<'de> DeserializeSeed<'de> for CheckedVisitor {
    type Value = Checked;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_none<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let inside = self.inside()?;
        while seq.next_element_seed(inside)?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let inside = self.inside()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(inside)?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_read_and_not_changed_is_written_back_as_it_came() {
        let text = r#"{"amount": "100.50",  "currency":"USD", "n": 1.50}"#;
        let object = JsonObject::from_text(text).unwrap();
        assert_eq!(object["amount"], json!("100.50"));
        assert_eq!(serde_json::to_string(&object).unwrap(), text);
    }

    #[test]
    fn a_changed_object_is_written_as_its_map() {
        let mut object = JsonObject::from_text(r#"{"a": 1}"#).unwrap();
        let copy = object.clone();
        object.insert("b".into(), json!(2));
        assert_eq!(serde_json::to_string(&object).unwrap(), r#"{"a":1,"b":2}"#);
        assert_eq!(serde_json::to_string(&copy).unwrap(), r#"{"a": 1}"#, "a clone keeps what it had");
    }

    #[test]
    fn what_is_not_an_object_or_not_readable_as_a_map_is_refused_when_read() {
        for text in ["[1]", "\"x\"", "1", "null", "true", r#"{"n": 1e400}"#, r#"{"a": }"#] {
            assert!(JsonObject::from_text(text).is_err(), "{text}");
        }
        let deep = format!("{}{}", "{\"a\":".repeat(200), "1".to_owned() + &"}".repeat(200));
        assert!(JsonObject::from_text(&deep).is_err(), "deeper than a map can be read");
    }

    #[test]
    fn an_object_as_deep_as_fits_in_an_event_is_read_and_one_level_deeper_is_refused() {
        // Regression (fault suite R3): an object checked alone could nest 127 levels, which is
        // one more than fits in the event document around it, so the event's own JSON was refused
        // by `from_binary`, which reads the whole document.
        let nested = |levels: usize| format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));
        let fits = JsonObject::from_text(&nested(MAX_DEPTH)).expect("as deep as an event holds");
        let event = format!(r#"{{"event_type":"t","data":{}}}"#, serde_json::to_string(&fits).unwrap());
        assert!(serde_json::from_str::<Value>(&event).is_ok(), "the whole event is readable");
        let error = JsonObject::from_text(&nested(MAX_DEPTH + 1)).expect_err("one level more").to_string();
        assert!(error.contains("nested deeper than 126 levels"), "{error}");
        let in_an_array = format!("{{\"a\":{}{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(JsonObject::from_text(&in_an_array).is_err(), "arrays count as levels too");
    }

    #[test]
    fn emptiness_is_known_without_reading() {
        assert!(JsonObject::from_text(" { } ").unwrap().is_empty());
        assert!(!JsonObject::from_text(r#"{"a":1}"#).unwrap().is_empty());
        assert!(JsonObject::default().is_empty());
    }

    /// Any JSON value, a few levels deep; shared with the other envelope tests.
    pub(in crate::envelope) fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            // Binary fractions: floats that any JSON reader reads back exactly.
            (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64 / 1024.0)),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any object written out reads back as the same map, whether it was kept as text or not.
        #[test]
        fn an_object_reads_back_as_the_same_map(entries in proptest::collection::btree_map("[a-z]{1,8}", value(), 0..8)) {
            let map: Map<String, Value> = entries.into_iter().collect();
            let object = JsonObject::from(map.clone());
            let text = serde_json::to_string(&object).unwrap();
            let read = JsonObject::from_text(&text).unwrap();
            prop_assert_eq!(read.as_map(), &map);
            prop_assert_eq!(serde_json::to_string(&read).unwrap(), text);
        }
    }
}
