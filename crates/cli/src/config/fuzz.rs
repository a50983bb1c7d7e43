//! Fault suite R3: the config file parser under hostile input. Fuzzed here: `Config::load`,
//! which reads the file and hands its text to `Config::parse` (serde's checks, plus: every
//! section a table, no value a date). A unit-test module because `Config` is private to the crate.
//!
//! Two kinds of file:
//!
//! - documents built from the real sections and keys (`bus`, `data_dir`, `[embedded]`,
//!   `[kafka]` and `[kafka.properties]`, `[consumer]`, `[api]`, `[telemetry]`), each key absent,
//!   given a value of its type, or given any TOML value (a wrong type, a negative or
//!   out-of-range integer, `nan`, `inf`, a date, an array, a table), plus unknown keys and sections. Their answer is
//!   known: `Ok` with exactly the values written over the defaults when every key is known and
//!   of its type, else `Err`;
//! - text: such documents with their bytes damaged (truncated, a line doubled or dropped, a
//!   header turned into an array of tables), TOML-looking token soup, 10,000 levels of nested
//!   arrays, inline tables and dotted keys, and random bytes (invalid UTF-8 included). Their
//!   answer is not known, only that it is `Ok` or `Err`, the same from the file as from the text.
//!
//! Whatever is accepted must also give its bus, embedded-store and retry settings without
//! panicking. 2,000 cases by default (the CI run); `EVENTBUS_FAULTS=full` runs 100,000:
//!
//! ```text
//! EVENTBUS_FAULTS=full cargo test --release -p eventbus-cli --lib config::fuzz -- --nocapture
//! ```
//!
//! A passing run prints one line to stderr for the fault-suite script:
//! `fault-suite: R3 | <decoder> | <cases> cases, 0 panics | <seconds> s`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use eventbus::{BackendKind, KafkaConfig, Secret, SyncMode};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as Runner, TestRunner};
use toml::value::Datetime;
use toml::{Table, Value};

use super::Config;

/// Cases per decoder: 100,000 with `EVENTBUS_FAULTS=full`, else 2,000.
fn cases() -> u32 {
    if std::env::var("EVENTBUS_FAULTS").as_deref() == Ok("full") { 100_000 } else { 2_000 }
}

/// `Ok`, or a failed case that says what was expected to succeed.
fn must<T, E: fmt::Display>(result: Result<T, E>, what: &str) -> Result<T, TestCaseError> {
    result.map_err(|error| TestCaseError::fail(format!("{what}: {error}")))
}

// ---------------------------------------------------------------------------------------------
// The keys of the file, as `Config` and its sections declare them
// ---------------------------------------------------------------------------------------------

/// The TOML a key takes.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A string; also a path or a secret.
    Text,
    Flag,
    U32,
    /// A `u64` or a `usize`: TOML integers are `i64`, so 0 to `i64::MAX`.
    U64,
    I32,
    /// `memory`, `log`, `embedded` or `kafka`.
    Backend,
    /// `full` or `normal`.
    Sync,
    /// A table of strings: `[kafka.properties]`.
    Properties,
}

/// Every key: its section (`""` for the top level), its name and what it takes.
const KEYS: &[(&str, &str, Kind)] = &[
    ("", "bus", Kind::Backend),
    ("", "data_dir", Kind::Text),
    ("", "auto_create_topics", Kind::Flag),
    ("", "default_partitions", Kind::U32),
    ("", "max_message_bytes", Kind::U64),
    ("embedded", "sync", Kind::Sync),
    ("embedded", "retention_ms", Kind::U64),
    ("embedded", "poll_interval_ms", Kind::U64),
    ("embedded", "busy_timeout_ms", Kind::U64),
    ("embedded", "lease_ttl_ms", Kind::U64),
    ("kafka", "brokers", Kind::Text),
    ("kafka", "client_id", Kind::Text),
    ("kafka", "compression", Kind::Text),
    ("kafka", "linger_ms", Kind::U32),
    ("kafka", "batch_messages", Kind::U32),
    ("kafka", "replication_factor", Kind::I32),
    ("kafka", "request_timeout_ms", Kind::U64),
    ("kafka", "delivery_timeout_ms", Kind::U64),
    ("kafka", "security_protocol", Kind::Text),
    ("kafka", "sasl_mechanism", Kind::Text),
    ("kafka", "sasl_username", Kind::Text),
    ("kafka", "sasl_password", Kind::Text),
    ("kafka", "ssl_ca_location", Kind::Text),
    ("kafka", "ssl_certificate_location", Kind::Text),
    ("kafka", "ssl_key_location", Kind::Text),
    ("kafka", "ssl_key_password", Kind::Text),
    ("kafka", "outbox_dir", Kind::Text),
    ("kafka", "properties", Kind::Properties),
    ("consumer", "max_in_flight", Kind::U64),
    ("consumer", "max_attempts", Kind::U32),
    ("consumer", "initial_backoff_ms", Kind::U64),
    ("consumer", "max_backoff_ms", Kind::U64),
    ("api", "token", Kind::Text),
    ("api", "listen", Kind::Text),
    ("api", "max_command_lag", Kind::U64),
    ("api", "header_timeout_ms", Kind::U64),
    ("api", "max_connections", Kind::U64),
    ("telemetry", "otlp_endpoint", Kind::Text),
    ("telemetry", "service_name", Kind::Text),
];

