//! The JSON Schemas of the Nexum events: one per event type and major version, written in
//! `schemas/<event_type>.v<major>.json` and embedded in the binary, so nothing is read at run
//! time.
//!
//! The schemas are the contract for consumers that do not use this crate. Each one describes
//! the whole `EventSchema` envelope as Nexum writes it: `event_id`, `event_type`, `timestamp`,
//! `source`, `version`, `entity_type`, `entity_id` and `data` are required; `metadata` is
//! optional because the envelope leaves it out when it is empty. `data` has exactly the fields of
//! the payload struct of [`crate::events`], every one of them required, `null` where the Rust
//! field is `None`.
//!
//! Where a schema is stricter than the serde decoder ([`crate::events::NexumEvent::from_schema`]):
//! a missing `Option` field, which serde reads as `None`; an amount in scientific notation
//! (`"1e3"`), which `rust_decimal` reads; an envelope without `source` or `version`, which the
//! envelope fills with the seed's defaults. Where it is looser: a currency is any three capital
//! letters, while the decoder knows the ISO 4217 list; a whole number written `5.0` is an
//! integer to JSON Schema but not to serde.

use std::fmt;
use std::sync::{LazyLock, OnceLock};

use eventbus::envelope::{DEFAULT_VERSION, masked};
use eventbus::{EventSchema, Topic};
use jsonschema::{ValidationError, Validator};
use serde_json::{Value, json};

use crate::events::{EventTypeInfo, major_version};

/// Why an event does not pass its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The document is not a JSON object with a string `event_type`, so no schema applies. Fix
    /// the producer; the document cannot be routed either.
    #[error("not an event: {0}")]
    NotAnEvent(&'static str),
    /// No schema for this event type: it is not a Nexum event, or comes from a newer producer.
    /// `eventbus schemas list` shows the types known.
    #[error("no schema for event type `{0}`")]
    UnknownType(String),
    /// The event type is known, but not this major version. A newer producer wrote it: upgrade
    /// the reader. A version that is not `major.minor` lands here too.
    #[error("no schema for version `{version}` of `{event_type}`; known major versions: {}", list(known))]
    UnknownVersion {
        /// The event's `event_type`.
        event_type: String,
        /// The event's `version`, as written.
        version: String,
        /// The major versions of the type that have a schema.
        known: Vec<u32>,
    },
    /// The event breaks its schema. Each error names the JSON pointer of the offending value and
    /// what is wrong with it; personal data in the values is masked. Fix the producer.
    #[error("invalid `{event_type}` event, version {version}: {}", errors.join("; "))]
    Invalid {
        /// The event's `event_type`.
        event_type: String,
        /// The event's `version`, as written.
        version: String,
        /// Each violation: the JSON pointer of the offending value and what is wrong with it.
        errors: Vec<String>,
    },
}

fn list(majors: &[u32]) -> String {
    majors.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// One schema of the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaInfo {
    /// The event type the schema describes, e.g. `transaction_posted`.
    pub event_type: &'static str,
    /// The major version it describes: the schema file is `<event_type>.v<major>.json`.
    pub major: u32,
    /// The topic events of this type are published to.
    pub topic: Topic,
}

macro_rules! embedded {
    ($($event_type:literal, $major:literal;)*) => {
        /// Every schema file: event type, major version and the file's text.
        const EMBEDDED: &[(&str, u32, &str)] = &[
            $(($event_type, $major, include_str!(concat!("../schemas/", $event_type, ".v", $major, ".json"))),)*
        ];
    };
}

embedded! {
    "transaction_created", 1;
    "transaction_posted", 1;
    "transaction_posted", 2;
    "transaction_failed", 1;
    "account_created", 1;
    "account_updated", 1;
    "customer_created", 1;
    "customer_updated", 1;
    "kyc_status_changed", 1;
    "loan_originated", 1;
    "loan_disbursed", 1;
    "loan_payment_received", 1;
    "loan_paid_off", 1;
    "loan_defaulted", 1;
    "loan_cancelled", 1;
    "credit_statement_generated", 1;
    "credit_payment_received", 1;
    "collection_case_created", 1;
    "collection_case_escalated", 1;
    "collection_case_resolved", 1;
    "compliance_alert_raised", 1;
    "suspicious_activity_detected", 1;
    "audit_event_recorded", 1;
    "workflow_step_completed", 1;
    "workflow_completed", 1;
    "workflow_rejected", 1;
    "command_rejected", 1;
}

