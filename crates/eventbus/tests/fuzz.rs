//! Fault suite R3: the envelope decoders under hostile input. Fuzzed here:
//!
//! - `EventSchema::from_json`, the seed's nine-field flat JSON;
//! - a structured-mode CloudEvent, read as the bus reads it: `CloudEvent` deserialised from the
//!   bytes, then `into_event`;
//! - binary mode, `from_binary(headers, value)`: `ce_*` Kafka headers beside a value.
//!
//! Each must answer `Ok` or `Err` and never panic. What one accepts must be what a plain JSON
//! reader sees in the same bytes, and must encode and decode again to the same event.
//!
//! The inputs know the formats: random bytes; valid documents with a field retyped, removed,
//! duplicated, or spelled with `\u` escapes; huge, negative and fractional numbers; very long
//! strings; invalid UTF-8 and lone surrogates; 10,000 levels of nesting (serde_json must stop at
//! its recursion limit with an error, not overflow the stack); NaN-like strings; unknown
//! versions; timestamps at the edges of what chrono and RFC 3339 allow; and the bytes of a
//! document truncated, flipped or wrapped.
//!
//! 2,000 cases per decoder by default (the CI run); `EVENTBUS_FAULTS=full` runs 100,000:
//!
//! ```text
//! EVENTBUS_FAULTS=full cargo test --release -p eventbus --test fuzz -- --nocapture
//! ```
//!
//! After each decoder's run, a passing property prints one line to stderr for the fault-suite
//! script: `fault-suite: R3 | <decoder> | <cases> cases, 0 panics | <seconds> s`.

#[path = "common/fuzzing.rs"]
mod fuzzing;

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use eventbus::EventSchema;
use eventbus::envelope::{CloudEvent, Header, from_binary, to_binary};
use fuzzing::{fuzz, must};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::Deserialize;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

/// Whether two events are the same. Floats included: serde_json is built with
/// `float_roundtrip`, so a float read back is the double that was written.
fn same_event(a: &EventSchema, b: &EventSchema) -> Result<(), TestCaseError> {
    let value = |event: &EventSchema| serde_json::to_value(event).expect("an event serialises");
    match difference("", &value(a), &value(b)) {
        None => Ok(()),
        Some(at) => Err(TestCaseError::fail(format!("the events differ at {at}\n  one:   {a:?}\n  other: {b:?}"))),
    }
}

/// Where `a` and `b` first differ, as a path, if they do.
fn difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(n, (x, y))| difference(&format!("{path}[{n}]"), x, y))
        }
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => x.iter().find_map(|(key, x)| match y.get(key) {
            Some(y) => difference(&format!("{path}.{key}"), x, y),
            None => Some(format!("{path}.{key}: only in one")),
        }),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

/// Bytes, shown as text (lossy, cut at 2,000 characters) when a case fails.
#[derive(Clone)]
struct Doc(Vec<u8>);

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        if text.chars().count() <= 2_000 {
            return write!(f, "{text:?}");
        }
        let head: String = text.chars().take(2_000).collect();
        write!(f, "{} bytes: {head:?}…", self.0.len())
    }
}

// ---------------------------------------------------------------------------------------------
// JSON fragments: the values that go where a field is expected
// ---------------------------------------------------------------------------------------------

type Bytes = Vec<u8>;
/// One member of a JSON object as text: the key (quotes included) and the value.
type Entry = (Bytes, Bytes);

/// A JSON string literal of `s`.
fn quoted(s: &str) -> Bytes {
    serde_json::to_vec(s).expect("a string serialises")
}

/// Keys producers write, and keys of the envelope itself in the wrong place.
const KEYS: &[&str] = &[
    "action",
    "account_id",
    "from_account_id",
    "to_account_id",
    "amount",
    "currency",
    "customer_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "principal",
    "interest_rate",
    "term_months",
    "correlation_id",
    "causation_id",
    "user_id",
    "traceparent",
    "event_type",
    "event_id",
    "specversion",
    "data",
    "id",
    "type",
    "",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(String::from),
        2 => "[a-z_]{1,12}",
        1 => any::<String>(),
    ]
}

