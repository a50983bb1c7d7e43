//! The JSON Schemas of the Nexum events against the Rust payloads and the serde decoder.
//!
//! Field for field: every object of every schema requires exactly its properties and allows no
//! others (`every_object_of_every_schema_requires_exactly_its_properties`), a payload of every
//! type written by the Rust code validates (`given_a_realistic_payload_of_every_event_type...`),
//! and for every field of those payloads, the schema and the decoder agree on every wrong value
//! tried (`..._the_schema_and_the_decoder_agree_on_every_field`).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use eventbus::{Currency, EventId, EventSchema};
use nexum::domain::{
    AccountChange, AccountStatus, AccountType, CaseReason, FailureReason, KycStatus, KycTier, PaymentFrequency,
    TransactionType,
};
use nexum::events::{
    AccountCreated, AccountUpdated, AuditEventRecorded, Causation, CollectionCaseCreated, CollectionCaseEscalated,
    CollectionCaseResolved, CommandRejected, ComplianceAlertRaised, CreditPaymentReceived, CreditStatementGenerated,
    CustomerDetails, EVENT_TYPES, Installment, KycStatusChanged, LoanCancelled, LoanDefaulted, LoanDisbursed,
    LoanOriginated, LoanPaidOff, LoanPaymentReceived, NexumEvent, Payload, Posting, SuspiciousActivityDetected,
    TransactionCreated, TransactionFailed, TransactionPosted, WorkflowCompleted, WorkflowRejected,
    WorkflowStepCompleted,
};
use nexum::schemas::{SchemaError, SchemaRegistry};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};

fn registry() -> &'static SchemaRegistry {
    SchemaRegistry::global()
}

fn parse<T: FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().unwrap()
}

fn usd() -> Currency {
    parse("USD")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap()
}

fn causation() -> Causation {
    Causation {
        correlation_id: Some("corr_123".into()),
        causation_id: Some("evt_122".into()),
        user_id: Some("user_456".into()),
        traceparent: None,
    }
}

/// The envelope the Rust code writes for `event`.
fn envelope(event: &NexumEvent, causation: &Causation) -> EventSchema {
    event.to_schema(EventId::derived(&format!("{event:?}")), at(), causation)
}

/// The envelope as it is on the wire.
fn wire(event: &EventSchema) -> Value {
    serde_json::from_slice(&event.to_json()).unwrap()
}

/// Whether the serde decoder reads `document` as a Nexum event.
fn decodes(document: &Value) -> Result<NexumEvent, String> {
    let event = EventSchema::from_json(&serde_json::to_vec(document).unwrap()).map_err(|e| e.to_string())?;
    NexumEvent::from_schema(&event).map_err(|e| e.to_string())
}

