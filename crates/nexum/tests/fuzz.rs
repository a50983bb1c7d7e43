//! Fault suite R3: the command parser under hostile input. Fuzzed here:
//! `nexum::commands::parse(&TopicName, &EventSchema)`, and beside it `Envelope::of`, which the
//! handler reads from every command it rejects, and `Command::check` on what parses.
//!
//! The commands arrive on each of the three command topics (and sometimes another topic), with
//! the topic's `event_type` or another, versions known and unknown, ids usable and not, and a
//! `data` object built from the real field names (`action`, `account_id`, `amount`, `currency`,
//! `customer_id`, `first_name`, `email`, ...) of every action, holding plausible values, values
//! of every JSON type, nulls, huge and fractional numbers, long and NaN-like strings, with
//! fields missing, misplaced from another action, or unknown.
//!
//! The parser must answer `Ok` or `Err` and never panic. Its answer is checked against the field
//! table of the commands (which fields each action has, which are required, and what type each
//! takes): it accepts exactly the commands the table allows, refuses the others with the code
//! the table expects, and what it accepts is read again as the same command once sent over the
//! wire as JSON.
//!
//! 2,000 cases by default (the CI run); `EVENTBUS_FAULTS=full` runs 100,000:
//!
//! ```text
//! EVENTBUS_FAULTS=full cargo test --release -p nexum --test fuzz -- --nocapture
//! ```
//!
//! A passing run prints one line to stderr for the fault-suite script:
//! `fault-suite: R3 | <decoder> | <cases> cases, 0 panics | <seconds> s`.

#[path = "../../eventbus/tests/common/fuzzing.rs"]
mod fuzzing;

use eventbus::{EventId, EventSchema, Topic, TopicName};
use fuzzing::{fuzz, must};
use nexum::commands::{Command, CustomerCommand, Envelope, LoanCommand, TransactionCommand, parse};
use proptest::prelude::*;
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// The field table of the commands, as `nexum::commands` documents it
// ---------------------------------------------------------------------------------------------

/// One action of a command topic: its name and fields.
#[derive(Debug)]
struct Action {
    /// The topic it is sent on, an index into [`TOPICS`].
    topic: usize,
    name: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

impl Action {
    fn has(&self, field: &str) -> bool {
        self.required.contains(&field) || self.optional.contains(&field)
    }
}

/// The command topics and the `event_type` each expects.
const TOPICS: [(Topic, &str); 3] = [
    (Topic::CommandsTransactions, "transaction_command"),
    (Topic::CommandsCustomers, "customer_command"),
    (Topic::CommandsLoans, "loan_command"),
];

const ACTIONS: &[Action] = &[
    Action {
        topic: 0,
        name: "deposit",
        required: &["account_id", "amount", "currency"],
        optional: &["description", "reference"],
    },
    Action {
        topic: 0,
        name: "withdraw",
        required: &["account_id", "amount", "currency"],
        optional: &["description", "reference"],
    },
    Action {
        topic: 0,
        name: "transfer",
        required: &["from_account_id", "to_account_id", "amount", "currency"],
        optional: &["description", "reference"],
    },
    Action {
        topic: 1,
        name: "create",
        required: &["first_name", "last_name", "email"],
        optional: &["customer_id", "phone"],
    },
    Action {
        topic: 1,
        name: "update",
        required: &["customer_id"],
        optional: &["first_name", "last_name", "email", "phone"],
    },
    Action { topic: 1, name: "kyc", required: &["customer_id", "kyc_status", "kyc_tier"], optional: &[] },
    Action {
        topic: 1,
        name: "open_account",
        required: &["customer_id", "account_type", "currency"],
        optional: &["account_id", "name", "overdraft_limit"],
    },
    Action {
        topic: 2,
        name: "originate",
        required: &["customer_id", "principal", "currency", "interest_rate", "term_months"],
        optional: &["loan_id", "account_id", "payment_frequency"],
    },
    Action { topic: 2, name: "disburse", required: &["loan_id"], optional: &[] },
    Action { topic: 2, name: "payment", required: &["loan_id", "amount", "currency"], optional: &[] },
    Action { topic: 2, name: "cancel", required: &["loan_id", "reason"], optional: &[] },
    Action { topic: 2, name: "check_overdue", required: &["loan_id"], optional: &[] },
    Action { topic: 2, name: "escalate_case", required: &["case_id", "reason"], optional: &[] },
];

const ID_FIELDS: &[&str] = &["account_id", "from_account_id", "to_account_id", "customer_id", "loan_id", "case_id"];

/// The words an enum field takes.
fn vocabulary(field: &str) -> Option<&'static [&'static str]> {
    Some(match field {
        "kyc_status" => &["pending", "verified", "rejected"],
        "kyc_tier" => &["tier_1", "tier_2", "tier_3"],
        "account_type" => &["checking", "savings", "loan", "credit"],
        "payment_frequency" => &["monthly", "quarterly", "semi_annually", "annually"],
        _ => return None,
    })
}

