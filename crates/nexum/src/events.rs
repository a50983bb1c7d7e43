//! Every event core banking emits: its `event_type`, topic, entity, schema version and typed
//! payload, and the mapping to and from the seed's `EventSchema`.
//!
//! Amounts are decimal strings (`"100.50"`), written with the currency's minor units. Ids are
//! the typed ids of [`crate::ids`]. Decoding checks the major version and upcasts older
//! versions first (see [`upcast`]).

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use eventbus::{EventId, EventSchema, Topic};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{
    AccountChange, AccountStatus, AccountType, CaseReason, FailureReason, KycStatus, KycTier, PaymentFrequency,
    TransactionType,
};
use crate::ids::{
    AccountId, AlertId, AuditId, CaseId, CommandId, CustomerId, JournalEntryId, LoanId, StatementId, TransactionId,
    WorkflowId,
};

/// Why an `EventSchema` is not a Nexum event this code understands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not an event type of the catalog. It may come from a newer producer; dead-letter it.
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    /// A major version this consumer does not know. Upgrade the consumer; the event is
    /// dead-lettered with this reason meanwhile.
    #[error("unknown major version `{version}` of `{event_type}`: this consumer reads up to {known}")]
    UnknownVersion { event_type: String, version: String, known: u32 },
    /// The payload does not have the shape of its type and version.
    #[error("invalid `{event_type}` payload: {source}")]
    Payload {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    /// `entity_id` is missing or not an id.
    #[error("invalid entity id of `{event_type}`: {source}")]
    EntityId {
        event_type: String,
        #[source]
        source: crate::ids::IdError,
    },
}

/// One leg of a journal entry. Positive amounts are credits and negative amounts debits, seen
/// from the account: a deposit credits the customer's account and debits the bank's cash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posting {
    pub account_id: AccountId,
    pub amount: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionCreated {
    pub transaction_type: TransactionType,
    pub amount: Decimal,
    pub currency: eventbus::Currency,
    pub from_account_id: Option<AccountId>,
    pub to_account_id: Option<AccountId>,
    pub description: Option<String>,
    pub reference: Option<String>,
}