fn errors_of(result: Result<(), SchemaError>) -> Vec<String> {
    match result {
        Err(SchemaError::Invalid { errors, .. }) => errors,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// A realistic payload of every event type; types with `Option` fields appear once with every
/// option set and once with none.
fn examples() -> Vec<NexumEvent> {
    let created = TransactionCreated {
        transaction_type: TransactionType::Transfer,
        amount: parse("250.00"),
        currency: usd(),
        from_account_id: Some(parse("acc_0191a3c4e5f6")),
        to_account_id: Some(parse("acc_0191a3c4e5f7")),
        description: Some("Rent, March".into()),
        reference: Some("REF-2024-03".into()),
    };
    let posted = TransactionPosted {
        transaction_type: TransactionType::Deposit,
        amount: parse("100.50"),
        currency: usd(),
        from_account_id: None,
        to_account_id: Some(parse("acc_to")),
        final_balance: parse("1100.50"),
        journal_entry_id: parse("je_789"),
        postings: vec![
            Posting { account_id: parse("gl_cash"), amount: parse("-100.50") },
            Posting { account_id: parse("acc_to"), amount: parse("100.50") },
        ],
    };
    let customer = CustomerDetails {
        first_name: "John".into(),
        last_name: "Doe".into(),
        email: "john@example.com".into(),
        phone: Some("+1234567890".into()),
        kyc_status: KycStatus::Verified,
        kyc_tier: KycTier::Tier2,
    };
    let loan = parse::<nexum::ids::LoanId>("loan_123");
    let events = [
        ("txn_1", Payload::TransactionCreated(created.clone())),
        (
            "txn_2",
            Payload::TransactionCreated(TransactionCreated {
                transaction_type: TransactionType::Deposit,
                from_account_id: None,
                to_account_id: None,
                description: None,
                reference: None,
                ..created
            }),
        ),
        ("txn_3", Payload::TransactionPosted(posted.clone())),
        (
            "txn_4",
            Payload::TransactionPosted(TransactionPosted {
                transaction_type: TransactionType::Withdrawal,
                from_account_id: Some(parse("acc_from")),
                to_account_id: None,
                final_balance: parse("-20.00"),
                postings: vec![],
                ..posted
            }),
        ),
        (
            "txn_5",
            Payload::TransactionFailed(TransactionFailed {
                transaction_type: TransactionType::Withdrawal,
                amount: parse("5000.00"),
                currency: usd(),
                from_account_id: Some(parse("acc_from")),
                to_account_id: None,
                reason: FailureReason::InsufficientFunds,
                error_message: FailureReason::InsufficientFunds.message().into(),
            }),
        ),
        (
            "acc_1",
            Payload::AccountCreated(AccountCreated {
                customer_id: parse("cust_123"),
                account_type: AccountType::Checking,
                currency: parse("EUR"),
                name: Some("Everyday".into()),
                status: AccountStatus::Active,
                overdraft_limit: parse("500.00"),
            }),
        ),
        (
            "acc_2",
            Payload::AccountCreated(AccountCreated {
                customer_id: parse("cust_123"),
                account_type: AccountType::Savings,
                currency: parse("JPY"),
                name: None,
                status: AccountStatus::Active,
                overdraft_limit: parse("0"),
            }),
        ),
        (
            "acc_1",
            Payload::AccountUpdated(AccountUpdated {
                customer_id: parse("cust_123"),
                account_type: AccountType::Checking,
                currency: parse("EUR"),
                name: None,
                change: AccountChange::Frozen,
                old_status: AccountStatus::Active,
                status: AccountStatus::Frozen,
                overdraft_limit: parse("500.00"),
            }),
        ),
        ("cust_123", Payload::CustomerCreated(customer.clone())),
        ("cust_124", Payload::CustomerCreated(CustomerDetails { phone: None, ..customer.clone() })),
        ("cust_123", Payload::CustomerUpdated(CustomerDetails { kyc_tier: KycTier::Tier3, ..customer })),
        (
            "cust_123",
            Payload::KycStatusChanged(KycStatusChanged {
                old_status: KycStatus::Pending,
                new_status: KycStatus::Verified,
                old_tier: KycTier::Tier1,
                new_tier: KycTier::Tier2,
            }),
        ),
        (
            "loan_123",
            Payload::LoanOriginated(LoanOriginated {
                customer_id: parse("cust_123"),
                principal: parse("10000.00"),
                currency: usd(),
                interest_rate: parse("5.5"),
                term_months: 2,
                payment_frequency: PaymentFrequency::Monthly,
                account_id: parse("acc_1"),
                loan_account_id: parse("acc_loan_123"),
                workflow_id: parse("wf_9"),
                schedule: vec![
                    Installment {
                        number: 1,
                        due_date: date(2024, 2, 1),
                        payment: parse("5034.41"),
                        principal: parse("4988.58"),
                        interest: parse("45.83"),
                        remaining_principal: parse("5011.42"),
                    },
                    Installment {
                        number: 2,
                        due_date: date(2024, 3, 1),
                        payment: parse("5034.39"),
                        principal: parse("5011.42"),
                        interest: parse("22.97"),
                        remaining_principal: parse("0.00"),
                    },
                ],
            }),
        ),
        (
            "loan_123",
            Payload::LoanDisbursed(LoanDisbursed {
                customer_id: parse("cust_123"),
                account_id: parse("acc_1"),
                amount: parse("10000.00"),
                currency: usd(),
                transaction_id: parse("txn_disb_1"),
            }),
        ),
        (
            "loan_123",
            Payload::LoanPaymentReceived(LoanPaymentReceived {
                customer_id: parse("cust_123"),
                account_id: parse("acc_1"),
                amount: parse("5034.41"),
                currency: usd(),
                interest_portion: parse("45.83"),
                principal_portion: parse("4988.58"),
                outstanding_principal: parse("5011.42"),
                transaction_id: parse("txn_pay_1"),
            }),
        ),
        (
            "loan_123",
            Payload::LoanPaidOff(LoanPaidOff {
                customer_id: parse("cust_123"),
                currency: usd(),
                total_interest_paid: parse("68.80"),
            }),
        ),
        (
            "loan_124",
            Payload::LoanDefaulted(LoanDefaulted {
                customer_id: parse("cust_125"),
                currency: usd(),
                outstanding_principal: parse("7500.00"),
                missed_payments: 3,
            }),
        ),
        (
            "stmt_2024_03",
            Payload::CreditStatementGenerated(CreditStatementGenerated {
                account_id: parse("acc_card_1"),
                customer_id: parse("cust_123"),
                currency: usd(),
                period_start: date(2024, 3, 1),
                period_end: date(2024, 3, 31),
                opening_balance: parse("-120.00"),
                closing_balance: parse("-340.25"),
                minimum_payment: parse("25.00"),
                due_date: date(2024, 4, 25),
            }),
        ),
        (
            "acc_card_1",
            Payload::CreditPaymentReceived(CreditPaymentReceived {
                customer_id: parse("cust_123"),
                from_account_id: parse("acc_1"),
                amount: parse("340.25"),
                currency: usd(),
                new_balance: parse("0.00"),
                transaction_id: parse("txn_cc_1"),
            }),
        ),
        (
            "case_1",
            Payload::CollectionCaseCreated(CollectionCaseCreated {
                loan_id: loan.clone(),
                customer_id: parse("cust_123"),
                reason: CaseReason::PaymentOverdue,
                amount_due: parse("5034.41"),
                currency: usd(),
                days_overdue: 31,
                missed_payments: 1,
            }),
        ),
        (
            "case_1",
            Payload::CollectionCaseEscalated(CollectionCaseEscalated {
                loan_id: loan.clone(),
                level: 2,
                missed_payments: 2,
                reason: "no answer to two reminders".into(),
            }),
        ),
        (
            "case_1",
            Payload::CollectionCaseResolved(CollectionCaseResolved {
                loan_id: loan,
                resolution: "paid in full".into(),
            }),
        ),
        (
            "alert_1",
            Payload::ComplianceAlertRaised(ComplianceAlertRaised {
                alert_type: "large_transaction".into(),
                transaction_id: parse("txn_big"),
                account_id: parse("acc_1"),
                customer_id: parse("cust_123"),
                amount: parse("15000.00"),
                currency: usd(),
                threshold: parse("10000.00"),
            }),
        ),
        (
            "alert_2",
            Payload::SuspiciousActivityDetected(SuspiciousActivityDetected {
                activity_type: "structuring".into(),
                account_id: parse("acc_1"),
                customer_id: parse("cust_123"),
                transaction_ids: vec![parse("txn_a"), parse("txn_b"), parse("txn_c")],
                total_amount: parse("27000.00"),
                currency: usd(),
                window_hours: 24,
            }),
        ),
        (
            "aud_1",
            Payload::AuditEventRecorded(AuditEventRecorded {
                command: "deposit".into(),
                actor: "user_456".into(),
                entity_type: "transaction".into(),
                entity_id: "txn_3".into(),
                outcome: "accepted".into(),
                event_ids: vec![EventId::derived("a"), EventId::derived("b")],
                event_types: vec!["transaction_created".into(), "transaction_posted".into()],
            }),
        ),
        (
            "wf_9",
            Payload::WorkflowStepCompleted(WorkflowStepCompleted {
                workflow_type: "loan_approval".into(),
                subject_id: "loan_123".into(),
                step: "credit_check".into(),
                detail: "score 712".into(),
            }),
        ),
        (
            "wf_9",
            Payload::WorkflowCompleted(WorkflowCompleted {
                workflow_type: "loan_approval".into(),
                subject_id: "loan_123".into(),
                steps: vec!["kyc".into(), "credit_check".into(), "approval".into()],
            }),
        ),
        (
            "wf_10",
            Payload::WorkflowRejected(WorkflowRejected {
                workflow_type: "loan_approval".into(),
                subject_id: "loan_124".into(),
                step: "credit_check".into(),
                reason: "score below 600".into(),
            }),
        ),
        (
            "loan_125",
            Payload::LoanCancelled(LoanCancelled {
                customer_id: parse("cust_123"),
                loan_account_id: parse("acc_loan_125"),
                principal: parse("5000.00"),
                currency: usd(),
                reason: "disbursement failed: account frozen".into(),
            }),
        ),
        (
            "0191e4a2-7c3b-7d40-8a9e-2f1c3b4d5e6f",
            Payload::CommandRejected(CommandRejected {
                topic: "nexum.commands.transactions".into(),
                command_type: "transaction_command".into(),
                action: Some("deposit".into()),
                error_code: "unknown_account".into(),
                reason: "unknown account `acc_nowhere`".into(),
            }),
        ),
    ];
    events.into_iter().map(|(entity_id, payload)| NexumEvent::new(entity_id, payload)).collect()
}

// (a) Every event type, written by the Rust code, validates.

#[test]
fn given_a_realistic_payload_of_every_event_type_when_enveloped_then_it_validates() {
    // Given a payload of every type in the catalog
    let examples = examples();
    for info in EVENT_TYPES {
        assert!(examples.iter().any(|e| e.event_type() == info.event_type), "no example of {}", info.event_type);
    }
    for event in &examples {
        for causation in [causation(), Causation::default()] {
            // When it is enveloped by the Rust code, with and without metadata
            let schema = envelope(event, &causation);
            // Then the envelope and its wire form validate, and the decoder reads it back
            if let Err(error) = registry().validate(&schema) {
                panic!("{} does not validate: {error}\n{:#}", event.event_type(), wire(&schema));
            }
            registry().validate_json(&wire(&schema)).unwrap();
            assert_eq!(&decodes(&wire(&schema)).unwrap(), event);
        }
    }
}

// Field for field: the schemas' shape and vocabularies are those of the Rust types.

/// Every object schema in `schema` below `path`, with its JSON pointer.
fn object_schemas<'a>(schema: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") {
                out.push((path.clone(), schema));
            }
            for (key, value) in map {
                object_schemas(value, format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                object_schemas(item, format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_object_of_every_schema_requires_exactly_its_properties_and_allows_no_others() {
    for info in registry().list() {
        let schema: Value = serde_json::from_str(registry().get(info.event_type, info.major).unwrap()).unwrap();
        let mut objects = Vec::new();
        object_schemas(&schema, String::new(), &mut objects);
        let mut checked = 0;
        for (path, object) in objects {
            // The envelope and its metadata are open: the decoder ignores what it does not know.
            if path.is_empty() || path == "/properties/metadata" {
                continue;
            }
            let properties: BTreeSet<&str> =
                object["properties"].as_object().unwrap().keys().map(String::as_str).collect();
            let required: BTreeSet<&str> =
                object["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
            assert_eq!(required, properties, "{} v{}: {path}", info.event_type, info.major);
            assert_eq!(object["additionalProperties"], json!(false), "{} v{}: {path}", info.event_type, info.major);
            checked += 1;
        }
        assert!(checked >= 1, "{} v{} has no data object", info.event_type, info.major);
    }
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| name(*v)).collect()
}

#[test]
fn every_enum_of_every_schema_lists_exactly_the_rust_vocabulary() {
    let vocabularies: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("kyc_status", names(KycStatus::ALL, KycStatus::as_str)),
        ("kyc_tier", names(KycTier::ALL, KycTier::as_str)),
        ("account_type", names(AccountType::ALL, AccountType::as_str)),
        ("account_status", names(AccountStatus::ALL, AccountStatus::as_str)),
        ("account_change", names(AccountChange::ALL, AccountChange::as_str)),
        ("transaction_type", names(TransactionType::ALL, TransactionType::as_str)),
        ("failure_reason", names(FailureReason::ALL, FailureReason::as_str)),
        ("payment_frequency", names(PaymentFrequency::ALL, PaymentFrequency::as_str)),
        ("case_reason", names(CaseReason::ALL, CaseReason::as_str)),
    ]);
    let mut seen = BTreeSet::new();
    for info in registry().list() {
        let schema: Value = serde_json::from_str(registry().get(info.event_type, info.major).unwrap()).unwrap();
        for (name, def) in schema["$defs"].as_object().unwrap() {
            let Some(values) = def.get("enum") else { continue };
            let vocabulary = vocabularies.get(name.as_str()).unwrap_or_else(|| panic!("no Rust vocabulary `{name}`"));
            let values: Vec<&str> = values.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(&values, vocabulary, "{name}");
            seen.insert(name.as_str().to_owned());
        }
    }
    assert_eq!(seen.iter().map(String::as_str).collect::<Vec<_>>(), vocabularies.keys().copied().collect::<Vec<_>>());
}

/// The JSON pointer of every value in `data`, the values inside arrays' first items included.
fn field_paths(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = format!("{path}/{key}");
                out.push(path.clone());
                field_paths(value, path, out);
            }
        }
        Value::Array(items) => {
            if let Some(first) = items.first() {
                let path = format!("{path}/0");
                out.push(path.clone());
                field_paths(first, path, out);
            }
        }
        _ => {}
    }
}

