//! Request bodies must name each field of an object once. JSON allows a name twice, and parsers
//! disagree on which value counts (serde_json and Python keep the last, others the first or
//! refuse): `{"action": "deposit", "action": "withdraw"}` must not be a withdrawal to one reader
//! and a deposit to another. The API refuses it, naming the field, as Jackson's
//! `STRICT_DUPLICATE_DETECTION` does.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// `Ok` if no object in the JSON `text` names a field twice; else the error names the first
/// repeated field (or says why `text` is not JSON).
pub fn check(text: &[u8]) -> Result<(), serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_slice(text);
    Unique.deserialize(&mut reader)?;
    reader.end()
}

/// Reads any JSON value through, keeping nothing but the field names of the object it is in.
#[derive(Clone, Copy)]
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
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
        while let Some(name) = map.next_key::<String>()? {
            if names.contains(&name) {
                return Err(de::Error::custom(format_args!("the field `{name}` is given twice")));
            }
            map.next_value_seed(self)?;
            names.insert(name);
        }
        Ok(())
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
        assert!(check(twice).unwrap_err().to_string().contains("the field `action` is given twice"));
        let nested = br#"{"a": [1, {"b": {"c": 1, "c": 2}}]}"#;
        assert!(check(nested).unwrap_err().to_string().contains("`c`"));
        // A name escaped one way and written plainly the other is the same name.
        assert!(check(br#"{"action": 1, "\u0061ction": 2}"#).is_err());
    }

    #[test]
    fn the_same_name_in_different_objects_is_fine() {
        assert!(check(br#"{"a": {"id": 1}, "b": {"id": 2}, "c": [{"id": 3}, {"id": 4}]}"#).is_ok());
        assert!(check(b"[]").is_ok());
        assert!(check(b"not json").is_err());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,6}".prop_map(Value::from)
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-e]{1,2}", inner, 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever serde_json writes names each field once, so it passes; the same document
        /// with one of its fields written again is refused.
        #[test]
        fn written_json_passes_and_a_repeated_field_is_refused(value in json_value(), extra in any::<bool>()) {
            let text = serde_json::to_string(&value).unwrap();
            prop_assert!(check(text.as_bytes()).is_ok(), "{text}");
            if let Some((name, _)) = first_field(&value) {
                // Repeat the first field of the first object, at its start.
                let at = text.find('{').unwrap() + 1;
                let repeated = format!("{}{}:{},{}", &text[..at], json!(name), json!(extra), &text[at..]);
                prop_assert!(check(repeated.as_bytes()).is_err(), "{repeated}");
            }
        }
    }

    /// The first field of the first object in `value` (in the order serde_json writes them).
    fn first_field(value: &Value) -> Option<(String, Value)> {
        first_object(value)?.iter().next().map(|(k, v)| (k.clone(), v.clone()))
    }

    fn first_object(value: &Value) -> Option<&serde_json::Map<String, Value>> {
        match value {
            Value::Object(fields) => Some(fields),
            Value::Array(items) => items.iter().find_map(first_object),
            _ => None,
        }
    }
}