/// Whether an id is 1 to 128 ASCII letters, digits, `_`, `-` or `.`.
fn is_id(text: &str) -> bool {
    (1..=128).contains(&text.len()) && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether the parser should take `value` for `field`: ids are ids, enums are their words,
/// `term_months` is a `u32`, everything else (amounts included) is a string; null only where the
/// field is optional.
fn takes(action: &Action, field: &str, value: &Value) -> bool {
    match value {
        Value::Null => action.optional.contains(&field),
        _ if ID_FIELDS.contains(&field) => value.as_str().is_some_and(is_id),
        _ if field == "term_months" => value.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)),
        _ => match vocabulary(field) {
            Some(words) => value.as_str().is_some_and(|v| words.contains(&v)),
            None => value.is_string(),
        },
    }
}

/// What the parser should answer, from the table: the action it reads, or the code of its error.
fn expected(topic: &TopicName, event: &EventSchema) -> Result<&'static Action, &'static str> {
    let kind = TOPICS.iter().position(|(t, _)| t.as_str() == topic.as_str()).ok_or("not_a_command_topic")?;
    if event.event_type.as_str() != TOPICS[kind].1 {
        return Err("wrong_event_type");
    }
    if event.version().split('.').next() != Some("1") {
        return Err("unsupported_version");
    }
    if !event.event_id.as_ref().is_some_and(|id| is_id(&id.to_string())) {
        return Err("invalid_command_id");
    }
    let Some(Value::String(name)) = event.data.get("action") else { return Err("missing_action") };
    let action = ACTIONS.iter().find(|a| a.topic == kind && a.name == name).ok_or("unknown_action")?;
    let known = event.data.keys().all(|key| key == "action" || action.has(key));
    let required = action.required.iter().all(|field| event.data.get(*field).is_some_and(|v| !v.is_null()));
    let typed = event.data.iter().all(|(key, value)| key == "action" || takes(action, key, value));
    if known && required && typed { Ok(action) } else { Err("malformed") }
}