const SECTIONS: &[&str] = &["embedded", "kafka", "consumer", "api", "telemetry"];

fn kind_of(section: &str, key: &str) -> Option<Kind> {
    KEYS.iter().find(|(s, k, _)| *s == section && *k == key).map(|(_, _, kind)| *kind)
}

/// Whether `value` is one `kind` takes.
fn takes(kind: Kind, value: &Value) -> bool {
    match (kind, value) {
        (Kind::Text, Value::String(_)) | (Kind::Flag, Value::Boolean(_)) => true,
        (Kind::U32, Value::Integer(n)) => u32::try_from(*n).is_ok(),
        (Kind::U64, Value::Integer(n)) => *n >= 0,
        (Kind::I32, Value::Integer(n)) => i32::try_from(*n).is_ok(),
        (Kind::Backend, Value::String(s)) => ["memory", "log", "embedded", "kafka"].contains(&s.as_str()),
        (Kind::Sync, Value::String(s)) => ["full", "normal"].contains(&s.as_str()),
        (Kind::Properties, Value::Table(table)) => table.values().all(Value::is_str),
        _ => false,
    }
}

/// Whether a document should load: every key known and of its type, every section a table.
fn loads(doc: &Table) -> bool {
    doc.iter().all(|(key, value)| match (kind_of("", key), value) {
        (Some(kind), value) => takes(kind, value),
        (None, Value::Table(section)) if SECTIONS.contains(&key.as_str()) => {
            section.iter().all(|(name, value)| kind_of(key, name).is_some_and(|kind| takes(kind, value)))
        }
        _ => false,
    })
}

/// The configuration a document that loads describes: the defaults, with each value written.
fn described(doc: &Table) -> Config {
    let mut config = Config::default();
    for (key, value) in doc {
        match value {
            Value::Table(section) if SECTIONS.contains(&key.as_str()) => {
                for (name, value) in section {
                    set(&mut config, key, name, value);
                }
            }
            value => set(&mut config, "", key, value),
        }
    }
    config
}