fn set(document: &mut Value, pointer: &str, value: Value) {
    *document.pointer_mut(pointer).unwrap() = value;
}

#[test]
fn given_wrong_values_in_every_field_then_the_schema_and_the_decoder_agree_on_every_field() {
    // Values that are wrong for some field types and right for others: `null` for an `Option`,
    // free text for a `String`, a number for a count, an empty list for a `Vec`.
    let wrong = [
        json!(null),
        json!(true),
        json!("zz ~?"),
        json!(""),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(4_294_967_296u64),
        json!([]),
        json!([true]),
        json!({}),
    ];
    let mut tried = 0;
    for event in examples() {
        // Given the wire form of a valid event
        let valid = wire(&envelope(&event, &causation()));
        let mut paths = Vec::new();
        field_paths(&valid["data"], "/data".into(), &mut paths);
        for path in paths {
            for value in &wrong {
                // When one field is replaced
                let mut document = valid.clone();
                set(&mut document, &path, value.clone());
                // Then the schema accepts it exactly when the decoder does
                let by_schema = registry().validate_json(&document);
                let by_decoder = decodes(&document);
                assert_eq!(
                    by_schema.is_ok(),
                    by_decoder.is_ok(),
                    "{} {path} = {value}: schema says {by_schema:?}, decoder says {:?}",
                    event.event_type(),
                    by_decoder.err()
                );
                tried += 1;
            }
        }
    }
    assert!(tried > 1000, "{tried}");
}