struct Schema {
    info: SchemaInfo,
    text: &'static str,
    /// Compiled on first use, then kept.
    validator: OnceLock<Validator>,
}

impl Schema {
    fn validator(&self) -> &Validator {
        self.validator.get_or_init(|| {
            let schema: Value = serde_json::from_str(self.text).expect("embedded schemas are JSON (tested)");
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&schema)
                .expect("embedded schemas compile (tested)")
        })
    }
}

/// The schemas of every Nexum event type and major version, with their validators.
pub struct SchemaRegistry {
    schemas: Vec<Schema>,
}

static GLOBAL: LazyLock<SchemaRegistry> = LazyLock::new(SchemaRegistry::new);

impl SchemaRegistry {
    /// A registry of the embedded schemas. Cheap: each validator is compiled when first used.
    pub fn new() -> Self {
        let schemas = EMBEDDED
            .iter()
            .map(|&(event_type, major, text)| {
                let info =
                    EventTypeInfo::of(event_type).expect("every schema file is of a catalog event type (tested)");
                Schema { info: SchemaInfo { event_type, major, topic: info.topic }, text, validator: OnceLock::new() }
            })
            .collect();
        Self { schemas }
    }

    /// The registry shared by the process, so each validator is compiled once.
    pub fn global() -> &'static SchemaRegistry {
        &GLOBAL
    }

    /// Every schema, in catalog order, older major versions first.
    pub fn list(&self) -> impl Iterator<Item = SchemaInfo> + '_ {
        self.schemas.iter().map(|schema| schema.info)
    }

    /// The schema of `event_type` at major version `major`, as JSON text.
    pub fn get(&self, event_type: &str, major: u32) -> Option<&'static str> {
        self.find(event_type, major).map(|schema| schema.text)
    }

    /// Checks an event against the schema of its type and major version.
    ///
    /// The event is checked as it is written on the wire: fields the envelope leaves out (an
    /// absent `version` or `source`) are missing, not defaulted. The schema is picked by the
    /// major of [`EventSchema::version`], so an event without `version` is checked against
    /// version 1, which requires it.
    pub fn validate(&self, event: &EventSchema) -> Result<(), SchemaError> {
        let document =
            serde_json::to_value(event).expect("an EventSchema always serialises: its maps have string keys");
        self.validate_json(&document)
    }

    /// Checks a JSON document as read, before any parsing into an `EventSchema`: fields that
    /// parsing would drop or default are checked too.
    pub fn validate_json(&self, document: &Value) -> Result<(), SchemaError> {
        let Value::Object(fields) = document else {
            return Err(SchemaError::NotAnEvent("an event is a JSON object"));
        };
        let event_type = match fields.get("event_type") {
            Some(Value::String(event_type)) => event_type.as_str(),
            Some(_) => return Err(SchemaError::NotAnEvent("`event_type` is not a string")),
            None => return Err(SchemaError::NotAnEvent("no `event_type`")),
        };
        let known: Vec<u32> = self.list().filter(|info| info.event_type == event_type).map(|info| info.major).collect();
        let Some(&current) = known.last() else {
            return Err(SchemaError::UnknownType(event_type.to_owned()));
        };
        // An absent version is the seed's default; one that is not a string is checked against
        // the current schema, which says what is wrong with it.
        let version = match fields.get("version") {
            None => DEFAULT_VERSION.to_owned(),
            Some(Value::String(version)) => version.clone(),
            Some(other) => other.to_string(),
        };
        let major = match fields.get("version") {
            Some(Value::String(_)) | None => major_version(&version).filter(|major| known.contains(major)),
            Some(_) => Some(current),
        };
        let Some(schema) = major.and_then(|major| self.find(event_type, major)) else {
            return Err(SchemaError::UnknownVersion { event_type: event_type.to_owned(), version, known });
        };
        let validator = schema.validator();
        if validator.is_valid(document) {
            return Ok(());
        }
        let errors = validator.iter_errors(document).map(|error| describe(&error)).collect();
        Err(SchemaError::Invalid { event_type: event_type.to_owned(), version, errors })
    }

    fn find(&self, event_type: &str, major: u32) -> Option<&Schema> {
        self.schemas.iter().find(|schema| schema.info.event_type == event_type && schema.info.major == major)
    }
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list()).finish()
    }
}