/// Writes one checked value into `config`.
fn set(config: &mut Config, section: &str, key: &str, value: &Value) {
    let text = || value.as_str().expect("a string, as checked").to_owned();
    let int = || value.as_integer().expect("an integer, as checked");
    let u32 = || u32::try_from(int()).expect("in range, as checked");
    let u64 = || u64::try_from(int()).expect("in range, as checked");
    let usize = || usize::try_from(int()).expect("in range, as checked");
    let (api, consumer, embedded) = (&mut config.api, &mut config.consumer, &mut config.embedded);
    let kafka: &mut KafkaConfig = &mut config.kafka;
    match (section, key) {
        ("", "bus") => {
            config.bus = match text().as_str() {
                "memory" => BackendKind::Memory,
                "log" => BackendKind::Log,
                "embedded" => BackendKind::Embedded,
                _ => BackendKind::Kafka,
            }
        }
        ("", "data_dir") => config.data_dir = text().into(),
        ("", "auto_create_topics") => config.auto_create_topics = value.as_bool().expect("a flag, as checked"),
        ("", "default_partitions") => config.default_partitions = u32(),
        ("", "max_message_bytes") => config.max_message_bytes = usize(),
        ("embedded", "sync") => embedded.sync = if text() == "full" { SyncMode::Full } else { SyncMode::Normal },
        ("embedded", "retention_ms") => embedded.retention_ms = Some(u64()),
        ("embedded", "poll_interval_ms") => embedded.poll_interval_ms = u64(),
        ("embedded", "busy_timeout_ms") => embedded.busy_timeout_ms = u64(),
        ("embedded", "lease_ttl_ms") => embedded.lease_ttl_ms = u64(),
        ("kafka", "brokers") => kafka.brokers = text(),
        ("kafka", "client_id") => kafka.client_id = text(),
        ("kafka", "compression") => kafka.compression = text(),
        ("kafka", "linger_ms") => kafka.linger_ms = u32(),
        ("kafka", "batch_messages") => kafka.batch_messages = u32(),
        ("kafka", "replication_factor") => kafka.replication_factor = i32::try_from(int()).expect("checked"),
        ("kafka", "request_timeout_ms") => kafka.request_timeout_ms = u64(),
        ("kafka", "delivery_timeout_ms") => kafka.delivery_timeout_ms = u64(),
        ("kafka", "security_protocol") => kafka.security_protocol = Some(text()),
        ("kafka", "sasl_mechanism") => kafka.sasl_mechanism = Some(text()),
        ("kafka", "sasl_username") => kafka.sasl_username = Some(text()),
        ("kafka", "sasl_password") => kafka.sasl_password = Some(Secret::new(text())),
        ("kafka", "ssl_ca_location") => kafka.ssl_ca_location = Some(text().into()),
        ("kafka", "ssl_certificate_location") => kafka.ssl_certificate_location = Some(text().into()),
        ("kafka", "ssl_key_location") => kafka.ssl_key_location = Some(text().into()),
        ("kafka", "ssl_key_password") => kafka.ssl_key_password = Some(Secret::new(text())),
        ("kafka", "outbox_dir") => kafka.outbox_dir = Some(text().into()),
        ("kafka", "properties") => {
            let table = value.as_table().expect("a table, as checked");
            kafka.properties =
                table.iter().map(|(k, v)| (k.clone(), v.as_str().expect("checked").to_owned())).collect();
        }
        ("consumer", "max_in_flight") => consumer.max_in_flight = usize(),
        ("consumer", "max_attempts") => consumer.max_attempts = u32(),
        ("consumer", "initial_backoff_ms") => consumer.initial_backoff_ms = u64(),
        ("consumer", "max_backoff_ms") => consumer.max_backoff_ms = u64(),
        ("api", "token") => api.token = Some(text()),
        ("api", "listen") => api.listen = Some(text()),
        ("api", "max_command_lag") => api.max_command_lag = Some(u64()),
        ("api", "header_timeout_ms") => api.header_timeout_ms = Some(u64()),
        ("api", "max_connections") => api.max_connections = Some(usize()),
        ("telemetry", "otlp_endpoint") => config.telemetry.otlp_endpoint = Some(text()),
        ("telemetry", "service_name") => config.telemetry.service_name = text(),
        _ => unreachable!("`{section}.{key}` is not in KEYS"),
    }
}

// ---------------------------------------------------------------------------------------------
// Values and documents
// ---------------------------------------------------------------------------------------------

/// Dates and times in each of TOML's four forms.
const DATETIMES: &[&str] =
    &["1979-05-27T07:32:00Z", "1979-05-27T00:32:00.999999-07:00", "1979-05-27T07:32:00", "1979-05-27", "07:32:00"];