#[test]
fn given_an_unknown_field_in_any_object_then_the_schema_and_the_decoder_both_refuse_it() {
    for event in examples() {
        let valid = wire(&envelope(&event, &causation()));
        let mut objects = vec!["/data".to_owned()];
        let mut paths = Vec::new();
        field_paths(&valid["data"], "/data".into(), &mut paths);
        objects.extend(paths.into_iter().filter(|p| valid.pointer(p).unwrap().is_object()));
        for object in objects {
            let mut document = valid.clone();
            document.pointer_mut(&object).unwrap().as_object_mut().unwrap().insert("surprise".into(), json!(1));
            let error = registry().validate_json(&document).unwrap_err();
            assert!(error.to_string().contains("'surprise' was unexpected"), "{error}");
            assert!(decodes(&document).is_err(), "the decoder reads {object}.surprise of {}", event.event_type());
        }
    }
}

#[test]
fn given_a_field_left_out_then_the_schema_refuses_it_and_the_decoder_only_when_it_is_not_optional() {
    for event in examples() {
        let valid = wire(&envelope(&event, &causation()));
        let mut paths = Vec::new();
        field_paths(&valid["data"], "/data".into(), &mut paths);
        for path in paths.iter().filter(|p| !p.ends_with("/0")) {
            let (parent, key) = path.rsplit_once('/').unwrap();
            let mut document = valid.clone();
            document.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
            // The schema requires every field, null when absent: the wire form is always whole.
            let errors = errors_of(registry().validate_json(&document));
            assert_eq!(errors, vec![format!("{parent}: \"{key}\" is a required property")]);
            // serde reads a missing `Option` as `None`, and only an `Option` takes `null`.
            let mut null = valid.clone();
            set(&mut null, path, Value::Null);
            assert_eq!(decodes(&document).is_ok(), decodes(&null).is_ok(), "{} {path}", event.event_type());
        }
    }
}