/// The topic and action of a parsed command.
fn identify(command: &Command) -> (usize, &'static str) {
    match command {
        Command::Transaction(command) => (
            0,
            match command {
                TransactionCommand::Deposit { .. } => "deposit",
                TransactionCommand::Withdraw { .. } => "withdraw",
                TransactionCommand::Transfer { .. } => "transfer",
            },
        ),
        Command::Customer(command) => (
            1,
            match command {
                CustomerCommand::Create { .. } => "create",
                CustomerCommand::Update { .. } => "update",
                CustomerCommand::Kyc { .. } => "kyc",
                CustomerCommand::OpenAccount { .. } => "open_account",
            },
        ),
        Command::Loan(command) => (
            2,
            match command {
                LoanCommand::Originate { .. } => "originate",
                LoanCommand::Disburse { .. } => "disburse",
                LoanCommand::Payment { .. } => "payment",
                LoanCommand::Cancel { .. } => "cancel",
                LoanCommand::CheckOverdue { .. } => "check_overdue",
                LoanCommand::EscalateCase { .. } => "escalate_case",
            },
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// Strings that look like numbers, or like what a number is not.
const NAN_LIKE: &[&str] = &[
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "1e999",
    "1e400",
    "-0",
    "-0.00",
    "0",
    "0.00",
    "0x10",
    "1_000",
    "1,000.00",
    "100.505",
    "100.5",
    "0.001",
    "-1.00",
    "+1.00",
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "1000000000000.00",
    "1000000000000.01",
    "99999999999999999999999999999.99",
    "\u{0661}\u{0660}\u{0660}",
    "\u{ff11}\u{ff10}\u{ff10}",
    " 1.00",
    "1.00 ",
    "",
    " ",
    "\u{0}",
    "null",
    "undefined",
];

/// Keys of commands, of other actions and of none.
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
    "description",
    "reference",
    "kyc_status",
    "kyc_tier",
    "account_type",
    "name",
    "overdraft_limit",
    "loan_id",
    "principal",
    "interest_rate",
    "term_months",
    "payment_frequency",
    "reason",
    "case_id",
    "Action",
    "ammount",
    "",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(String::from),
        2 => "[a-z_]{1,12}",
        1 => any::<String>(),
    ]
}

/// Any JSON value, with huge, negative and fractional numbers and NaN-like strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(&[0u64, 60, 480, 481, 4_294_967_295, 4_294_967_296, u64::MAX][..]).prop_map(Value::from),
        any::<f64>().prop_filter_map("a finite float", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        prop::sample::select(&[60.0, 0.5, -1.0, 1e300, -0.0][..]).prop_map(Value::from),
        prop::sample::select(NAN_LIKE).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A string of up to 5,000 characters of one kind, printable or not.
fn long_string() -> impl Strategy<Value = String> {
    let char = prop_oneof![Just('a'), Just('é'), Just('\u{1F600}'), Just('\n'), Just('\u{202e}'), any::<char>()];
    (0..5_000usize, char).prop_map(|(n, c)| c.to_string().repeat(n))
}

/// Ids of the right prefix, of another one, and ones no id may be.
fn id_value(prefix: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9]{1,12}".prop_map(move |s| format!("{prefix}{s}")),
        2 => "[A-Za-z0-9_.-]{1,128}",
        1 => prop::sample::select(&["", "../etc", "acc 1", "ácc_1", "acc_1\n", "gl_cash", "a/b", "🕴"][..]).prop_map(String::from),
        1 => (129..200usize).prop_map(|n| "a".repeat(n)),
        1 => any::<String>(),
    ]
}

