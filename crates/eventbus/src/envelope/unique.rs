//! Documents must name each field of an object once. JSON allows a name twice, and parsers
//! disagree on which value counts (serde_json and Python keep the last, others the first or
//! refuse): `{"action": "deposit", "action": "withdraw"}` must not be a withdrawal to one reader
//! and a deposit to another. The API and the command parser refuse such a document, naming the
//! field, as Jackson's `STRICT_DUPLICATE_DETECTION` does.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The longest field name an answer repeats; a longer one is cut.
const MAX_NAME_CHARS: usize = 64;

/// The first field that an object of the JSON `text` names twice, if any. Text that is not JSON
/// has none: its reader says what is wrong with it.
pub fn repeated_field(text: &[u8]) -> Option<String> {
    let found = RefCell::new(None);
    let mut reader = serde_json::Deserializer::from_slice(text);
    let _ = Unique(&found).deserialize(&mut reader);
    found.into_inner()
}

/// Reads any JSON value through, keeping nothing but the field names of the object it is in;
/// stops at the first name repeated, which it leaves in `.0`.
#[derive(Clone, Copy)]
struct Unique<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut names = HashSet::new();
        while let Some(Name(name)) = map.next_key()? {
            if names.contains(&name) {
                *self.0.borrow_mut() = Some(name.chars().take(MAX_NAME_CHARS).collect());
                return Err(de::Error::custom("a field named twice"));
            }
            map.next_value_seed(self)?;
            names.insert(name);
        }
        Ok(())
    }
}

/// A field name, borrowed from the text unless it has escapes: no allocation per field.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_borrowed_str<E: de::Error>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(name)))
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn a_field_named_twice_is_refused_by_name_at_any_depth() {
        let twice = br#"{"action": "deposit", "account_id": "acc_1", "action": "withdraw"}"#;
        assert_eq!(repeated_field(twice).as_deref(), Some("action"));
        let nested = br#"{"a": [1, {"b": {"c": 1, "c": 2}}]}"#;
        assert_eq!(repeated_field(nested).as_deref(), Some("c"));
        // A name escaped one way and written plainly the other is the same name.
        assert_eq!(repeated_field(br#"{"action": 1, "\u0061ction": 2}"#).as_deref(), Some("action"));
        // A long name is cut in the answer.
        let long = format!(r#"{{"{0}": 1, "{0}": 2}}"#, "n".repeat(1000));
        assert_eq!(repeated_field(long.as_bytes()).map(|name| name.len()), Some(MAX_NAME_CHARS));
    }

    #[test]
    fn the_same_name_in_different_objects_is_fine() {
        assert_eq!(repeated_field(br#"{"a": {"id": 1}, "b": {"id": 2}, "c": [{"id": 3}, {"id": 4}]}"#), None);
        assert_eq!(repeated_field(b"[]"), None);
        assert_eq!(repeated_field(b"not json"), None);
    }

    proptest! {
        /// Whatever serde_json writes names each field once, so it passes; the same document
        /// with the first field of its first object written twice is refused, naming it.
        #[test]
        fn written_json_passes_and_a_repeated_field_is_refused(value in crate::envelope::object::tests::value(), extra in any::<bool>()) {
            let text = serde_json::to_string(&value).unwrap();
            prop_assert_eq!(repeated_field(text.as_bytes()), None, "{}", text);
            let mut repeated = String::new();
            let name = write_repeating_first_field(&value, &Value::Bool(extra), &mut true, &mut repeated);
            prop_assert_eq!(repeated_field(repeated.as_bytes()), name, "{}", repeated);
        }
    }

    /// Writes `value` as JSON with the first field of its first object (in document order)
    /// written twice, first with `extra`; returns that field's name, if the object has one.
    fn write_repeating_first_field(value: &Value, extra: &Value, first: &mut bool, out: &mut String) -> Option<String> {
        let mut repeated = None;
        match value {
            Value::Object(fields) => {
                out.push('{');
                let mut parts = Vec::new();
                if std::mem::take(first)
                    && let Some(name) = fields.keys().next()
                {
                    parts.push(format!("{}:{extra}", json!(name)));
                    repeated = Some(name.clone());
                }
                for (name, value) in fields {
                    let mut part = format!("{}:", json!(name));
                    repeated = repeated.or(write_repeating_first_field(value, extra, first, &mut part));
                    parts.push(part);
                }
                out.push_str(&parts.join(","));
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    repeated = repeated.or(write_repeating_first_field(item, extra, first, out));
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
        repeated
    }
}