// (b) The seed's own examples.

/// What the seed's `EventSchema` dataclass writes besides the fields its README shows: every
/// field has a value, `source` and `version` their defaults.
fn as_the_seed_writes_it(mut document: Value) -> Value {
    let fields = document.as_object_mut().unwrap();
    fields.entry("event_id").or_insert(json!("0d4b3f2e-6a1c-4f55-9a57-0d1e2f3a4b5c"));
    fields.entry("timestamp").or_insert(json!("2024-01-01T12:00:00Z"));
    fields.entry("source").or_insert(json!("nexum"));
    fields.entry("version").or_insert(json!("1.0"));
    fields.entry("metadata").or_insert(json!({}));
    document
}

/// Verbatim from the seed's README, "Event Payload Schemas".
const SEED_TRANSACTION_CREATED: &str = r#"{
  "event_id": "uuid",
  "event_type": "transaction_created",
  "timestamp": "2024-01-01T12:00:00Z",
  "entity_type": "transaction",
  "entity_id": "txn_123",
  "data": {
    "transaction_type": "deposit",
    "amount": "100.50",
    "currency": "USD",
    "from_account_id": "acc_from",
    "to_account_id": "acc_to",
    "description": "Cash deposit",
    "reference": "REF123"
  },
  "metadata": {
    "correlation_id": "corr_123",
    "user_id": "user_456"
  }
}"#;

const SEED_TRANSACTION_POSTED: &str = r#"{
  "event_id": "uuid",
  "event_type": "transaction_posted",
  "entity_type": "transaction",
  "entity_id": "txn_123",
  "data": {
    "transaction_type": "deposit",
    "amount": "100.50",
    "currency": "USD",
    "from_account_id": "acc_from",
    "to_account_id": "acc_to",
    "final_balance": "1100.50",
    "journal_entry_id": "je_789"
  }
}"#;

const SEED_CUSTOMER_CREATED: &str = r#"{
  "event_id": "uuid",
  "event_type": "customer_created",
  "entity_type": "customer",
  "entity_id": "cust_123",
  "data": {
    "first_name": "John",
    "last_name": "Doe",
    "email": "john@example.com",
    "phone": "+1234567890",
    "kyc_status": "verified",
    "kyc_tier": "tier_2"
  }
}"#;

const SEED_KYC_STATUS_CHANGED: &str = r#"{
  "event_type": "kyc_status_changed",
  "entity_type": "customer",
  "entity_id": "cust_123",
  "data": {
    "old_status": "pending",
    "new_status": "verified",
    "old_tier": "tier_1",
    "new_tier": "tier_2"
  }
}"#;

const SEED_LOAN_ORIGINATED: &str = r#"{
  "event_type": "loan_originated",
  "entity_type": "loan",
  "entity_id": "loan_123",
  "data": {
    "customer_id": "cust_123",
    "principal": "10000.00",
    "currency": "USD",
    "interest_rate": "5.5",
    "term_months": 60,
    "payment_frequency": "monthly"
  }
}"#;

#[test]
fn given_the_seeds_complete_examples_when_validated_then_they_pass_and_decode() {
    for (text, major) in [
        (SEED_TRANSACTION_CREATED, 1),
        (SEED_TRANSACTION_POSTED, 1),
        (SEED_CUSTOMER_CREATED, 1),
        (SEED_KYC_STATUS_CHANGED, 1),
    ] {
        // Given an example of the seed, with the envelope fields its dataclass always writes
        let seed: Value = serde_json::from_str(text).unwrap();
        let document = as_the_seed_writes_it(seed.clone());
        assert_eq!(document["data"], seed["data"]);
        assert_eq!(document["version"], json!(format!("{major}.0")));
        // When it is validated, as read and as parsed into the envelope
        let event = EventSchema::from_json(&serde_json::to_vec(&document).unwrap()).unwrap();
        // Then it passes both ways, and the decoder reads it
        registry().validate_json(&document).unwrap_or_else(|e| panic!("{e}"));
        registry().validate(&event).unwrap_or_else(|e| panic!("{e}"));
        decodes(&document).unwrap();
    }
}