/// A value for `field` of the kind a sender means to send, plausible or slightly wrong.
fn plausible(field: &'static str) -> BoxedStrategy<Value> {
    let strings = |s: BoxedStrategy<String>| s.prop_map(Value::from).boxed();
    if let Some(words) = vocabulary(field) {
        return prop_oneof![
            6 => prop::sample::select(words).prop_map(Value::from),
            1 => prop::sample::select(&["Pending", "tier_4", "tier1", "", "loan ", "MONTHLY"][..]).prop_map(Value::from),
        ]
        .boxed();
    }
    match field {
        "account_id" | "from_account_id" | "to_account_id" => strings(id_value("acc_").boxed()),
        "customer_id" => strings(id_value("cust_").boxed()),
        "loan_id" => strings(id_value("loan_").boxed()),
        "case_id" => strings(id_value("case_").boxed()),
        "amount" | "principal" | "overdraft_limit" | "interest_rate" => prop_oneof![
            4 => "(0|[1-9][0-9]{0,12})\\.[0-9]{2}".prop_map(Value::from),
            2 => prop::sample::select(NAN_LIKE).prop_map(Value::from),
            1 => "-?[0-9]{1,40}(\\.[0-9]{0,40})?".prop_map(Value::from),
            1 => prop::sample::select(&[100.5, 0.1, 1e30, -5.0][..]).prop_map(Value::from),
        ]
        .boxed(),
        "currency" => prop_oneof![
            4 => prop::sample::select(&["USD", "EUR", "JPY", "BHD", "GBP"][..]).prop_map(Value::from),
            1 => prop::sample::select(&["usd", "US", "USDD", "XXX", "", "€", "U$D"][..]).prop_map(Value::from),
            1 => "[A-Z]{3}".prop_map(Value::from),
        ]
        .boxed(),
        "term_months" => prop_oneof![4 => (0..=600u32).prop_map(Value::from), 1 => json_value()].boxed(),
        "email" => prop_oneof![
            4 => "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,3}".prop_map(Value::from),
            1 => prop::sample::select(&["", "@", "a@", "@b.c", "a@b", "a b@c.d", "a@b@c.d"][..]).prop_map(Value::from),
            1 => long_string().prop_map(|s| Value::from(format!("{s}@example.com"))),
        ]
        .boxed(),
        "phone" => prop_oneof![
            4 => "\\+[1-9][0-9]{6,14}".prop_map(Value::from),
            1 => prop::sample::select(&["", "+", "12345", "+1 234 567", "+٣٤٥٦٧٨٩٠"][..]).prop_map(Value::from),
        ]
        .boxed(),
        _ => prop_oneof![
            4 => "[A-Za-z][A-Za-z '-]{0,30}".prop_map(Value::from),
            1 => long_string().prop_map(Value::from),
            1 => any::<String>().prop_map(Value::from),
        ]
        .boxed(),
    }
}

/// A field's value: plausible most of the time, else any JSON value or null.
fn field_value(field: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![12 => plausible(field), 2 => json_value(), 1 => Just(Value::Null)].boxed()
}