/// Any JSON value serde_json can hold, with the keys and scalars of banking documents.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("a finite float", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        "-?(0|[1-9][0-9]{0,12})\\.[0-9]{2}".prop_map(Value::from),
        prop::sample::select(NAN_LIKE).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn json_text() -> impl Strategy<Value = Bytes> {
    json_value().prop_map(|value| serde_json::to_vec(&value).expect("a Value serialises"))
}

/// Strings that look like numbers, or like what a number is not.
const NAN_LIKE: &[&str] = &[
    "NaN",
    "nan",
    "-NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "+inf",
    "1e999",
    "-0",
    "0x10",
    "1_000",
    "1,000.00",
    "100.505",
    "\u{0661}\u{0660}\u{0660}",
    "\u{ff11}\u{ff10}\u{ff10}",
    "\u{202e}100.50",
    " 1.00",
    "1.00 ",
    "",
    " ",
    "\u{0}",
    "null",
    "undefined",
    "true",
];

/// Numbers at and past the edges of what a reader holds: huge, negative, fractional, tiny, and
/// forms JSON does not allow.
fn hostile_number() -> impl Strategy<Value = Bytes> {
    const EDGES: &[&str] = &[
        "1e400",
        "-1e400",
        "1e-400",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "340282366920938463463374607431768211456",
        "0.1",
        "-0",
        "-0.0",
        "1E+2",
        "4.9e-324",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "123456789012345678901234567890.123456789",
        "00",
        "01",
        "1.",
        ".5",
        "+1",
        "0x10",
        "NaN",
        "Infinity",
        "-Infinity",
        "1_000",
        "--1",
        "1e",
        "1e+",
    ];
    prop_oneof![
        4 => prop::sample::select(EDGES).prop_map(|s| s.as_bytes().to_vec()),
        1 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        1 => any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        1 => any::<f64>().prop_map(|f| format!("{f:?}").into_bytes()),
        1 => "-?[1-9][0-9]{0,400}".prop_map(String::into_bytes),
        1 => "-?0\\.[0-9]{1,400}".prop_map(String::into_bytes),
        1 => "-?[1-9][0-9]{0,3}(\\.[0-9]{1,3})?[eE][+-]?[0-9]{1,6}".prop_map(String::into_bytes),
    ]
}

/// Strings JSON forbids or that no UTF-8 string can hold: lone surrogates, bad escapes, invalid
/// UTF-8, raw control characters, no closing quote.
fn broken_string() -> impl Strategy<Value = Bytes> {
    const BROKEN: &[&[u8]] = &[
        b"\"\\ud800\"",
        b"\"\\udc00\"",
        b"\"\\ud800\\ud800\"",
        b"\"\\ud800\\u0041\"",
        b"\"\\uD83D\\uDE00\"",
        b"\"\\u12\"",
        b"\"\\uZZZZ\"",
        b"\"\\x41\"",
        b"\"\\\"",
        b"\"abc",
        b"\"\xff\"",
        b"\"\xfe\xff\"",
        b"\"\xc0\x80\"",
        b"\"\xed\xa0\x80\"",
        b"\"\xe2\x82\"",
        b"\"\xf4\x90\x80\x80\"",
        b"\"a\nb\"",
        b"\"\t\"",
        b"\"\x00\"",
        b"\"\\u0000\"",
    ];
    prop_oneof![
        3 => prop::sample::select(BROKEN).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(|inner| [&b"\""[..], &inner, b"\""].concat()),
    ]
}

/// A string of up to 70,000 characters, of one kind: ASCII, accented, astral, or ones that
/// must be escaped.
fn long_string() -> impl Strategy<Value = Bytes> {
    let char = prop_oneof![Just('a'), Just('é'), Just('\u{1F600}'), Just('"'), Just('\\'), Just('\n'), any::<char>()];
    (0..70_000usize, char).prop_map(|(n, c)| quoted(&c.to_string().repeat(n)))
}