#[test]
fn given_the_seeds_v1_posted_example_when_validated_against_v2_then_only_the_postings_are_missing() {
    let mut document = as_the_seed_writes_it(serde_json::from_str(SEED_TRANSACTION_POSTED).unwrap());
    document["version"] = json!("2.0");
    let errors = errors_of(registry().validate_json(&document));
    assert_eq!(errors, vec!["/data: \"postings\" is a required property".to_owned()]);
}

#[test]
fn given_the_seeds_loan_example_then_it_is_refused_for_the_fields_nexum_added() {
    // The seed's example shows part of the payload; Nexum's loan_originated v1 also carries the
    // accounts, the approval workflow and the schedule.
    let document = as_the_seed_writes_it(serde_json::from_str(SEED_LOAN_ORIGINATED).unwrap());
    let errors = errors_of(registry().validate_json(&document));
    let missing: Vec<String> = ["account_id", "loan_account_id", "workflow_id", "schedule"]
        .iter()
        .map(|field| format!("/data: \"{field}\" is a required property"))
        .collect();
    assert_eq!(errors, missing);
    assert!(decodes(&document).is_err());
}

// (d) Invalid events are refused, and the message says where and why.

fn seed_created() -> Value {
    as_the_seed_writes_it(serde_json::from_str(SEED_TRANSACTION_CREATED).unwrap())
}

#[test]
fn given_an_amount_as_a_json_number_then_the_error_points_at_it() {
    let mut document = seed_created();
    document["data"]["amount"] = json!(100.5);
    let error = registry().validate_json(&document).unwrap_err();
    assert_eq!(errors_of(Err(error.clone())), vec!["/data/amount: 100.5 is not of type \"string\"".to_owned()]);
    assert!(
        error.to_string().starts_with("invalid `transaction_created` event, version 1.0: /data/amount: 100.5"),
        "{error}"
    );
}

#[test]
fn given_an_amount_that_is_not_a_decimal_then_the_error_shows_the_pattern() {
    let mut document = seed_created();
    document["data"]["amount"] = json!("abc");
    let errors = errors_of(registry().validate_json(&document));
    assert_eq!(errors, vec![r#"/data/amount: "abc" does not match "^-?[0-9]+(\.[0-9]+)?$""#.to_owned()]);
}

#[test]
fn given_an_unknown_field_in_data_then_it_is_named() {
    let mut document = seed_created();
    document["data"]["fee"] = json!("1.00");
    let errors = errors_of(registry().validate_json(&document));
    assert_eq!(errors, vec!["/data: Additional properties are not allowed ('fee' was unexpected)".to_owned()]);
}

#[test]
fn given_a_missing_field_then_it_is_named() {
    let mut document = seed_created();
    document["data"].as_object_mut().unwrap().remove("currency");
    let errors = errors_of(registry().validate_json(&document));
    assert_eq!(errors, vec!["/data: \"currency\" is a required property".to_owned()]);
}

#[test]
fn given_a_value_outside_the_vocabulary_then_the_allowed_values_are_listed() {
    let mut document = seed_created();
    document["data"]["transaction_type"] = json!("teleport");
    let errors = errors_of(registry().validate_json(&document));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("/data/transaction_type: \"teleport\" is not one of \"deposit\""), "{errors:?}");
}

#[test]
fn given_several_faults_then_each_is_reported() {
    let mut document = seed_created();
    document["data"]["currency"] = json!("usd");
    document["entity_id"] = json!("txn 123");
    document["entity_type"] = json!("account");
    document["timestamp"] = json!("yesterday");
    let errors = errors_of(registry().validate_json(&document));
    let paths: BTreeSet<&str> = errors.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(paths, BTreeSet::from(["/data/currency", "/entity_id", "/entity_type", "/timestamp"]), "{errors:?}");
}

#[test]
fn given_an_unknown_major_version_then_the_known_ones_are_listed() {
    let mut document = as_the_seed_writes_it(serde_json::from_str(SEED_TRANSACTION_POSTED).unwrap());
    document["version"] = json!("3.0");
    let error = registry().validate_json(&document).unwrap_err();
    assert_eq!(
        error,
        SchemaError::UnknownVersion {
            event_type: "transaction_posted".into(),
            version: "3.0".into(),
            known: vec![1, 2]
        }
    );
    assert_eq!(error.to_string(), "no schema for version `3.0` of `transaction_posted`; known major versions: 1, 2");
    document["version"] = json!("latest");
    assert!(matches!(registry().validate_json(&document), Err(SchemaError::UnknownVersion { .. })));
}

#[test]
fn given_an_unknown_event_type_then_it_is_refused_by_name() {
    let mut document = seed_created();
    document["event_type"] = json!("transaction_teleported");
    let error = registry().validate_json(&document).unwrap_err();
    assert_eq!(error, SchemaError::UnknownType("transaction_teleported".into()));
    assert_eq!(error.to_string(), "no schema for event type `transaction_teleported`");
}

#[test]
fn given_an_envelope_without_version_then_version_1_applies_and_requires_it() {
    let mut document = seed_created();
    document.as_object_mut().unwrap().remove("version");
    let event = EventSchema::from_json(&serde_json::to_vec(&document).unwrap()).unwrap();
    let errors = errors_of(registry().validate(&event));
    assert_eq!(errors, vec!["(root): \"version\" is a required property".to_owned()]);
}

// (e) The files and the registry agree with the catalog.

#[test]
fn every_schema_file_is_registered_and_every_event_type_has_its_current_schema() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let (event_type, major) = name
            .strip_suffix(".json")
            .and_then(|stem| stem.rsplit_once(".v"))
            .unwrap_or_else(|| panic!("{name} is not <event_type>.v<major>.json"));
        let major: u32 = major.parse().unwrap();
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        assert_eq!(registry().get(event_type, major), Some(text.as_str()), "{name} is not registered as it is");
        files.insert((event_type.to_owned(), major));
    }
    let registered: BTreeSet<_> = registry().list().map(|info| (info.event_type.to_owned(), info.major)).collect();
    assert_eq!(registered, files);
    for info in EVENT_TYPES {
        assert!(
            registry().get(info.event_type, info.major).is_some(),
            "no schema for {} v{}",
            info.event_type,
            info.major
        );
    }
    for info in registry().list() {
        let catalog = EVENT_TYPES.iter().find(|c| c.event_type == info.event_type).unwrap();
        assert_eq!(info.topic, catalog.topic);
        assert!(info.major <= catalog.major, "{} v{} is newer than the catalog", info.event_type, info.major);
    }
}