/// Any TOML value: integers at the edges of `u32`, `i32` and `i64`, floats with `nan`, `inf`
/// and `-0.0`, strings that look like numbers, dates, arrays and inline tables. Table keys start
/// with `k`, so that no table is taken for an enum's word.
fn any_value() -> impl Strategy<Value = Value> {
    const INTEGERS: &[i64] =
        &[0, -1, 1, 4_294_967_295, 4_294_967_296, 2_147_483_647, 2_147_483_648, -2_147_483_649, i64::MAX, i64::MIN];
    const FLOATS: &[f64] = &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.5, 1.0, 1e300];
    const STRINGS: &[&str] =
        &["", "10", "-1", "true", "nan", "inf", "1e3", "memory", "Kafka", "FULL", " normal", "\u{0}"];
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        prop::sample::select(INTEGERS).prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        prop::sample::select(FLOATS).prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        any::<String>().prop_map(Value::String),
        prop::sample::select(STRINGS).prop_map(|s| Value::String(s.to_owned())),
        prop::sample::select(DATETIMES).prop_map(|d| Value::Datetime(d.parse::<Datetime>().expect("a TOML datetime"))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("k[a-z0-9_]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A value a key of `kind` takes, edges included.
fn valid(kind: Kind) -> BoxedStrategy<Value> {
    match kind {
        Kind::Text => prop_oneof![
            3 => "[a-z0-9./:_-]{0,30}".prop_map(Value::String),
            1 => any::<String>().prop_map(Value::String),
            1 => (0..5_000usize).prop_map(|n| Value::String("p".repeat(n))),
        ]
        .boxed(),
        Kind::Flag => any::<bool>().prop_map(Value::Boolean).boxed(),
        Kind::U32 => {
            prop_oneof![0..=i64::from(u32::MAX), Just(0), Just(i64::from(u32::MAX))].prop_map(Value::Integer).boxed()
        }
        Kind::U64 => prop_oneof![0..=i64::MAX, Just(0), Just(i64::MAX)].prop_map(Value::Integer).boxed(),
        Kind::I32 => prop_oneof![i64::from(i32::MIN)..=i64::from(i32::MAX), Just(i64::from(i32::MIN))]
            .prop_map(Value::Integer)
            .boxed(),
        Kind::Backend => prop::sample::select(&["memory", "log", "embedded", "kafka"][..])
            .prop_map(|s| Value::String(s.to_owned()))
            .boxed(),
        Kind::Sync => prop::sample::select(&["full", "normal"][..]).prop_map(|s| Value::String(s.to_owned())).boxed(),
        Kind::Properties => {
            let name = prop_oneof![3 => "[a-z]{1,10}(\\.[a-z]{1,10}){0,3}", 1 => any::<String>()];
            prop::collection::btree_map(name, any::<String>().prop_map(Value::String), 0..4)
                .prop_map(|m| Value::Table(m.into_iter().collect()))
                .boxed()
        }
    }
}

/// One key of a document: its section (`""` for the top level), its name and its value.
type Entry = (&'static str, &'static str, Value);

/// A document of the real sections and keys: each key absent most of the time, else of its
/// type, else any value; sometimes an unknown key, or a section that is not a table.
fn document() -> impl Strategy<Value = Table> {
    let entries: Vec<BoxedStrategy<Option<Entry>>> = KEYS
        .iter()
        .map(|&(section, key, kind)| {
            prop_oneof![
                20 => Just(None),
                8 => valid(kind).prop_map(move |v| Some((section, key, v))),
                1 => any_value().prop_map(move |v| Some((section, key, v))),
            ]
            .boxed()
        })
        .collect();
    let section = prop::sample::select(&["", "embedded", "kafka", "consumer", "api", "kafka2", "Kafka"][..]);
    let unknown = prop_oneof![
        12 => Just(None),
        1 => (section, "[a-z_]{1,16}", any_value()).prop_map(Some),
    ];
    let not_a_table = prop_oneof![12 => Just(None), 1 => (prop::sample::select(SECTIONS), any_value()).prop_map(Some)];
    (entries, unknown, not_a_table).prop_map(|(entries, unknown, not_a_table)| {
        let mut doc = Table::new();
        let known = entries.into_iter().flatten().map(|(section, key, value)| (section, key.to_owned(), value));
        for (section, key, value) in known.chain(unknown) {
            if section.is_empty() {
                doc.insert(key, value);
            } else if let Value::Table(table) = doc.entry(section).or_insert_with(|| Value::Table(Table::new())) {
                table.insert(key, value);
            }
        }
        if let Some((section, value)) = not_a_table {
            doc.insert(section.to_owned(), value);
        }
        doc
    })
}

/// What can happen to a file's text on the way.
#[derive(Clone, Debug)]
enum Damage {
    Truncate(Index),
    Insert(Index, u8),
    DoubleLine(Index),
    DropLine(Index),
    ArrayOfTables,
    Bom,
    CrLf,
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Damage::Insert(at, byte)),
        any::<Index>().prop_map(Damage::DoubleLine),
        any::<Index>().prop_map(Damage::DropLine),
        Just(Damage::ArrayOfTables),
        Just(Damage::Bom),
        Just(Damage::CrLf),
    ]
}