/// Arrays and objects nested up to 100,000 deep, closed or not: around and past the 126 levels
/// an event's data may take and serde_json's recursion limit (127 levels), which must answer an
/// error rather than overflow the stack.
fn deep_nesting() -> impl Strategy<Value = Bytes> {
    let depth = prop_oneof![
        prop::sample::select(&[64usize, 125, 126, 127, 128, 129, 256, 10_000, 100_000][..]),
        1..20_000usize,
    ];
    (depth, 0..4u8).prop_map(|(depth, kind)| match kind {
        0 => ["[".repeat(depth), "]".repeat(depth)].concat().into_bytes(),
        1 => ["{\"a\":".repeat(depth), "1".into(), "}".repeat(depth)].concat().into_bytes(),
        2 => "[".repeat(depth).into_bytes(),
        _ => ["[{\"a\":".repeat(depth / 2), "null".into(), "}]".repeat(depth / 2)].concat().into_bytes(),
    })
}

/// Tokens that are not JSON, or not one value.
fn junk() -> impl Strategy<Value = Bytes> {
    const JUNK: &[&[u8]] = &[
        b"NaN",
        b"undefined",
        b"'x'",
        b"",
        b",",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b"nul",
        b"tru",
        b"1,",
        b"\"a\" \"b\"",
        b"/* c */ 1",
        b"[1,]",
        b"{\"a\":1,}",
        b"\xef\xbb\xbf{}",
    ];
    prop::sample::select(JUNK).prop_map(<[u8]>::to_vec)
}

/// A value that is not a container, hostile or not.
fn leaf_fragment() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => json_text(),
        2 => hostile_number(),
        2 => prop::sample::select(NAN_LIKE).prop_map(quoted),
        2 => broken_string(),
        1 => junk(),
    ]
}

/// An object built as text, so that it can hold what a `Value` cannot: duplicate keys, keys
/// that are lone surrogates or not strings, numbers out of range.
fn hostile_object() -> impl Strategy<Value = Bytes> {
    const ODD_KEYS: &[&[u8]] = &[b"\"\\ud800\"", b"\"\\udfff\"", b"\"a\\u0000b\"", b"1", b"a", b"null", b"\"\xff\""];
    let hostile_key = prop_oneof![
        4 => key().prop_map(|k| quoted(&k)),
        1 => prop::sample::select(ODD_KEYS).prop_map(<[u8]>::to_vec),
        1 => (1..5_000usize).prop_map(|n| quoted(&"k".repeat(n))),
    ];
    prop::collection::vec((hostile_key, leaf_fragment()), 0..6).prop_map(render)
}

/// Anything that might be sent where a field's value is expected.
fn fragment() -> BoxedStrategy<Bytes> {
    prop_oneof![
        4 => json_text(),
        2 => hostile_number(),
        2 => prop::sample::select(NAN_LIKE).prop_map(quoted),
        2 => broken_string(),
        1 => long_string(),
        1 => deep_nesting(),
        2 => hostile_object(),
        1 => junk(),
        1 => prop::collection::vec(any::<u8>(), 0..32),
    ]
    .boxed()
}

/// `{"key": value, ...}` from its members, as they are.
fn render(entries: Vec<Entry>) -> Bytes {
    let mut doc = b"{".to_vec();
    for (n, (key, value)) in entries.into_iter().enumerate() {
        if n > 0 {
            doc.push(b',');
        }
        doc.extend(key);
        doc.push(b':');
        doc.extend(value);
    }
    doc.push(b'}');
    doc
}

/// The key with its first character written as a `\u` escape: the same key to a JSON reader.
fn escaped_key(name: &str) -> Bytes {
    let mut chars = name.chars();
    let first = chars.next().map(|c| format!("\\u{:04x}", c as u32)).unwrap_or_default();
    format!("\"{first}{}\"", chars.as_str()).into_bytes()
}

/// A field of a document: as it should be most of the time (so that a document has a mutation
/// or two, not one in every field), else removed, given a value of another type, duplicated, or
/// spelled with an escape.
fn field(name: &'static str, valid: BoxedStrategy<Bytes>) -> BoxedStrategy<Vec<Entry>> {
    prop_oneof![
        40 => valid.clone().prop_map(move |v| vec![(quoted(name), v)]),
        1 => Just(vec![]),
        2 => fragment().prop_map(move |v| vec![(quoted(name), v)]),
        1 => (valid.clone(), fragment()).prop_map(move |(a, b)| vec![(quoted(name), a), (quoted(name), b)]),
        1 => valid.prop_map(move |v| vec![(escaped_key(name), v)]),
    ]
    .boxed()
}