#[test]
fn every_schema_is_a_valid_2020_12_schema_that_names_its_type_entity_and_version() {
    for info in registry().list() {
        let text = registry().get(info.event_type, info.major).unwrap();
        let schema: Value = serde_json::from_str(text).unwrap();
        let catalog = EVENT_TYPES.iter().find(|c| c.event_type == info.event_type).unwrap();
        let (event_type, major) = (info.event_type, info.major);
        jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("{event_type} v{major}: {e}"));
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["$id"], format!("https://nexum.example/schemas/{event_type}/v{major}.json"));
        assert_eq!(schema["title"], format!("{event_type} v{major}"));
        assert!(schema["description"].as_str().is_some_and(|d| !d.is_empty()));
        assert_eq!(schema["properties"]["event_type"]["const"], event_type);
        assert_eq!(schema["properties"]["entity_type"]["const"], catalog.entity_type);
        assert_eq!(schema["properties"]["version"]["pattern"], format!("^{major}\\.[0-9]+$"));
    }
}

// (c) On random payloads, the schema and the decoder agree.

fn id_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,128}"
}

fn id<T: FromStr + std::fmt::Debug>() -> impl Strategy<Value = T>
where
    T::Err: std::fmt::Debug,
{
    id_text().prop_map(|text| text.parse().unwrap())
}

fn amount() -> impl Strategy<Value = Decimal> {
    (any::<i64>(), 0u32..=8).prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale))
}

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["USD", "EUR", "GBP", "JPY", "CHF", "KWD"]).prop_map(parse)
}

fn transaction_type() -> impl Strategy<Value = TransactionType> {
    prop::sample::select(TransactionType::ALL)
}

fn created() -> impl Strategy<Value = TransactionCreated> {
    (
        transaction_type(),
        amount(),
        currency(),
        proptest::option::of(id()),
        proptest::option::of(id()),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
    )
        .prop_map(
            |(transaction_type, amount, currency, from_account_id, to_account_id, description, reference)| {
                TransactionCreated {
                    transaction_type,
                    amount,
                    currency,
                    from_account_id,
                    to_account_id,
                    description,
                    reference,
                }
            },
        )
}

fn posted() -> impl Strategy<Value = TransactionPosted> {
    (
        transaction_type(),
        amount(),
        currency(),
        proptest::option::of(id()),
        proptest::option::of(id()),
        amount(),
        id(),
        prop::collection::vec((id(), amount()).prop_map(|(account_id, amount)| Posting { account_id, amount }), 0..4),
    )
        .prop_map(
            |(
                transaction_type,
                amount,
                currency,
                from_account_id,
                to_account_id,
                final_balance,
                journal_entry_id,
                postings,
            )| TransactionPosted {
                transaction_type,
                amount,
                currency,
                from_account_id,
                to_account_id,
                final_balance,
                journal_entry_id,
                postings,
            },
        )
}

fn event() -> impl Strategy<Value = (NexumEvent, Causation)> {
    let payload =
        prop_oneof![created().prop_map(Payload::TransactionCreated), posted().prop_map(Payload::TransactionPosted)];
    let causation = (
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
    )
        .prop_map(|(correlation_id, causation_id, user_id)| Causation {
            correlation_id,
            causation_id,
            user_id,
            traceparent: None,
        });
    (id_text(), payload, causation)
        .prop_map(|(entity_id, payload, causation)| (NexumEvent::new(entity_id, payload), causation))
}

