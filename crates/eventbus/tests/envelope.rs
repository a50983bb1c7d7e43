//! The envelope from the outside: the seed's `EventSchema` examples, defaults, bad input, the
//! CloudEvents mappings (structured and Kafka binary mode) and masking of personal data.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use eventbus::envelope::{CloudEvent, Header, from_binary, masked, to_binary};
use eventbus::{EventId, EventSchema, EventType, Money};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// Seed 001 fixtures
// ---------------------------------------------------------------------------------------------

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed001")
}

/// Every `*.json` file in the fixture directory, sorted by name, with its text.
fn fixtures() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(fixture_dir())
        .expect("the seed001 fixture directory exists")
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = fs::read_to_string(&path).expect("a readable fixture");
            (name, text)
        })
        .collect();
    files.sort();
    files
}

fn fixture(name: &str) -> String {
    fs::read_to_string(fixture_dir().join(format!("{name}.json"))).expect("the fixture exists")
}

#[test]
fn the_fixture_directory_holds_every_event_schema_example_of_the_seed() {
    // Given the fixture directory for seed 001
    // When it is listed
    let names: Vec<String> = fixtures().into_iter().map(|(name, _)| name).collect();
    // Then it holds the eight EventSchema-shaped examples of the seed, one file each
    assert_eq!(
        names,
        [
            "customer_command",
            "customer_created",
            "kyc_status_changed",
            "loan_command",
            "loan_originated",
            "transaction_command",
            "transaction_created",
            "transaction_posted",
        ]
    );
}