fn damaged(text: &str, damage: Damage) -> Vec<u8> {
    let mut lines: Vec<&str> = text.lines().collect();
    let mut bytes = text.as_bytes().to_vec();
    match damage {
        Damage::Truncate(at) => bytes.truncate(at.index(bytes.len() + 1)),
        Damage::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), byte),
        Damage::DoubleLine(at) if !lines.is_empty() => {
            let at = at.index(lines.len());
            lines.insert(at, lines[at]);
            bytes = lines.join("\n").into_bytes();
        }
        Damage::DropLine(at) if !lines.is_empty() => {
            lines.remove(at.index(lines.len()));
            bytes = lines.join("\n").into_bytes();
        }
        Damage::DoubleLine(_) | Damage::DropLine(_) => {}
        Damage::ArrayOfTables => bytes = text.replacen("[kafka]", "[[kafka]]", 1).into_bytes(),
        Damage::Bom => bytes = [&b"\xef\xbb\xbf"[..], text.as_bytes()].concat(),
        Damage::CrLf => bytes = text.replace('\n', "\r\n").into_bytes(),
    }
    bytes
}

/// Text that looks like TOML, made of its tokens and the file's words in any order.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&str] = &[
        "[",
        "]",
        "[[",
        "]]",
        "=",
        "\"",
        "'",
        "\"\"\"",
        "'''",
        "\n",
        "\r\n",
        "#",
        ".",
        ",",
        "{",
        "}",
        " ",
        "\\",
        "\\u",
        "bus",
        "kafka",
        "embedded",
        "consumer",
        "api",
        "properties",
        "sync",
        "linger_ms",
        "data_dir",
        "1979-05-27T07:32:00Z",
        "nan",
        "inf",
        "+",
        "-",
        "0x",
        "0o",
        "0b",
        "_",
        "1e",
        "1",
        "9223372036854775808",
        "true",
        "false",
        "\u{0}",
    ];
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|tokens| tokens.concat().into_bytes())
}

/// 10,000 and more levels of nesting, in a real section: arrays, inline tables, dotted keys and
/// table headers.
fn deep_nesting() -> impl Strategy<Value = Vec<u8>> {
    let depth =
        prop_oneof![prop::sample::select(&[64usize, 127, 128, 129, 256, 1_000, 10_000, 100_000][..]), 1..20_000usize];
    (depth, 0..5u8).prop_map(|(d, kind)| {
        match kind {
            0 => format!("[kafka]\nproperties = {}{}\n", "[".repeat(d), "]".repeat(d)),
            1 => format!("bus = {}1{}\n", "{ k = ".repeat(d), " }".repeat(d)),
            2 => format!("[embedded]\n{}k = 1\n", "k.".repeat(d)),
            3 => format!("[{}k]\nx = 1\n", "kafka.".repeat(d)),
            _ => format!("[api]\ntoken = {}\n", "[".repeat(d)),
        }
        .into_bytes()
    })
}

/// One case: a document whose answer is known, or text whose answer is not.
#[derive(Clone)]
enum Input {
    Document(Table),
    Text(Vec<u8>),
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Document(doc) => write!(f, "Document({:?})", toml::to_string(doc).unwrap_or_else(|e| e.to_string())),
            Self::Text(bytes) => {
                let text: String = String::from_utf8_lossy(bytes).chars().take(2_000).collect();
                write!(f, "Text({} bytes: {text:?})", bytes.len())
            }
        }
    }
}

fn input() -> impl Strategy<Value = Input> {
    let damaged_document = (document(), damage()).prop_map(|(doc, damage)| {
        let text = toml::to_string(&doc).expect("a table renders as TOML");
        Input::Text(damaged(&text, damage))
    });
    prop_oneof![
        12 => document().prop_map(Input::Document),
        4 => damaged_document,
        2 => token_soup().prop_map(Input::Text),
        1 => deep_nesting().prop_map(Input::Text),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Input::Text),
    ]
}