/// The `data` of a command meaning `action`: its `action` (or another one, or none, or not a
/// string), its required fields (each sometimes missing), its optional fields (each present half
/// the time), and sometimes fields it does not have.
fn data(action: &'static Action) -> BoxedStrategy<Map<String, Value>> {
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = action
        .required
        .iter()
        .map(|&field| (field, 24))
        .chain(action.optional.iter().map(|&field| (field, 1)))
        .map(|(field, present)| {
            prop_oneof![present => field_value(field).prop_map(move |v| Some((field.to_owned(), v))), 1 => Just(None)]
                .boxed()
        })
        .collect();
    let names: Vec<&'static str> = ACTIONS.iter().map(|a| a.name).collect();
    let named = prop_oneof![
        40 => Just(Some(Value::from(action.name))),
        2 => prop::sample::select(names).prop_map(|name| Some(Value::from(name))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ];
    let extras = prop_oneof![12 => Just(vec![]), 1 => prop::collection::vec((key(), json_value()), 1..3)];
    (named, fields, extras)
        .prop_map(|(named, fields, extras)| {
            let mut data = Map::new();
            if let Some(named) = named {
                data.insert("action".to_owned(), named);
            }
            data.extend(fields.into_iter().flatten());
            data.extend(extras);
            data
        })
        .boxed()
}

fn event_id() -> impl Strategy<Value = Option<EventId>> {
    let parse = |text: String| serde_json::from_value::<EventId>(Value::from(text)).expect("any text is an event id");
    prop_oneof![
        8 => "cmd_[a-z0-9]{1,20}".prop_map(move |s| Some(parse(s))),
        2 => Just(()).prop_map(|()| Some(EventId::new())),
        1 => Just(None),
        1 => id_value("cmd_").prop_map(move |s| Some(parse(s))),
    ]
}

fn version() -> impl Strategy<Value = Option<String>> {
    const VERSIONS: &[&str] = &["1", "1.7", "1.", "1.x", "2.0", "0.9", "", "01.0", " 1.0", "10.0", "\u{0661}.0"];
    prop_oneof![
        6 => Just(None),
        6 => Just(Some("1.0".to_owned())),
        1 => prop::sample::select(VERSIONS).prop_map(|v| Some(v.to_owned())),
        1 => any::<String>().prop_map(Some),
    ]
}

/// Metadata as senders and the API write it: correlation and user ids, a body fingerprint, any
/// value in their place.
fn metadata() -> impl Strategy<Value = Map<String, Value>> {
    let entry = prop_oneof![
        prop::sample::select(&["correlation_id", "user_id", "command_digest", "causation_id"][..])
            .prop_map(String::from),
        key(),
    ];
    prop::collection::vec((entry, json_value()), 0..4).prop_map(|entries| entries.into_iter().collect())
}

/// A command as it arrives: on one of the command topics most of the time, with that topic's
/// `event_type` most of the time, and `data` meant as one of that topic's actions most of the
/// time.
fn command() -> impl Strategy<Value = (TopicName, EventSchema)> {
    let topic_and_action = (0..TOPICS.len()).prop_flat_map(|kind| {
        let own: Vec<&'static Action> = ACTIONS.iter().filter(|a| a.topic == kind).collect();
        let others: Vec<&'static Action> = ACTIONS.iter().filter(|a| a.topic != kind).collect();
        let topic = prop_oneof![
            40 => Just(TOPICS[kind].0.name()),
            1 => prop::sample::select(&[Topic::AuditEvents, Topic::TransactionsCreated][..]).prop_map(Topic::name),
            1 => Just(TOPICS[kind].0.dlq()),
        ];
        let event_type = prop_oneof![
            40 => Just(TOPICS[kind].1.to_owned()),
            1 => prop::sample::select(TOPICS.map(|(_, ty)| ty).to_vec()).prop_map(String::from),
            1 => any::<String>().prop_filter("an event type is not empty", |s| !s.is_empty()),
        ];
        let action = prop_oneof![12 => prop::sample::select(own), 1 => prop::sample::select(others)];
        (topic, event_type, action)
    });
    (
        topic_and_action.prop_flat_map(|(topic, ty, action)| (Just(topic), Just(ty), data(action))),
        event_id(),
        version(),
        metadata(),
    )
        .prop_map(|((topic, event_type, data), id, version, metadata)| {
            let mut event = EventSchema::new(event_type, "command", "fuzz", data);
            event.event_id = id;
            event.version = version;
            event.metadata = metadata.into();
            (topic, event)
        })
}

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

#[test]
fn the_command_parser_answers_every_command_as_the_field_table_says_and_what_it_reads_round_trips() {
    fuzz("nexum::commands::parse", command(), |(topic, event)| {
        // Given a command on a command topic (or not), with data of real field names holding
        // values of every kind
        // When it is parsed, and its envelope read as the handler does to reject one
        let parsed = parse(&topic, &event);
        let envelope = Envelope::of(&topic, &event, "nexum.commands.transactions/0@0");
        // Then the envelope names the action the data names, if it is text
        prop_assert_eq!(envelope.action.as_deref(), event.data.get("action").and_then(Value::as_str));
        // And the parser answers as the field table says: the action it reads, or the error
        let command = match (parsed, expected(&topic, &event)) {
            (Ok(command), Ok(action)) => {
                prop_assert_eq!(identify(&command), (action.topic, action.name));
                command
            }
            (Err(error), Err(code)) => {
                prop_assert_eq!(error.code(), code, "{}", error);
                return Ok(());
            }
            (Ok(command), Err(code)) => return Err(TestCaseError::fail(format!("accepted, not {code}: {command:?}"))),
            (Err(error), Ok(action)) => {
                return Err(TestCaseError::fail(format!("refused a `{}`: {error}", action.name)));
            }
        };
        // And the checks that need no bank answer, whatever the amounts, names and currencies
        let _ = command.check();
        // And sent again over the wire as JSON, it is read as the same command
        let again = must(EventSchema::from_json(&event.to_json()), "the command's JSON decodes")?;
        prop_assert_eq!(must(parse(&topic, &again), "the command read again")?, command);
        Ok(())
    });
}