/// Ways to break an event that the schema and the decoder both refuse.
#[derive(Clone, Debug)]
enum Fault {
    AmountAsNumber,
    AmountNotDecimal(String),
    UnknownTransactionType(String),
    CurrencyNotACode(String),
    UnknownField(String),
    MissingField(&'static str),
    AccountIdNotAnId(String),
    EntityIdNotAnId(String),
    NewerMajor(u32),
    UnknownEventType(String),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::AmountAsNumber),
        "[a-zA-Z ,]{1,10}".prop_map(Fault::AmountNotDecimal),
        "[a-z_]{1,20}"
            .prop_filter("a word of the vocabulary", |t| TransactionType::ALL.iter().all(|v| v.as_str() != t))
            .prop_map(Fault::UnknownTransactionType),
        "[a-z]{3}|[A-Z]{1,2}|[A-Z]{4,5}".prop_map(Fault::CurrencyNotACode),
        "[a-z_]{1,12}"
            .prop_filter("a field of the payload", |f| {
                !["transaction_type", "amount", "currency", "from_account_id", "to_account_id"].contains(&f.as_str())
                    && !["description", "reference", "final_balance", "journal_entry_id", "postings"]
                        .contains(&f.as_str())
            })
            .prop_map(Fault::UnknownField),
        prop::sample::select(vec!["transaction_type", "amount", "currency"]).prop_map(Fault::MissingField),
        "[A-Za-z0-9]{0,4}[ /:@#][A-Za-z0-9]{0,4}".prop_map(Fault::AccountIdNotAnId),
        "|[A-Za-z0-9]{0,4}[ /:@#][A-Za-z0-9]{0,4}|[a-z]{129}".prop_map(Fault::EntityIdNotAnId),
        (3u32..1000).prop_map(Fault::NewerMajor),
        "[a-z_]{1,30}"
            .prop_filter("a catalog type", |t| EVENT_TYPES.iter().all(|info| info.event_type != t))
            .prop_map(Fault::UnknownEventType),
    ]
}

impl Fault {
    fn apply(&self, document: &mut Value) {
        let data = &mut document["data"];
        match self {
            Fault::AmountAsNumber => {
                // The same digits as a JSON number instead of a string.
                let number: Value = serde_json::from_str(data["amount"].as_str().unwrap()).unwrap();
                data["amount"] = number;
            }
            Fault::AmountNotDecimal(text) => data["amount"] = json!(text),
            Fault::UnknownTransactionType(text) => data["transaction_type"] = json!(text),
            Fault::CurrencyNotACode(text) => data["currency"] = json!(text),
            Fault::UnknownField(field) => data[field.as_str()] = json!("1.00"),
            Fault::MissingField(field) => {
                data.as_object_mut().unwrap().remove(*field);
            }
            Fault::AccountIdNotAnId(text) => data["to_account_id"] = json!(text),
            Fault::EntityIdNotAnId(text) => document["entity_id"] = json!(text),
            Fault::NewerMajor(major) => document["version"] = json!(format!("{major}.0")),
            Fault::UnknownEventType(text) => document["event_type"] = json!(text),
        }
    }
}

proptest! {
    #[test]
    fn given_a_random_transaction_event_when_enveloped_then_the_schema_and_the_decoder_accept_it(
        (event, causation) in event()
    ) {
        let schema = envelope(&event, &causation);
        let document = wire(&schema);
        prop_assert_eq!(registry().validate(&schema), Ok(()));
        prop_assert_eq!(registry().validate_json(&document), Ok(()));
        prop_assert_eq!(decodes(&document), Ok(event));
    }

    #[test]
    fn given_a_random_v1_posted_event_then_the_v1_schema_and_the_upcasting_decoder_accept_it(
        entity_id in id_text(), posted in posted()
    ) {
        let mut document = wire(&envelope(&NexumEvent::new(entity_id, Payload::TransactionPosted(posted)), &causation()));
        document["version"] = json!("1.0");
        document["data"].as_object_mut().unwrap().remove("postings");
        prop_assert_eq!(registry().validate_json(&document), Ok(()));
        let decoded = decodes(&document);
        prop_assert!(matches!(decoded, Ok(NexumEvent { payload: Payload::TransactionPosted(_), .. })), "{:?}", decoded);
    }

    #[test]
    fn given_a_random_transaction_event_with_a_fault_then_the_schema_and_the_decoder_both_refuse_it(
        (event, causation) in event(), fault in fault()
    ) {
        let mut document = wire(&envelope(&event, &causation));
        fault.apply(&mut document);
        let by_schema = registry().validate_json(&document);
        prop_assert!(by_schema.is_err(), "the schema accepts {:?}", fault);
        prop_assert!(decodes(&document).is_err(), "the decoder accepts {:?}; the schema says {:?}", fault, by_schema);
    }
}