#[test]
fn every_seed_example_parses_and_is_written_back_unchanged() {
    for (name, text) in fixtures() {
        // Given a seed example as a document
        let expected: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        // When it is parsed as an EventSchema and serialised again
        let event = EventSchema::from_json(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = serde_json::to_value(&event).unwrap();
        // Then nothing was added, dropped or changed, and the type is the one of the file
        assert_eq!(written, expected, "{name} did not round-trip");
        assert_eq!(event.event_type.as_str(), name);
    }
}

#[test]
fn seed_amounts_stay_strings_and_counts_stay_numbers() {
    // Given the seed's loan origination example
    let event = EventSchema::from_json(fixture("loan_originated").as_bytes()).unwrap();
    // When its data is read
    // Then the money amounts are strings, never floats, and the term is an integer
    assert_eq!(event.data["principal"], json!("10000.00"));
    assert_eq!(event.data["interest_rate"], json!("5.5"));
    assert_eq!(event.data["term_months"], json!(60));
    assert_eq!(event.entity_id, "loan_123");
    assert_eq!(event.default_key(), Some("loan_123"));
}

#[test]
fn a_seed_timestamp_is_read_as_utc() {
    // Given the seed's transaction_created example, the only one with a timestamp
    let event = EventSchema::from_json(fixture("transaction_created").as_bytes()).unwrap();
    // When its timestamp is read
    // Then it is the instant of the document, in UTC
    let expected: DateTime<Utc> = "2024-01-01T12:00:00Z".parse().unwrap();
    assert_eq!(event.timestamp, Some(expected));
    assert_eq!(event.metadata["correlation_id"], json!("corr_123"));
}

// ---------------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------------

#[test]
fn an_event_without_source_or_version_has_the_seed_defaults() {
    // Given seed examples that carry neither source nor version
    for name in ["customer_created", "transaction_command"] {
        let event = EventSchema::from_json(fixture(name).as_bytes()).unwrap();
        assert_eq!(event.source, None);
        assert_eq!(event.version, None);
        // When the source and version are asked for
        // Then they are the seed's defaults
        assert_eq!(event.source(), "nexum");
        assert_eq!(event.version(), "1.0");
        assert_eq!(event.source(), eventbus::envelope::DEFAULT_SOURCE);
        assert_eq!(event.version(), eventbus::envelope::DEFAULT_VERSION);
    }
}

#[test]
fn an_explicit_source_and_version_win_over_the_defaults() {
    // Given a document that names its own source and version
    let doc = br#"{"event_type": "x_happened", "source": "ledger", "version": "2.1"}"#;
    // When it is parsed
    let event = EventSchema::from_json(doc).unwrap();
    // Then those are reported
    assert_eq!(event.source(), "ledger");
    assert_eq!(event.version(), "2.1");
}

#[test]
fn a_new_event_is_complete_with_a_utc_timestamp_and_string_amounts() {
    // Given a payload with an amount as the seed writes it and one from Money
    let money = serde_json::to_value(Money::parse("100.50", "USD").unwrap()).unwrap();
    let data = json!({"transaction_type": "deposit", "amount": "100.50", "money": money});
    let Value::Object(data) = data else { unreachable!() };
    // When an event is built with `new` and serialised
    let event = EventSchema::new("transaction_created", "transaction", "txn_123", data)
        .with_metadata("correlation_id", "corr_123");
    let json = serde_json::to_value(&event).unwrap();
    // Then every field of the seed's schema is present
    for field in
        ["event_id", "event_type", "timestamp", "source", "version", "entity_type", "entity_id", "data", "metadata"]
    {
        assert!(json.get(field).is_some(), "`{field}` missing from {json}");
    }
    assert_eq!(json["source"], "nexum");
    assert_eq!(json["version"], "1.0");
    assert_eq!(json["event_type"], "transaction_created");
    assert_eq!(json["entity_type"], "transaction");
    assert_eq!(json["entity_id"], "txn_123");
    assert!(!json["event_id"].as_str().unwrap().is_empty());
    // And the timestamp is RFC 3339 in UTC, written with a `Z`, to the microsecond at most
    let timestamp = json["timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with('Z'), "{timestamp}");
    let parsed = DateTime::parse_from_rfc3339(timestamp).unwrap();
    assert_eq!(parsed.offset().local_minus_utc(), 0);
    assert_eq!(parsed.timestamp_subsec_nanos() % 1_000, 0, "more than microsecond precision: {timestamp}");
    assert_eq!(parsed.with_timezone(&Utc), event.timestamp.unwrap());
    // And amounts in data are strings, never numbers
    assert_eq!(json["data"]["amount"], json!("100.50"));
    assert_eq!(json["data"]["money"], json!({"amount": "100.50", "currency": "USD"}));
    // And the written document reads back as the same event
    assert_eq!(EventSchema::from_json(&event.to_json()).unwrap(), event);
}

#[test]
fn a_new_event_writes_all_nine_fields_even_with_empty_metadata() {
    // Given an event built with `new` and no metadata
    let event = EventSchema::new("customer_created", "customer", "cust_123", Map::new());
    // When it is serialised
    let json = serde_json::to_value(&event).unwrap();
    // Then all nine fields of the seed's EventSchema are written, empty data and metadata too
    let keys: BTreeSet<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> =
        ["event_id", "event_type", "timestamp", "source", "version", "entity_type", "entity_id", "data", "metadata"]
            .into();
    assert_eq!(keys, expected);
    assert_eq!((&json["data"], &json["metadata"]), (&json!({}), &json!({})));
}

#[test]
fn a_document_without_metadata_is_written_back_without_it_and_one_with_empty_metadata_keeps_it() {
    // Given two documents, one without metadata and one with it empty
    let without = r#"{"event_type":"t","data":{"a":1}}"#;
    let empty = r#"{"event_type":"t","data":{"a":1},"metadata":{}}"#;
    for document in [without, empty] {
        // When each is read and written again, then it is unchanged
        let event = EventSchema::from_json(document.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(event.to_json()).unwrap(), document);
    }
    // When metadata is added to the one without it, then it is written
    let mut event = EventSchema::from_json(without.as_bytes()).unwrap();
    event.metadata.insert("correlation_id".into(), json!("c-1"));
    assert!(String::from_utf8(event.to_json()).unwrap().contains(r#""metadata":{"correlation_id":"c-1"}"#));
}

#[test]
fn new_events_get_distinct_ids_and_completing_keeps_given_ones() {
    // Given two new events and one parsed without id or timestamp
    let a = EventSchema::new("t", "e", "1", Map::new());
    let b = EventSchema::new("t", "e", "1", Map::new());
    let mut c = EventSchema::from_json(fixture("loan_command").as_bytes()).unwrap();
    let mut d = a.clone();
    // When the parsed one and a complete one are completed
    c.complete();
    d.complete();
    // Then ids differ, the missing fields are filled, and given ones are kept
    assert_ne!(a.event_id, b.event_id);
    assert!(c.event_id.is_some() && c.timestamp.is_some());
    assert_eq!(d, a);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// Parses `doc`, expecting an error whose message contains every one of `words`.
fn assert_rejected(doc: &str, words: &[&str]) {
    let result = std::panic::catch_unwind(|| EventSchema::from_json(doc.as_bytes()));
    let result = result.unwrap_or_else(|_| panic!("parsing panicked on {doc}"));
    let err = result.expect_err(&format!("accepted {doc}"));
    let message = err.to_string();
    for word in words {
        assert!(message.contains(word), "the error for {doc} does not say `{word}`: {message}");
    }
}

#[test]
fn malformed_json_is_an_error_that_says_so() {
    // Given documents that are not JSON, or not whole
    // When they are parsed
    // Then each is an error saying the JSON is invalid, and where
    assert_rejected("", &["invalid event JSON", "EOF"]);
    assert_rejected(r#"{"event_type": "x""#, &["invalid event JSON", "EOF", "line 1"]);
    assert_rejected(r#"{"event_type": "x",}"#, &["invalid event JSON", "trailing comma"]);
    assert_rejected("not json", &["invalid event JSON", "expected"]);
    assert_rejected(r#" ["event_type", "x"]"#, &["invalid event JSON", "invalid type: sequence", "JSON object"]);
    assert_rejected("null", &["invalid event JSON", "invalid type: null"]);
}

#[test]
fn fields_of_the_wrong_type_are_errors_that_say_what_was_expected() {
    // Given documents with a field of the wrong type
    // When they are parsed
    // Then each is an error naming what was found and what was expected
    assert_rejected(r#"{"event_type": "x", "data": 5}"#, &["invalid type: integer `5`", "expected a map"]);
    assert_rejected(r#"{"event_type": "x", "data": "{}"}"#, &["invalid type: string", "expected a map"]);
    assert_rejected(r#"{"event_type": "x", "metadata": [1]}"#, &["invalid type: sequence", "expected a map"]);
    assert_rejected(r#"{"event_type": 3}"#, &["invalid type: integer `3`", "expected a string"]);
    assert_rejected(r#"{"event_type": "x", "event_id": 7}"#, &["invalid type: integer `7`", "expected a string"]);
    assert_rejected(r#"{"event_type": "x", "entity_id": 123}"#, &["invalid type: integer `123`", "expected a string"]);
    assert_rejected(r#"{"event_type": "x", "source": 5}"#, &["invalid type: integer `5`", "expected a string"]);
}

#[test]
fn a_timestamp_that_is_not_rfc_3339_is_an_error_that_names_the_timestamp() {
    // Given timestamps that are not RFC 3339 instants
    for bad in ["yesterday", "2024-01-01", "2024-13-01T00:00:00Z", "2024-01-01 12:00:00", ""] {
        let doc = format!(r#"{{"event_type": "x", "timestamp": "{bad}"}}"#);
        // When the document is parsed
        // Then it is an error that says the timestamp is bad, and shows it
        assert_rejected(&doc, &["invalid event JSON", "timestamp", &format!("`{bad}`"), "RFC 3339"]);
    }
    assert_rejected(r#"{"event_type": "x", "timestamp": 1704110400}"#, &["invalid event JSON", "timestamp"]);
}

#[test]
fn a_missing_or_empty_event_type_is_an_error_that_names_the_field() {
    // Given documents without an event type, or with an empty one
    // When they are parsed
    // Then each is an error naming `event_type`
    assert_rejected(r#"{"entity_type": "customer", "data": {}}"#, &["missing field `event_type`"]);
    assert_rejected("{}", &["missing field `event_type`"]);
    assert_rejected(r#"{"event_type": "", "data": {}}"#, &["missing required field `event_type`"]);
    assert_rejected(r#"{"event_type": null}"#, &["invalid type: null", "expected a string"]);
    // And an empty event id is rejected the same way
    assert_rejected(r#"{"event_type": "x", "event_id": ""}"#, &["missing required field `event_id`"]);
}

#[test]
fn bad_binary_messages_are_errors_not_panics() {
    // Given Kafka messages that are not events in either form
    let ce = |changes: &[(&str, Option<&str>)]| -> Vec<Header> {
        let mut headers: Vec<Header> =
            [("ce_specversion", "1.0"), ("ce_id", "1"), ("ce_source", "s"), ("ce_type", "t")]
                .iter()
                .map(|(name, value)| Header { name: (*name).into(), value: (*value).into() })
                .collect();
        for (name, value) in changes {
            headers.retain(|h| h.name != *name);
            if let Some(value) = value {
                headers.push(Header { name: (*name).into(), value: (*value).into() });
            }
        }
        headers
    };
    let cases: Vec<(Vec<Header>, &[u8], &str)> = vec![
        (vec![], b"not json", "invalid event JSON"),
        (vec![], br#"{"data": {}}"#, "missing field `event_type`"),
        (vec![], br#"["an id", "a type"]"#, "invalid type: sequence"),
        (ce(&[]), b"[1, 2]", "invalid CloudEvents attribute `data`"),
        (ce(&[("ce_specversion", Some("0.3"))]), b"{}", "unsupported CloudEvents specversion `0.3`"),
        (ce(&[("ce_time", Some("yesterday"))]), b"{}", "invalid CloudEvents attribute `time`"),
        (ce(&[("ce_id", None)]), b"{}", "missing required field `ce_id`"),
        (ce(&[("ce_id", Some(""))]), b"{}", "missing required field `event_id`"),
        (ce(&[("ce_type", None)]), b"{}", "missing required field `ce_type`"),
        (ce(&[("ce_type", Some(""))]), b"{}", "missing required field `event_type`"),
        (ce(&[("ce_entitytype", Some(""))]), b"{}", ""),
    ];
    for (headers, value, words) in cases {
        // When each is decoded
        let result = std::panic::catch_unwind(|| from_binary(&headers, value)).expect("decoding panicked");
        // Then it is an error saying what is wrong (the last case is valid: an empty entity type)
        if words.is_empty() {
            assert_eq!(result.unwrap().entity_type, "");
            continue;
        }
        let message = result.expect_err(&format!("accepted {headers:?}")).to_string();
        assert!(message.contains(words), "`{message}` does not say `{words}`");
    }
}

#[test]
fn a_cloud_event_without_an_id_cannot_be_made_from_an_incomplete_event() {
    // Given a seed command, which has no event_id
    let event = EventSchema::from_json(fixture("customer_command").as_bytes()).unwrap();
    // When it is mapped to CloudEvents
    // Then it is an error naming the missing id, in both modes
    let message = CloudEvent::from_event(&event).unwrap_err().to_string();
    assert!(message.contains("event_id"), "{message}");
    assert!(to_binary(&event).unwrap_err().to_string().contains("event_id"));
}

// ---------------------------------------------------------------------------------------------
// Masking
// ---------------------------------------------------------------------------------------------

#[test]
fn masking_the_seed_customer_hides_names_email_and_phone() {
    // Given the seed's customer_created payload
    let event = EventSchema::from_json(fixture("customer_created").as_bytes()).unwrap();
    let data = event.data.to_value();
    // When it is masked for a log line
    let out = masked(&data);
    // Then names, email and phone are hidden, and the KYC fields are kept
    for field in ["first_name", "last_name", "email", "phone"] {
        assert_ne!(out[field], data[field], "{field} was not masked");
        assert!(out[field].as_str().unwrap().contains("***"), "{field}: {}", out[field]);
    }
    assert_eq!(out["kyc_status"], "verified");
    assert_eq!(out["kyc_tier"], "tier_2");
    let text = out.to_string();
    for secret in ["John", "Doe", "john@", "1234567890"] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
    // And the event itself is untouched
    assert_eq!(event.data["first_name"], "John");
}

#[test]
fn masking_a_whole_event_reaches_personal_data_in_data_and_metadata() {
    // Given the seed's customer command, with a user's email in its metadata too
    let event = EventSchema::from_json(fixture("customer_command").as_bytes())
        .unwrap()
        .with_metadata("requested_by", json!({"email": "ops@bank.example", "user_id": "u1"}));
    // When the whole event is masked
    let out = masked(&serde_json::to_value(&event).unwrap());
    // Then no personal value survives anywhere, and the rest is unchanged
    let text = out.to_string();
    for secret in ["Jane", "Smith", "jane@", "ops@"] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
    assert_eq!(out["event_type"], "customer_command");
    assert_eq!(out["data"]["action"], "create");
    assert_eq!(out["metadata"]["requested_by"]["user_id"], "u1");
}

// ---------------------------------------------------------------------------------------------
// CloudEvents on the seed examples
// ---------------------------------------------------------------------------------------------

#[test]
fn the_seed_transaction_maps_to_cloud_events_as_documented() {
    // Given the seed's transaction_created example, which has every field but source and version
    let event = EventSchema::from_json(fixture("transaction_created").as_bytes()).unwrap();
    // When it is mapped to a structured CloudEvent
    let ce = serde_json::to_value(CloudEvent::from_event(&event).unwrap()).unwrap();
    // Then the attributes follow the documented mapping
    assert_eq!(
        ce,
        json!({
            "specversion": "1.0",
            "id": "uuid",
            "source": "nexum",
            "type": "transaction_created",
            "time": "2024-01-01T12:00:00Z",
            "subject": "txn_123",
            "datacontenttype": "application/json",
            "data": event.data,
            "entitytype": "transaction",
            "correlationid": "corr_123",
            "userid": "user_456",
        })
    );
    // And in binary mode the headers carry the attributes and tracing ids, not the user
    let (headers, value) = to_binary(&event).unwrap();
    let headers: Vec<(&str, &str)> = headers.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
    assert_eq!(
        headers,
        [
            ("ce_specversion", "1.0"),
            ("ce_id", "uuid"),
            ("ce_source", "nexum"),
            ("ce_type", "transaction_created"),
            ("ce_time", "2024-01-01T12:00:00Z"),
            ("ce_subject", "txn_123"),
            ("content-type", "application/json"),
            ("ce_correlationid", "corr_123"),
            ("ce_entitytype", "transaction"),
        ]
    );
    assert_eq!(EventSchema::from_json(&value).unwrap(), event);
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Keys a producer is likely to use, including ones that collide with CloudEvents attribute
/// names, with the names the mapping reserves, and with EventSchema's own fields.
const INTERESTING_KEYS: &[&str] = &[
    "amount",
    "currency",
    "correlation_id",
    "causation_id",
    "user_id",
    "correlationid",
    "userid",
    "trace_id",
    "traceparent",
    "tracestate",
    "id",
    "type",
    "source",
    "time",
    "subject",
    "data",
    "specversion",
    "datacontenttype",
    "dataschema",
    "entitytype",
    "schemaversion",
    "nexummetadata",
    "nexum_metadata",
    "entity_type",
    "schema_version",
    "event_type",
    "event_id",
    "version",
    "content-type",
    "Group",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(INTERESTING_KEYS).prop_map(String::from),
        3 => "[a-z][a-z0-9_]{0,24}",
        1 => any::<String>(),
    ]
}

/// JSON scalars as producers write them: amounts as strings, counts as integers, and some floats
/// of the kind a JSON parser reads back exactly.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-10_000_000_000_i64..10_000_000_000).prop_map(|cents| Value::from(cents as f64 / 100.0)),
        "-?(0|[1-9][0-9]{0,12})\\.[0-9]{2}".prop_map(Value::from),
        "[a-zA-Z0-9_ .:/@+-]{0,24}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn json_map() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), json_value()), 0..8).prop_map(|entries| entries.into_iter().collect())
}

fn non_empty() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z][a-z0-9_.-]{0,30}", any::<String>().prop_filter("non-empty", |s| !s.is_empty())]
}

/// An instant between the years 1 and 9999, to the microsecond.
fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800_000_000_i64..=253_402_300_799_999_999)
        .prop_map(|micros| DateTime::from_timestamp_micros(micros).expect("the range is within what chrono represents"))
}

prop_compose! {
    /// A complete event, as a publisher sends it.
    fn complete_event()(
        id in non_empty(),
        event_type in non_empty(),
        timestamp in timestamp(),
        source in any::<String>(),
        version in any::<String>(),
        entity_type in any::<String>(),
        entity_id in any::<String>(),
        data in json_map(),
        metadata in json_map(),
    ) -> EventSchema {
        EventSchema {
            event_id: Some(id.parse::<EventId>().unwrap()),
            event_type: EventType::from(event_type.as_str()),
            timestamp: Some(timestamp),
            source: Some(source),
            version: Some(version),
            entity_type,
            entity_id,
            data: data.into(),
            metadata: metadata.into(),
        }
    }
}

/// Personal values, long and unusual enough that no other field contains them by chance.
#[derive(Clone, Debug)]
struct Person {
    first_name: String,
    email: String,
    phone: String,
}

impl Person {
    fn values(&self) -> [&str; 3] {
        [&self.first_name, &self.email, &self.phone]
    }
}

prop_compose! {
    fn person()(
        first_name in "[A-Z][a-z]{9,14}",
        email in "[a-z]{6,10}\\.[a-z]{6,10}@[a-z]{5,9}\\.example",
        phone in "\\+[1-9][0-9]{10,12}",
    ) -> Person {
        Person { first_name, email, phone }
    }
}

/// A complete event about a customer: personal data in `data` and in `metadata`, at the top
/// and nested.
fn event_with_person() -> impl Strategy<Value = (EventSchema, Person)> {
    (complete_event(), person()).prop_map(|(mut event, person)| {
        let record = json!({"first_name": person.first_name, "email": person.email, "phone": person.phone});
        event.data.extend(record.as_object().unwrap().clone());
        event.data.insert("contact".into(), record.clone());
        event.metadata.extend(record.as_object().unwrap().clone());
        event.metadata.insert("requested_by".into(), record);
        (event, person)
    })
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name == name).map(|h| h.value.as_str())
}

fn is_lower_alnum(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn json_round_trip_keeps_the_event(event in complete_event()) {
        // Given a complete event
        // When it is written as JSON and read back
        let back = EventSchema::from_json(&event.to_json());
        // Then it is the same event
        prop_assert_eq!(back.unwrap(), event);
    }

    #[test]
    fn structured_cloud_event_round_trip_keeps_the_event(event in complete_event()) {
        // Given a complete event
        // When it is mapped to a structured CloudEvent, sent as JSON text, and mapped back
        let ce = CloudEvent::from_event(&event).unwrap();
        let text = serde_json::to_string(&ce).unwrap();
        let received: CloudEvent = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        let back = received.into_event().unwrap();
        // Then it is the same event
        prop_assert_eq!(back, event);
    }

    #[test]
    fn binary_mode_round_trip_keeps_the_event(event in complete_event()) {
        // Given a complete event
        // When it is encoded as a Kafka message in binary mode and decoded
        let (headers, value) = to_binary(&event).unwrap();
        let back = from_binary(&headers, &value).unwrap();
        // Then it is the same event
        prop_assert_eq!(back, event);
    }

    #[test]
    fn binary_headers_are_well_named_and_carry_no_personal_data((event, person) in event_with_person()) {
        // Given a complete event with personal data in its data and metadata
        // When it is encoded in binary mode
        let (headers, _) = to_binary(&event).unwrap();
        // Then every header is a CloudEvents attribute or a `ce_` extension of a valid name
        let known = ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "content-type"];
        for h in &headers {
            let ok = known.contains(&h.name.as_str())
                || h.name.strip_prefix("ce_").is_some_and(is_lower_alnum);
            prop_assert!(ok, "bad header name {:?}", h.name);
        }
        // And each header appears once
        let names: BTreeSet<&str> = headers.iter().map(|h| h.name.as_str()).collect();
        prop_assert_eq!(names.len(), headers.len(), "duplicate headers: {:?}", headers);
        // And no header value holds a personal value
        for h in &headers {
            for secret in person.values() {
                prop_assert!(!h.value.contains(secret), "header {} leaks {}", h.name, secret);
            }
        }
    }

    #[test]
    fn structured_extension_names_follow_cloud_events((event, _) in event_with_person()) {
        // Given a complete event, personal data included
        // When it is mapped to a structured CloudEvent
        let ce = CloudEvent::from_event(&event).unwrap();
        // Then every extension name is 1 to 20 lowercase letters or digits, and no extension
        // shadows a context attribute
        let reserved = ["specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data", "dataschema"];
        for name in ce.extensions.keys() {
            prop_assert!(
                name.len() <= 20 && is_lower_alnum(name),
                "bad extension name {:?}", name
            );
            prop_assert!(!reserved.contains(&name.as_str()), "extension {:?} shadows an attribute", name);
        }
        // And every extension value is a scalar
        for (name, value) in &ce.extensions {
            prop_assert!(!value.is_object() && !value.is_array() && !value.is_null(), "{} = {}", name, value);
        }
    }

    #[test]
    fn binary_mode_with_only_data_as_the_value_decodes(event in complete_event()) {
        // Given the headers of a binary-mode message, and as the value only the event's data, as
        // other CloudEvents producers send it
        let (headers, _) = to_binary(&event).unwrap();
        let value = serde_json::to_vec(&event.data).unwrap();
        // When the message is decoded
        let back = from_binary(&headers, &value).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        // Then the attributes come from the headers and the data from the value
        prop_assert_eq!(&back.event_id, &event.event_id);
        prop_assert_eq!(&back.event_type, &event.event_type);
        prop_assert_eq!(back.source(), event.source());
        prop_assert_eq!(back.timestamp, event.timestamp);
        prop_assert_eq!(&back.entity_id, &event.entity_id);
        prop_assert_eq!(&back.entity_type, &event.entity_type);
        prop_assert_eq!(back.version(), event.version());
        prop_assert_eq!(&back.data, &event.data);
        // And the tracing ids in the headers come back as metadata
        if let Some(correlation) = header(&headers, "ce_correlationid") {
            prop_assert_eq!(back.metadata.get("correlation_id"), Some(&Value::from(correlation)));
        }
    }
}

#[test]
fn binary_time_header_is_rfc_3339_utc() {
    // Given an event at a known instant with microseconds
    let at: DateTime<Utc> = "2024-02-29T23:59:59.123456Z".parse().unwrap();
    let event = EventSchema::new("t", "e", "1", Map::new()).with_timestamp(at);
    // When it is encoded in binary mode
    let (headers, _) = to_binary(&event).unwrap();
    // Then `ce_time` is the instant in RFC 3339 with a `Z`
    assert_eq!(header(&headers, "ce_time"), Some(at.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_str()));
    assert_eq!(header(&headers, "ce_time"), Some("2024-02-29T23:59:59.123456Z"));
}

#[test]
fn a_structured_mode_cloud_event_without_headers_is_read_as_an_event() {
    // Given a structured-mode CloudEvent as another producer would write it, with no headers
    let value = br#"{"specversion": "1.0", "id": "evt-1", "source": "core", "type": "transaction_created",
        "time": "2024-01-01T12:00:00Z", "subject": "txn_123", "datacontenttype": "application/json",
        "entitytype": "transaction", "correlationid": "corr_123", "data": {"amount": "100.50", "currency": "USD"}}"#;
    // When it is decoded
    let event = from_binary(&[], value).unwrap();
    // Then every attribute lands in its EventSchema field
    assert_eq!(event.event_id.as_ref().unwrap().to_string(), "evt-1");
    assert_eq!(event.event_type.as_str(), "transaction_created");
    assert_eq!(event.source(), "core");
    assert_eq!(event.entity_id, "txn_123");
    assert_eq!(event.entity_type, "transaction");
    assert_eq!(event.data["amount"], "100.50");
    assert_eq!(event.metadata["correlation_id"], "corr_123");
}