/// The members of a document with `fields`, each mutated as [`field`] does, plus up to three
/// unknown members, in any order.
fn members(
    fields: Vec<(&'static str, BoxedStrategy<Bytes>)>,
    extra_keys: BoxedStrategy<String>,
) -> BoxedStrategy<Vec<Entry>> {
    let fields: Vec<_> = fields.into_iter().map(|(name, valid)| field(name, valid)).collect();
    let extras = prop_oneof![
        3 => Just(vec![]),
        1 => prop::collection::vec((extra_keys.prop_map(|k| quoted(&k)), fragment()), 1..4),
    ];
    (fields, extras)
        .prop_flat_map(|(fields, extras)| {
            Just(fields.into_iter().flatten().chain(extras).collect::<Vec<_>>()).prop_shuffle()
        })
        .boxed()
}

/// What can happen to a document's bytes on the way.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Truncate(Index),
    Insert(Index, u8),
    Flip(Index, u8),
    Append(Bytes),
    WrapInArray,
    Bom,
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        24 => Just(Damage::None),
        1 => any::<Index>().prop_map(Damage::Truncate),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Damage::Insert(at, byte)),
        1 => (any::<Index>(), 1..=255u8).prop_map(|(at, bits)| Damage::Flip(at, bits)),
        1 => prop_oneof![junk(), fragment()].prop_map(Damage::Append),
        1 => Just(Damage::WrapInArray),
        1 => Just(Damage::Bom),
    ]
}

fn damaged(doc: Bytes, damage: Damage) -> Doc {
    let mut doc = doc;
    match damage {
        Damage::None => {}
        Damage::Truncate(at) => doc.truncate(at.index(doc.len() + 1)),
        Damage::Insert(at, byte) => doc.insert(at.index(doc.len() + 1), byte),
        Damage::Flip(at, bits) if !doc.is_empty() => {
            let at = at.index(doc.len());
            doc[at] ^= bits;
        }
        Damage::Flip(..) => {}
        Damage::Append(tail) => doc.extend(tail),
        Damage::WrapInArray => doc = [&b"["[..], &doc, b"]"].concat(),
        Damage::Bom => doc = [&b"\xef\xbb\xbf"[..], &doc].concat(),
    }
    Doc(doc)
}

// ---------------------------------------------------------------------------------------------
// Valid values of the envelope's fields
// ---------------------------------------------------------------------------------------------

fn event_id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string().to_uppercase()),
        3 => "(evt|cmd)_[a-z0-9_.-]{1,40}",
        1 => any::<String>(),
        1 => Just(String::new()),
    ]
}

fn event_type_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(
            &["transaction_created", "transaction_command", "customer_command", "loan_command", "account_created"][..]
        )
        .prop_map(String::from),
        2 => "[a-z][a-z_]{0,30}",
        1 => Just(String::new()),
        1 => any::<String>(),
    ]
}

/// Schema versions: the known, unknown ones, and ones that are barely versions.
fn version_text() -> impl Strategy<Value = String> {
    const VERSIONS: &[&str] = &[
        "1.0",
        "1",
        "1.1",
        "1.99",
        "2.0",
        "0.9",
        "",
        "1.0.0",
        "v1",
        "01.0",
        " 1.0",
        "999999999999999999999.0",
        "1.0\u{0}",
    ];
    prop_oneof![3 => prop::sample::select(VERSIONS).prop_map(String::from), 1 => any::<String>()]
}

/// CloudEvents versions: 1.0 most of the time, else one that is not.
fn specversion_text() -> impl Strategy<Value = String> {
    const OTHERS: &[&str] = &["0.3", "1.0.0", "2.0", "1", "", " 1.0", "1.0 ", "1.0\u{0}", "1.00", "v1.0"];
    prop_oneof![12 => Just("1.0".to_owned()), 1 => prop::sample::select(OTHERS).prop_map(String::from), 1 => any::<String>()]
}