/// Loads `bytes` as the CLI does, from a file; for UTF-8, also parses the text directly, and
/// checks that both answer alike.
fn load(path: &Path, bytes: &[u8]) -> Result<Option<Config>, TestCaseError> {
    must(std::fs::write(path, bytes), "the config file is written")?;
    let loaded = Config::load(path);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let parsed = Config::parse(text);
        match (&loaded, &parsed) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => return Err(TestCaseError::fail(format!("the file says {loaded:?}, the text {parsed:?}"))),
        }
    } else {
        prop_assert!(loaded.is_err(), "a file that is not UTF-8 was read");
    }
    Ok(loaded.ok())
}

#[test]
fn the_config_parser_answers_every_file_and_reads_what_a_document_says() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("eventbus.toml");
    let cases = cases();
    let mut runner = TestRunner::new(Runner { failure_persistence: None, ..Runner::with_cases(cases) });
    let started = Instant::now();
    let result = runner.run(&input(), |input| {
        // Given a config file: a document of the real keys, some of the wrong type or unknown,
        // or damaged text, token soup, deep nesting or random bytes
        let (bytes, known) = match &input {
            Input::Document(doc) => (must(toml::to_string(doc), "a table renders as TOML")?.into_bytes(), Some(doc)),
            Input::Text(bytes) => (bytes.clone(), None),
        };
        // When it is loaded (a panic here fails the run)
        let loaded = load(&path, &bytes)?;
        // Then a document is read exactly when its keys are all known and of their type, as
        // the defaults with the values it writes
        if let Some(doc) = known {
            match &loaded {
                Some(config) => {
                    prop_assert!(loads(doc), "a document with a wrong key or type was read");
                    prop_assert_eq!(config, &described(doc));
                }
                None => prop_assert!(!loads(doc), "a valid document was refused"),
            }
        }
        // And what is read gives its settings without panicking
        if let Some(config) = loaded {
            let _ = (config.bus_config(true), config.embedded(), config.retry());
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("cli Config::load (TOML): {failure}");
    }
    let seconds = started.elapsed().as_secs_f64();
    // Straight to stderr, past the test harness's capture: the script sees it with or without
    // `--nocapture`.
    let _ = writeln!(
        std::io::stderr(),
        "fault-suite: R3 | cli Config::load (TOML) | {cases} cases, 0 panics | {seconds:.1} s"
    );
}

#[test]
fn a_properties_table_keeps_every_entry_it_is_given() {
    // Given a `[kafka.properties]` table, as the fuzzed documents write it
    let mut doc = Table::new();
    let properties: BTreeMap<String, String> = [("statistics.interval.ms", "1000"), ("", "empty name")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let table: Table = properties.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    doc.insert("kafka".into(), Value::Table([("properties".to_owned(), Value::Table(table))].into_iter().collect()));
    // When it is rendered and read
    let config: Config = toml::from_str(&toml::to_string(&doc).unwrap()).unwrap();
    // Then the oracle the fuzzing uses agrees with the parser
    assert!(loads(&doc));
    assert_eq!(config, described(&doc));
    assert_eq!(config.kafka.properties, properties);
}

#[test]
fn ten_thousand_levels_of_nesting_are_an_error_not_a_stack_overflow() {
    // Given config files nested 10,000 deep in a real section: arrays, inline tables, dotted
    // keys and a table header
    let depth = 10_000;
    let files = [
        format!("[kafka]\nproperties = {}{}\n", "[".repeat(depth), "]".repeat(depth)),
        format!("bus = {}1{}\n", "{ k = ".repeat(depth), " }".repeat(depth)),
        format!("[embedded]\n{}k = 1\n", "k.".repeat(depth)),
        format!("[{}k]\nx = 1\n", "kafka.".repeat(depth)),
    ];
    for file in files {
        // When each is parsed
        // Then it is an error at toml's recursion limit, not a stack overflow
        let error = toml::from_str::<Config>(&file).expect_err("nesting 10,000 deep is refused").to_string();
        let said = ["cannot recurse further", "recursion limit"].iter().any(|words| error.contains(words));
        assert!(said, "{}", error.chars().rev().take(300).collect::<String>().chars().rev().collect::<String>());
    }
}