/// Version 2: version 1 (the seed's) plus the journal entry's `postings`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionPosted {
    pub transaction_type: TransactionType,
    pub amount: Decimal,
    pub currency: eventbus::Currency,
    pub from_account_id: Option<AccountId>,
    pub to_account_id: Option<AccountId>,
    /// The balance after posting of the account the transaction is about: the receiving account
    /// of a deposit or disbursement, the paying account otherwise.
    pub final_balance: Decimal,
    pub journal_entry_id: JournalEntryId,
    /// The journal entry: they sum to zero.
    pub postings: Vec<Posting>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionFailed {
    pub transaction_type: TransactionType,
    pub amount: Decimal,
    pub currency: eventbus::Currency,
    pub from_account_id: Option<AccountId>,
    pub to_account_id: Option<AccountId>,
    pub reason: FailureReason,
    pub error_message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountCreated {
    pub customer_id: CustomerId,
    pub account_type: AccountType,
    pub currency: eventbus::Currency,
    pub name: Option<String>,
    pub status: AccountStatus,
    /// How far below zero the balance may go: the overdraft of a checking account, the credit
    /// limit of a credit account, the principal of a loan account.
    pub overdraft_limit: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountUpdated {
    pub customer_id: CustomerId,
    pub account_type: AccountType,
    pub currency: eventbus::Currency,
    pub name: Option<String>,
    pub change: AccountChange,
    pub old_status: AccountStatus,
    pub status: AccountStatus,
    pub overdraft_limit: Decimal,
}

/// `customer_created` and `customer_updated`: the customer as it is after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerDetails {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub kyc_status: KycStatus,
    pub kyc_tier: KycTier,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KycStatusChanged {
    pub old_status: KycStatus,
    pub new_status: KycStatus,
    pub old_tier: KycTier,
    pub new_tier: KycTier,
}

/// One row of an amortisation schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installment {
    pub number: u32,
    pub due_date: NaiveDate,
    pub payment: Decimal,
    pub principal: Decimal,
    pub interest: Decimal,
    pub remaining_principal: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanOriginated {
    pub customer_id: CustomerId,
    pub principal: Decimal,
    pub currency: eventbus::Currency,
    /// Annual nominal rate in percent, e.g. `"5.5"`.
    pub interest_rate: Decimal,
    pub term_months: u32,
    pub payment_frequency: PaymentFrequency,
    /// The customer's account the principal is paid into.
    pub account_id: AccountId,
    /// The loan's own account: its balance is minus the outstanding principal.
    pub loan_account_id: AccountId,
    pub workflow_id: WorkflowId,
    pub schedule: Vec<Installment>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanDisbursed {
    pub customer_id: CustomerId,
    pub account_id: AccountId,
    pub amount: Decimal,
    pub currency: eventbus::Currency,
    pub transaction_id: TransactionId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanPaymentReceived {
    pub customer_id: CustomerId,
    pub account_id: AccountId,
    pub amount: Decimal,
    pub currency: eventbus::Currency,
    pub interest_portion: Decimal,
    pub principal_portion: Decimal,
    pub outstanding_principal: Decimal,
    pub transaction_id: TransactionId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanPaidOff {
    pub customer_id: CustomerId,
    pub currency: eventbus::Currency,
    pub total_interest_paid: Decimal,
}

/// An originated loan was cancelled before it was paid out, and its loan account closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanCancelled {
    pub customer_id: CustomerId,
    pub loan_account_id: AccountId,
    pub principal: Decimal,
    pub currency: eventbus::Currency,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanDefaulted {
    pub customer_id: CustomerId,
    pub currency: eventbus::Currency,
    pub outstanding_principal: Decimal,
    pub missed_payments: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditStatementGenerated {
    pub account_id: AccountId,
    pub customer_id: CustomerId,
    pub currency: eventbus::Currency,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub opening_balance: Decimal,
    pub closing_balance: Decimal,
    pub minimum_payment: Decimal,
    pub due_date: NaiveDate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditPaymentReceived {
    pub customer_id: CustomerId,
    pub from_account_id: AccountId,
    pub amount: Decimal,
    pub currency: eventbus::Currency,
    /// The credit account's balance after the payment (negative while something is owed).
    pub new_balance: Decimal,
    pub transaction_id: TransactionId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionCaseCreated {
    pub loan_id: LoanId,
    pub customer_id: CustomerId,
    pub reason: CaseReason,
    pub amount_due: Decimal,
    pub currency: eventbus::Currency,
    pub days_overdue: u32,
    /// Scheduled installments missed so far.
    pub missed_payments: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionCaseEscalated {
    pub loan_id: LoanId,
    /// 2 for the first escalation, then 3, ...
    pub level: u32,
    pub missed_payments: u32,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionCaseResolved {
    pub loan_id: LoanId,
    pub resolution: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceAlertRaised {
    pub alert_type: String,
    pub transaction_id: TransactionId,
    pub account_id: AccountId,
    pub customer_id: CustomerId,
    pub amount: Decimal,
    pub currency: eventbus::Currency,
    pub threshold: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspiciousActivityDetected {
    pub activity_type: String,
    pub account_id: AccountId,
    pub customer_id: CustomerId,
    pub transaction_ids: Vec<TransactionId>,
    pub total_amount: Decimal,
    pub currency: eventbus::Currency,
    pub window_hours: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEventRecorded {
    /// The command, e.g. `deposit`.
    pub command: String,
    /// Who asked: the `user_id` of the command, or `system`.
    pub actor: String,
    pub entity_type: String,
    pub entity_id: String,
    /// `accepted`; `failed` for a transaction recorded as failed; `rejected` for a refused command
    /// or loan application; `unchanged` for a command that found nothing to do.
    pub outcome: String,
    /// The events the command recorded, in order.
    pub event_ids: Vec<EventId>,
    pub event_types: Vec<String>,
}

/// A command was refused: it was malformed, or core banking would not carry it out. Its
/// `entity_id` is the command's `event_id`, and its `causation_id` too, so the sender can
/// correlate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRejected {
    /// The topic the command came from, e.g. `nexum.commands.transactions`.
    pub topic: String,
    /// The command's `event_type` as received, e.g. `transaction_command`.
    pub command_type: String,
    /// The command's `data.action`, if it had one.
    pub action: Option<String>,
    /// A stable, machine-readable class of the refusal, e.g. `malformed` or `unknown_account`.
    pub error_code: String,
    /// What was wrong, for people.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowStepCompleted {
    pub workflow_type: String,
    pub subject_id: String,
    pub step: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowCompleted {
    pub workflow_type: String,
    pub subject_id: String,
    pub steps: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRejected {
    pub workflow_type: String,
    pub subject_id: String,
    pub step: String,
    pub reason: String,
}

macro_rules! catalog {
    ($($variant:ident($payload:ty, $id:ty) = $event_type:literal, $entity_type:literal, $topic:ident, $major:literal;)*) => {
        /// The payload of a Nexum event, by type.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Payload {
            $($variant($payload),)*
        }

        /// Every event type with its entity type, topic and current major version.
        pub const EVENT_TYPES: &[EventTypeInfo] = &[
            $(EventTypeInfo { event_type: $event_type, entity_type: $entity_type, topic: Topic::$topic, major: $major },)*
        ];

        impl Payload {
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $event_type,)*
                }
            }

            fn to_data(&self) -> Value {
                match self {
                    $(Self::$variant(p) => serde_json::to_value(p),)*
                }
                .expect("payloads serialise: their maps have string keys")
            }

            fn from_data(event_type: &str, data: &Map<String, Value>) -> Result<Self, DecodeError> {
                let payload = |source| DecodeError::Payload { event_type: event_type.to_owned(), source };
                match event_type {
                    $($event_type => Ok(Self::$variant(<$payload>::deserialize(data).map_err(payload)?)),)*
                    other => Err(DecodeError::UnknownType(other.to_owned())),
                }
            }

            /// Checks that `entity_id` is an id of the kind this event is about.
            fn check_entity(event_type: &str, entity_id: &str) -> Result<(), DecodeError> {
                let entity = |source| DecodeError::EntityId { event_type: event_type.to_owned(), source };
                match event_type {
                    $($event_type => entity_id.parse::<$id>().map(drop).map_err(entity),)*
                    other => Err(DecodeError::UnknownType(other.to_owned())),
                }
            }
        }
    };
}

catalog! {
    TransactionCreated(TransactionCreated, TransactionId) = "transaction_created", "transaction", TransactionsCreated, 1;
    TransactionPosted(TransactionPosted, TransactionId) = "transaction_posted", "transaction", TransactionsPosted, 2;
    TransactionFailed(TransactionFailed, TransactionId) = "transaction_failed", "transaction", TransactionsFailed, 1;
    AccountCreated(AccountCreated, AccountId) = "account_created", "account", AccountsCreated, 1;
    AccountUpdated(AccountUpdated, AccountId) = "account_updated", "account", AccountsUpdated, 1;
    CustomerCreated(CustomerDetails, CustomerId) = "customer_created", "customer", CustomersCreated, 1;
    CustomerUpdated(CustomerDetails, CustomerId) = "customer_updated", "customer", CustomersUpdated, 1;
    KycStatusChanged(KycStatusChanged, CustomerId) = "kyc_status_changed", "customer", CustomersKycChanged, 1;
    LoanOriginated(LoanOriginated, LoanId) = "loan_originated", "loan", LoansOriginated, 1;
    LoanDisbursed(LoanDisbursed, LoanId) = "loan_disbursed", "loan", LoansDisbursed, 1;
    LoanPaymentReceived(LoanPaymentReceived, LoanId) = "loan_payment_received", "loan", LoansPayment, 1;
    LoanPaidOff(LoanPaidOff, LoanId) = "loan_paid_off", "loan", LoansPaidOff, 1;
    LoanDefaulted(LoanDefaulted, LoanId) = "loan_defaulted", "loan", LoansDefaulted, 1;
    LoanCancelled(LoanCancelled, LoanId) = "loan_cancelled", "loan", LoansCancelled, 1;
    CreditStatementGenerated(CreditStatementGenerated, StatementId) = "credit_statement_generated", "credit_statement", CreditStatementGenerated, 1;
    CreditPaymentReceived(CreditPaymentReceived, AccountId) = "credit_payment_received", "account", CreditPayment, 1;
    CollectionCaseCreated(CollectionCaseCreated, CaseId) = "collection_case_created", "collection_case", CollectionsCaseCreated, 1;
    CollectionCaseEscalated(CollectionCaseEscalated, CaseId) = "collection_case_escalated", "collection_case", CollectionsCaseEscalated, 1;
    CollectionCaseResolved(CollectionCaseResolved, CaseId) = "collection_case_resolved", "collection_case", CollectionsCaseResolved, 1;
    ComplianceAlertRaised(ComplianceAlertRaised, AlertId) = "compliance_alert_raised", "compliance_alert", ComplianceAlert, 1;
    SuspiciousActivityDetected(SuspiciousActivityDetected, AlertId) = "suspicious_activity_detected", "compliance_alert", ComplianceSuspiciousActivity, 1;
    AuditEventRecorded(AuditEventRecorded, AuditId) = "audit_event_recorded", "audit", AuditEvents, 1;
    WorkflowStepCompleted(WorkflowStepCompleted, WorkflowId) = "workflow_step_completed", "workflow", WorkflowsStepCompleted, 1;
    WorkflowCompleted(WorkflowCompleted, WorkflowId) = "workflow_completed", "workflow", WorkflowsCompleted, 1;
    WorkflowRejected(WorkflowRejected, WorkflowId) = "workflow_rejected", "workflow", WorkflowsRejected, 1;
    CommandRejected(CommandRejected, CommandId) = "command_rejected", "command", CommandsRejected, 1;
}

/// What the catalog says about one event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTypeInfo {
    pub event_type: &'static str,
    pub entity_type: &'static str,
    pub topic: Topic,
    /// The major version this code writes and reads; older ones are upcast.
    pub major: u32,
}

impl EventTypeInfo {
    pub fn of(event_type: &str) -> Option<&'static EventTypeInfo> {
        EVENT_TYPES.iter().find(|info| info.event_type == event_type)
    }

    /// The version written into new events, e.g. `2.0`.
    pub fn version(&self) -> String {
        format!("{}.0", self.major)
    }
}

/// Who caused an event and in answer to what: the metadata every event carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Causation {
    /// Ties together everything done for one request.
    pub correlation_id: Option<String>,
    /// The `event_id` of the command or event that caused this one.
    pub causation_id: Option<String>,
    /// The user who asked, if any.
    pub user_id: Option<String>,
}

/// A Nexum event: the entity it is about and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NexumEvent {
    pub entity_id: String,
    pub payload: Payload,
}

impl NexumEvent {
    pub fn new(entity_id: impl ToString, payload: Payload) -> Self {
        Self { entity_id: entity_id.to_string(), payload }
    }

    pub fn info(&self) -> &'static EventTypeInfo {
        EventTypeInfo::of(self.payload.event_type()).expect("every payload is in the catalog")
    }

    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    pub fn topic(&self) -> Topic {
        self.info().topic
    }

    /// The seed's envelope for this event, with a fresh id and the given time and causation.
    pub fn to_schema(&self, id: EventId, at: DateTime<Utc>, causation: &Causation) -> EventSchema {
        let info = self.info();
        let Value::Object(data) = self.payload.to_data() else { unreachable!("payloads are structs") };
        let mut metadata = Map::new();
        for (key, value) in [
            ("correlation_id", &causation.correlation_id),
            ("causation_id", &causation.causation_id),
            ("user_id", &causation.user_id),
        ] {
            if let Some(value) = value {
                metadata.insert(key.to_owned(), Value::String(value.clone()));
            }
        }
        EventSchema {
            event_id: Some(id),
            event_type: info.event_type.into(),
            timestamp: Some(at.trunc_subsecs(6)),
            source: Some(eventbus::envelope::DEFAULT_SOURCE.to_owned()),
            version: Some(info.version()),
            entity_type: info.entity_type.to_owned(),
            entity_id: self.entity_id.clone(),
            data,
            metadata,
        }
    }

    /// Reads an event written by any producer: checks the type and major version, upcasts an
    /// older version, and checks the payload and entity id.
    pub fn from_schema(event: &EventSchema) -> Result<Self, DecodeError> {
        let event_type = event.event_type.as_str();
        let info = EventTypeInfo::of(event_type).ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
        let major =
            major_version(event.version()).filter(|major| (1..=info.major).contains(major)).ok_or_else(|| {
                DecodeError::UnknownVersion {
                    event_type: event_type.to_owned(),
                    version: event.version().to_owned(),
                    known: info.major,
                }
            })?;
        Payload::check_entity(event_type, &event.entity_id)?;
        // Only an older version needs its own copy of the payload, to upcast it.
        let payload = if major == info.major {
            Payload::from_data(event_type, &event.data)?
        } else {
            let Value::Object(data) = upcast(event_type, major, Value::Object(event.data.clone())) else {
                unreachable!("upcasting keeps an object an object")
            };
            Payload::from_data(event_type, &data)?
        };
        Ok(Self { entity_id: event.entity_id.clone(), payload })
    }
}

/// The major part of a `major.minor` version.
pub fn major_version(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

/// Brings the payload of an older major version up to the current one.
///
/// `transaction_posted` v1 is the seed's shape, without the journal entry. v2 adds `postings`,
/// which v1 implies: the paying account is debited and the receiving account credited, and the
/// bank's cash is the other side of a deposit or a withdrawal.
pub fn upcast(event_type: &str, major: u32, mut data: Value) -> Value {
    if event_type == "transaction_posted"
        && major == 1
        && let Value::Object(fields) = &mut data
        && !fields.contains_key("postings")
    {
        let amount = fields.get("amount").cloned().unwrap_or(Value::Null);
        let negated = match amount.as_str().map(|a| a.strip_prefix('-').map(str::to_owned).unwrap_or(format!("-{a}"))) {
            Some(negated) => Value::String(negated),
            None => Value::Null,
        };
        let side = |key: &str| {
            fields.get(key).filter(|v| !v.is_null()).cloned().unwrap_or(Value::String(AccountId::cash().to_string()))
        };
        let postings = serde_json::json!([
            {"account_id": side("from_account_id"), "amount": negated},
            {"account_id": side("to_account_id"), "amount": amount},
        ]);
        fields.insert("postings".to_owned(), postings);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1_posted() -> EventSchema {
        serde_json::from_value(json!({
            "event_id": "e1",
            "event_type": "transaction_posted",
            "entity_type": "transaction",
            "entity_id": "txn_123",
            "data": {
                "transaction_type": "deposit",
                "amount": "100.50",
                "currency": "USD",
                "from_account_id": null,
                "to_account_id": "acc_to",
                "final_balance": "1100.50",
                "journal_entry_id": "je_789"
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_v1_posted_event_is_upcast_to_a_balanced_v2_journal_entry() {
        let event = NexumEvent::from_schema(&v1_posted()).unwrap();
        let Payload::TransactionPosted(posted) = event.payload else { panic!("wrong type") };
        assert_eq!(
            posted.postings,
            vec![
                Posting { account_id: AccountId::cash(), amount: "-100.50".parse().unwrap() },
                Posting { account_id: "acc_to".parse().unwrap(), amount: "100.50".parse().unwrap() },
            ]
        );
    }

    #[test]
    fn an_unknown_major_version_is_refused_with_the_reason() {
        let mut event = v1_posted();
        event.version = Some("3.0".into());
        let error = NexumEvent::from_schema(&event).unwrap_err();
        assert!(matches!(error, DecodeError::UnknownVersion { known: 2, .. }), "{error}");
        assert!(error.to_string().contains("unknown major version `3.0`"));
    }

    #[test]
    fn an_unknown_type_and_a_bad_entity_id_are_refused() {
        let mut event = v1_posted();
        event.entity_id = "not an id".into();
        assert!(matches!(NexumEvent::from_schema(&event), Err(DecodeError::EntityId { .. })));
        event.event_type = "transaction_teleported".into();
        assert!(matches!(NexumEvent::from_schema(&event), Err(DecodeError::UnknownType(_))));
    }

    #[test]
    fn every_catalog_event_topic_is_produced_by_some_event_type() {
        for topic in
            Topic::ALL.iter().filter(|t| t.as_str().starts_with("nexum.") && !t.as_str().contains(".commands."))
        {
            assert!(EVENT_TYPES.iter().any(|info| info.topic == *topic), "{topic} has no event type");
        }
    }
}