/// An instant between the years 1 and 9999, to the nanosecond.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800_i64..=253_402_300_799, 0..1_000_000_000u32).prop_map(|(secs, nanos)| {
        DateTime::from_timestamp(secs, nanos).expect("the range is within what chrono represents")
    })
}

/// Timestamps as RFC 3339 text in every precision, and at and past the edges: years 0 and 9999
/// with offsets that carry them out of range, leap seconds, days that do not exist, years
/// chrono can hold but RFC 3339 cannot.
fn timestamp_text() -> impl Strategy<Value = String> {
    const EDGES: &[&str] = &[
        "0000-01-01T00:00:00Z",
        "0000-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59.999999999Z",
        "2016-12-31T23:59:60Z",
        "2016-12-31T23:59:60.999999999+01:00",
        "2024-06-01T12:34:60Z",
        "2024-02-30T00:00:00Z",
        "2024-01-01t12:00:00z",
        "2024-01-01 12:00:00Z",
        "2024-01-01T12:00:00",
        "2024-01-01",
        "+10000-01-01T00:00:00Z",
        "-0001-01-01T00:00:00Z",
        "+262143-12-31T23:59:59Z",
        "+262144-01-01T00:00:00Z",
        "-262144-01-01T00:00:00Z",
        "2024-01-01T12:00:00.1234567890123Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T12:00:00+24:00",
        "2024-01-01T12:00:00+99:99",
        "1970-01-01T00:00:00-00:00",
        "",
    ];
    let format = prop::sample::select(
        &[
            SecondsFormat::Secs,
            SecondsFormat::Millis,
            SecondsFormat::Micros,
            SecondsFormat::Nanos,
            SecondsFormat::AutoSi,
        ][..],
    );
    prop_oneof![
        3 => (instant(), format, any::<bool>()).prop_map(|(at, format, z)| at.to_rfc3339_opts(format, z)),
        1 => prop::sample::select(EDGES).prop_map(String::from),
    ]
}

fn timestamp_fragment() -> BoxedStrategy<Bytes> {
    prop_oneof![6 => timestamp_text().prop_map(|t| quoted(&t)), 1 => Just(b"null".to_vec())].boxed()
}

/// An object for `data` or `metadata`: most of the time one a `Value` can hold, else one built
/// as text.
fn object_fragment() -> BoxedStrategy<Bytes> {
    prop_oneof![
        8 => prop::collection::vec((key(), json_value()), 0..8)
            .prop_map(|entries| serde_json::to_vec(&Value::Object(entries.into_iter().collect())).expect("serialises")),
        1 => hostile_object(),
    ]
    .boxed()
}