/// Values longer than this are cut in messages.
const MAX_SHOWN: usize = 120;

/// `/data/amount: "abc" does not match "^-?[0-9]+(\.[0-9]+)?$"`, with personal data masked
/// as in logs: an email, a phone number or a name in the value is not repeated.
fn describe(error: &ValidationError<'_>) -> String {
    let path = error.instance_path.as_str();
    let key = path.rsplit('/').next().unwrap_or_default().replace("~1", "/").replace("~0", "~");
    // Wrapped in its key so that a personal field is masked even when it is the value shown.
    let wrapped = masked(&json!({ key.as_str(): error.instance.as_ref() }));
    let mut shown = wrapped[key.as_str()].to_string();
    if shown.len() > MAX_SHOWN {
        let cut = (0..=MAX_SHOWN).rev().find(|&i| shown.is_char_boundary(i)).unwrap_or(0);
        shown.truncate(cut);
        shown.push('…');
    }
    let at = if path.is_empty() { "(root)" } else { path };
    format!("{at}: {}", error.masked_with(shown))
}

/// Validates `event` against the schema of its type and major version, from the registry of
/// the schemas built into this crate.
pub fn validate(event: &EventSchema) -> Result<(), SchemaError> {
    SchemaRegistry::global().validate(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deposit() -> Value {
        json!({
            "event_id": "e1",
            "event_type": "customer_created",
            "timestamp": "2024-01-01T12:00:00Z",
            "source": "nexum",
            "version": "1.0",
            "entity_type": "customer",
            "entity_id": "cust_1",
            "data": {
                "first_name": "John", "last_name": "Doe", "email": "john@example.com", "phone": null,
                "kyc_status": "verified", "kyc_tier": "tier_2"
            }
        })
    }

    #[test]
    fn given_a_bad_personal_field_when_validated_then_the_error_masks_its_value() {
        // Given an email that is a number and a name that is too, in an otherwise valid customer
        let mut event = deposit();
        event["data"]["email"] = json!(123456789);
        event["data"]["last_name"] = json!(["Doe"]);
        // When it is validated
        let error = SchemaRegistry::new().validate_json(&event).unwrap_err();
        // Then both are reported by path, and neither value is repeated
        let SchemaError::Invalid { errors, .. } = &error else { panic!("{error}") };
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("/data/email: ") && e.contains("is not of type \"string\"")));
        assert!(errors.iter().any(|e| e.starts_with("/data/last_name: ")));
        assert!(!error.to_string().contains("123456789"), "{error}");
        assert!(!error.to_string().contains("Doe"), "{error}");
    }

    #[test]
    fn given_a_long_value_when_it_is_reported_then_it_is_cut() {
        let mut event = deposit();
        event["data"]["kyc_status"] = json!("x".repeat(1000));
        let error = SchemaRegistry::new().validate_json(&event).unwrap_err();
        let SchemaError::Invalid { errors, .. } = error else { panic!("not invalid") };
        assert!(errors[0].starts_with("/data/kyc_status: \"xxx"), "{errors:?}");
        assert!(errors[0].contains("…"), "{errors:?}");
        assert!(errors[0].len() < 300, "{}", errors[0].len());
    }

    #[test]
    fn given_a_version_that_is_not_a_string_then_the_current_schema_says_so() {
        let mut event = deposit();
        event["version"] = json!(1.0);
        let error = SchemaRegistry::new().validate_json(&event).unwrap_err();
        let SchemaError::Invalid { errors, .. } = error else { panic!("not invalid: {error}") };
        assert_eq!(errors, vec!["/version: 1.0 is not of type \"string\"".to_owned()]);
    }

    #[test]
    fn given_documents_that_are_not_events_then_they_are_refused_without_a_schema() {
        let registry = SchemaRegistry::new();
        for (document, reason) in [
            (json!([1, 2]), "an event is a JSON object"),
            (json!({"data": {}}), "no `event_type`"),
            (json!({"event_type": 5}), "`event_type` is not a string"),
        ] {
            assert_eq!(registry.validate_json(&document), Err(SchemaError::NotAnEvent(reason)));
        }
    }
}