fn string_fragment(strategy: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Bytes> {
    strategy.prop_map(|s| quoted(&s)).boxed()
}

/// The seed's nine fields, `event_id` and `event_type` left out when the caller supplies them.
fn envelope_fields(skip: &[&str]) -> Vec<(&'static str, BoxedStrategy<Bytes>)> {
    let fields: Vec<(&'static str, BoxedStrategy<Bytes>)> = vec![
        ("event_id", string_fragment(event_id_text())),
        ("event_type", string_fragment(event_type_text())),
        ("timestamp", timestamp_fragment()),
        ("source", string_fragment(any::<String>())),
        ("version", string_fragment(version_text())),
        ("entity_type", string_fragment(any::<String>())),
        ("entity_id", string_fragment(any::<String>())),
        ("data", object_fragment()),
        ("metadata", object_fragment()),
    ];
    fields.into_iter().filter(|(name, _)| !skip.contains(name)).collect()
}

/// A flat EventSchema document, mutated field by field and then possibly damaged.
fn envelope_document() -> BoxedStrategy<Doc> {
    (members(envelope_fields(&[]), key().boxed()), damage())
        .prop_map(|(entries, damage)| damaged(render(entries), damage))
        .boxed()
}

/// A structured-mode CloudEvent document, mutated attribute by attribute, with extensions.
fn cloud_event_document() -> BoxedStrategy<Doc> {
    let nexum_metadata = prop_oneof![
        6 => object_fragment().prop_map(|o| quoted(&String::from_utf8_lossy(&o))),
        1 => fragment().prop_map(|f| quoted(&String::from_utf8_lossy(&f))),
    ];
    let scalar = prop_oneof![
        any::<String>().prop_map(|s| quoted(&s)),
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        any::<bool>().prop_map(|b| b.to_string().into_bytes()),
    ];
    let fields: Vec<(&'static str, BoxedStrategy<Bytes>)> = vec![
        ("specversion", string_fragment(specversion_text())),
        ("id", string_fragment(event_id_text())),
        ("source", string_fragment(any::<String>())),
        ("type", string_fragment(event_type_text())),
        ("time", timestamp_fragment()),
        ("subject", string_fragment(any::<String>())),
        ("datacontenttype", string_fragment(prop_oneof![Just("application/json".to_owned()), any::<String>()])),
        ("data", prop_oneof![4 => object_fragment(), 1 => Just(b"null".to_vec())].boxed()),
        ("entitytype", string_fragment(any::<String>())),
        ("schemaversion", string_fragment(version_text())),
        ("nexummetadata", nexum_metadata.boxed()),
        ("correlationid", scalar.clone().boxed()),
        ("userid", scalar.boxed()),
    ];
    let extension_names = prop_oneof![
        3 => "[a-z0-9]{1,20}",
        1 => prop::sample::select(
            &["Correlation_Id", "correlation_id", "user_id", "event_type", "A", "ce_x", "traceparent", "entity_type"][..]
        )
        .prop_map(String::from),
        1 => "[a-z0-9]{21,40}",
        1 => key(),
    ];
    (members(fields, extension_names.boxed()), damage())
        .prop_map(|(entries, damage)| damaged(render(entries), damage))
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Kafka headers
// ---------------------------------------------------------------------------------------------

fn header(name: &str, value: String) -> Header {
    Header { name: name.to_owned(), value }
}

/// One header of binary mode: as it should be most of the time, else missing, twice, or with
/// any text.
fn header_field(name: &'static str, valid: BoxedStrategy<String>) -> BoxedStrategy<Vec<Header>> {
    prop_oneof![
        20 => valid.clone().prop_map(move |v| vec![header(name, v)]),
        1 => Just(vec![]),
        1 => (valid, any::<String>()).prop_map(move |(a, b)| vec![header(name, a), header(name, b)]),
        1 => any::<String>().prop_map(move |v| vec![header(name, v)]),
    ]
    .boxed()
}

/// The headers binary mode writes, each mutated, plus unknown ones, in any order.
fn ce_headers() -> BoxedStrategy<Vec<Header>> {
    let metadata_json = object_fragment().prop_map(|o| String::from_utf8_lossy(&o).into_owned());
    let fields = vec![
        header_field("ce_specversion", specversion_text().boxed()),
        header_field("ce_id", event_id_text().boxed()),
        header_field("ce_source", any::<String>().boxed()),
        header_field("ce_type", event_type_text().boxed()),
        header_field("ce_time", timestamp_text().boxed()),
        header_field("ce_subject", any::<String>().boxed()),
        header_field("content-type", prop_oneof![Just("application/json".to_owned()), any::<String>()].boxed()),
        header_field("ce_entitytype", any::<String>().boxed()),
        header_field("ce_schemaversion", version_text().boxed()),
        header_field("ce_correlationid", "[a-z0-9_-]{1,20}".boxed()),
        header_field("ce_traceparent", "00-[0-9a-f]{32}-[0-9a-f]{16}-01".boxed()),
        header_field("ce_nexummetadata", metadata_json.boxed()),
    ];
    let names = prop_oneof![
        3 => "ce_[a-z0-9]{1,20}",
        1 => prop::sample::select(&["ce_", "CE_ID", "ce_id ", "ce_data", "ce_event_type", "ce_nexum_metadata"][..])
            .prop_map(String::from),
        1 => any::<String>(),
    ];
    let extras = prop_oneof![
        3 => Just(vec![]),
        1 => prop::collection::vec((names, any::<String>()).prop_map(|(name, value)| Header { name, value }), 1..4),
    ];
    (fields, extras)
        .prop_flat_map(|(fields, extras)| {
            Just(fields.into_iter().flatten().chain(extras).collect::<Vec<_>>()).prop_shuffle()
        })
        .boxed()
}

fn headers() -> BoxedStrategy<Vec<Header>> {
    prop_oneof![
        1 => Just(vec![]),
        4 => ce_headers(),
        1 => prop::collection::vec((any::<String>(), any::<String>()).prop_map(|(name, value)| Header { name, value }), 0..6),
    ]
    .boxed()
}

/// A Kafka message: headers and any value.
fn message() -> BoxedStrategy<(Vec<Header>, Doc)> {
    let value = prop_oneof![
        3 => envelope_document(),
        2 => cloud_event_document(),
        2 => object_fragment().prop_map(Doc),
        1 => fragment().prop_map(Doc),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Doc),
    ];
    (headers(), value).boxed()
}

/// A Kafka message whose value is a flat EventSchema of the same `event_id` and `event_type` as
/// its headers, as `to_binary` writes it, then mutated.
fn matched_message() -> BoxedStrategy<(Vec<Header>, Doc)> {
    (
        event_id_text(),
        event_type_text(),
        ce_headers(),
        members(envelope_fields(&["event_id", "event_type"]), key().boxed()),
    )
        .prop_map(|(id, ty, mut headers, mut entries)| {
            headers.retain(|h| h.name != "ce_id" && h.name != "ce_type");
            headers.extend([header("ce_id", id.clone()), header("ce_type", ty.clone())]);
            entries.extend([(quoted("event_id"), quoted(&id)), (quoted("event_type"), quoted(&ty))]);
            (headers, Doc(render(entries)))
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------

/// The fields of an event document as a plain JSON reader sees them.
#[derive(Deserialize)]
struct Plain {
    event_type: String,
    data: Option<Value>,
    metadata: Option<Value>,
}

fn any_input(documents: BoxedStrategy<Doc>) -> BoxedStrategy<Doc> {
    prop_oneof![
        8 => documents,
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Doc),
        1 => fragment().prop_map(Doc),
    ]
    .boxed()
}

#[test]
fn the_flat_json_decoder_answers_every_document_and_what_it_accepts_round_trips() {
    fuzz("EventSchema::from_json", any_input(envelope_document()), |Doc(bytes)| {
        // Given a document: random bytes, or a seed envelope with fields mutated and bytes damaged
        // When it is decoded (a panic here fails the run)
        let Ok(event) = EventSchema::from_json(&bytes) else { return Ok(()) };
        // Then what it accepted is what a plain JSON reader sees in the same bytes
        let plain: Plain = must(serde_json::from_slice(&bytes), "a plain reader reads what from_json accepted")?;
        prop_assert_eq!(event.event_type.as_str(), plain.event_type.as_str());
        prop_assert_eq!(event.data.to_value(), plain.data.unwrap_or_else(|| json!({})));
        prop_assert_eq!(event.metadata.to_value(), plain.metadata.unwrap_or_else(|| json!({})));
        // And written again it decodes to the same event, and writes the same bytes
        let json = event.to_json();
        let again = must(EventSchema::from_json(&json), "the re-encoded event decodes")?;
        prop_assert_eq!(&again, &event);
        prop_assert_eq!(again.to_json(), json);
        Ok(())
    });
}

#[test]
fn the_structured_cloud_event_decoder_answers_every_document_and_what_it_accepts_round_trips() {
    fuzz("CloudEvent structured (deserialize + into_event)", any_input(cloud_event_document()), |Doc(bytes)| {
        // Given a document: random bytes, or a structured CloudEvent with attributes and
        // extensions mutated and bytes damaged
        // When it is decoded as the bus reads a structured CloudEvent
        let Ok(cloud_event) = serde_json::from_slice::<CloudEvent>(&bytes) else { return Ok(()) };
        let Ok(event) = cloud_event.into_event() else { return Ok(()) };
        // Then mapped back to a CloudEvent, sent as JSON and decoded again, it is the same event
        let sent = must(CloudEvent::from_event(&event), "a decoded event maps to a CloudEvent")?;
        let text = must(serde_json::to_vec(&sent), "a CloudEvent serialises")?;
        let received = must(serde_json::from_slice::<CloudEvent>(&text), "the re-encoded CloudEvent reads")?;
        let back = must(received.into_event(), "the re-encoded CloudEvent maps")?;
        same_event(&back, &event)?;
        // And a Kafka message of the same bytes without headers is read as the same event, unless
        // an `event_type` member makes it a flat EventSchema
        let plain: Value = must(serde_json::from_slice(&bytes), "a plain reader reads what was accepted")?;
        if plain.get("event_type").is_none() {
            prop_assert_eq!(&must(from_binary(&[], &bytes), "the same bytes as a Kafka value")?, &event);
        }
        Ok(())
    });
}

#[test]
fn the_binary_mode_decoder_answers_every_message_and_what_it_accepts_round_trips() {
    let messages = prop_oneof![
        4 => message(),
        2 => matched_message(),
        1 => (headers(), prop::collection::vec(any::<u8>(), 0..256).prop_map(Doc)),
    ];
    fuzz("cloudevents::from_binary", messages, |(headers, Doc(value))| {
        // Given a Kafka message: CloudEvents headers mutated one by one, or none, or any, beside
        // a flat EventSchema, a structured CloudEvent, bare data or bytes
        // When it is decoded
        let Ok(event) = from_binary(&headers, &value) else { return Ok(()) };
        // Then written as the seed's flat JSON it reads back as the same event, in both decoders
        let json = event.to_json();
        let flat = must(EventSchema::from_json(&json), "the flat JSON of a decoded message")?;
        same_event(&flat, &event)?;
        let relayed = must(from_binary(&[], &json), "the flat JSON as a Kafka value")?;
        same_event(&relayed, &event)?;
        // And, if it has an id, encoded in binary mode it decodes to the same event
        if event.event_id.is_some() {
            let (headers, value) = must(to_binary(&event), "a decoded event with an id encodes")?;
            let back = must(from_binary(&headers, &value), "the re-encoded message")?;
            same_event(&back, &event)?;
        }
        Ok(())
    });
}

#[test]
fn ten_thousand_levels_of_nesting_are_an_error_in_every_decoder_not_a_stack_overflow() {
    // Given 10,000 nested arrays and 10,000 nested objects, as a whole document and as `data`
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let flat = format!(r#"{{"event_type":"t","data":{{"a":{arrays}}}}}"#);
    let cloud_event = format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","data":{{"a":{arrays}}}}}"#);
    let headers: Vec<Header> = [("ce_specversion", "1.0"), ("ce_id", "1"), ("ce_source", "s"), ("ce_type", "t")]
        .into_iter()
        .map(|(name, value)| header(name, value.to_owned()))
        .collect();
    // When each decoder reads them
    let answer = |result: Result<(), String>| result.expect_err("nesting 10,000 deep is refused");
    let ignored = answer(EventSchema::from_json(objects.as_bytes()).map_err(|e| e.to_string()).map(drop));
    let kept = [
        ("from_json, nested data", EventSchema::from_json(flat.as_bytes()).map(drop).map_err(|e| e.to_string())),
        (
            "CloudEvent, nested data",
            serde_json::from_str::<CloudEvent>(&cloud_event).map(drop).map_err(|e| e.to_string()),
        ),
        ("from_binary, structured", from_binary(&[], cloud_event.as_bytes()).map(drop).map_err(|e| e.to_string())),
        ("from_binary, headers", from_binary(&headers, arrays.as_bytes()).map(drop).map_err(|e| e.to_string())),
        ("from_binary, flat", from_binary(&[], flat.as_bytes()).map(drop).map_err(|e| e.to_string())),
    ];
    // Then a member the envelope ignores is skipped without recursing, and the document is refused
    // for what it lacks
    assert!(ignored.contains("missing field `event_type`"), "{ignored}");
    // And a value the envelope keeps stops at a depth limit (serde_json's recursion limit, or
    // the 126 levels an event's data may take) instead of overflowing the stack
    for (decoder, result) in kept {
        let error = answer(result);
        let said = ["recursion limit exceeded", "nested deeper than"].iter().any(|words| error.contains(words));
        assert!(said, "{decoder}: {error}");
    }
}
