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

use crate::domain::types::{
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
    UnknownVersion {
        /// The event's `event_type`.
        event_type: String,
        /// The event's `version`, as written.
        version: String,
        /// The newest major version of the type this code reads.
        known: u32,
    },
    /// The payload does not have the shape of its type and version.
    #[error("invalid `{event_type}` payload: {source}")]
    Payload {
        /// The event's `event_type`.
        event_type: String,
        /// What serde found wrong with `data`.
        #[source]
        source: serde_json::Error,
    },
    /// `entity_id` is missing or not an id.
    #[error("invalid entity id of `{event_type}`: {source}")]
    EntityId {
        /// The event's `event_type`.
        event_type: String,
        /// Why `entity_id` is not an id.
        #[source]
        source: crate::ids::IdError,
    },
}

/// One leg of a journal entry. Positive amounts are credits and negative amounts debits, seen
/// from the account: a deposit credits the customer's account and debits the bank's cash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posting {
    /// The account the leg is booked to: a customer's account, or one of the bank's own ledger
    /// accounts such as `gl_cash` or `gl_interest_income`.
    pub account_id: AccountId,
    /// The leg's amount as a decimal string in the transaction's currency, e.g. `"-100.50"`:
    /// positive credits the account, negative debits it.
    pub amount: Decimal,
}

/// `transaction_created`: a money movement was accepted and is about to be posted, or recorded as
/// failed with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionCreated {
    /// The kind of money movement: deposit, withdrawal, transfer, loan disbursement, loan payment
    /// or credit payment.
    pub transaction_type: TransactionType,
    /// The amount moved, a decimal string in `currency`, e.g. `"100.50"`: positive, with no more
    /// decimals than the currency has.
    pub amount: Decimal,
    /// The ISO 4217 code of the amount, e.g. `USD`.
    pub currency: eventbus::Currency,
    /// The paying account; `None` (null on the wire) when the money comes from outside the bank, as
    /// in a deposit.
    pub from_account_id: Option<AccountId>,
    /// The receiving account; `None` (null on the wire) when the money leaves the bank, as in a
    /// withdrawal.
    pub to_account_id: Option<AccountId>,
    /// Free text from the request, at most 500 printable characters, e.g. `Cash deposit`; `None` if
    /// there was none.
    pub description: Option<String>,
    /// The requester's own reference for the movement, at most 500 printable characters, e.g. an
    /// invoice number; `None` if there was none.
    pub reference: Option<String>,
}

/// `transaction_posted`: a transaction was posted to the ledger with its balanced journal entry.
///
/// Version 2: version 1 (the seed's) plus the journal entry's `postings`; a version 1 event is
/// upcast when it is read (see [`upcast`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionPosted {
    /// The kind of money movement: deposit, withdrawal, transfer, loan disbursement, loan payment
    /// or credit payment.
    pub transaction_type: TransactionType,
    /// The amount moved, a decimal string in `currency`, e.g. `"100.50"`.
    pub amount: Decimal,
    /// The ISO 4217 code of the amount, e.g. `USD`.
    pub currency: eventbus::Currency,
    /// The paying account; `None` (null on the wire) when the money comes from outside the bank, as
    /// in a deposit.
    pub from_account_id: Option<AccountId>,
    /// The receiving account; `None` (null on the wire) when the money leaves the bank, as in a
    /// withdrawal.
    pub to_account_id: Option<AccountId>,
    /// The balance after posting of the account the transaction is about: the receiving account
    /// of a deposit or disbursement, the paying account otherwise.
    pub final_balance: Decimal,
    /// The id of the journal entry that booked the transaction (`je_…`).
    pub journal_entry_id: JournalEntryId,
    /// The journal entry: they sum to zero.
    pub postings: Vec<Posting>,
}

/// `transaction_failed`: a valid transaction could not go through (insufficient funds, a frozen
/// account, ...); no money moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionFailed {
    /// The kind of money movement that was attempted.
    pub transaction_type: TransactionType,
    /// The amount that was to move, a decimal string in `currency`.
    pub amount: Decimal,
    /// The ISO 4217 code of the amount, e.g. `USD`.
    pub currency: eventbus::Currency,
    /// The account that was to pay; `None` (null on the wire) for money from outside the bank.
    pub from_account_id: Option<AccountId>,
    /// The account that was to receive; `None` (null on the wire) for money leaving the bank.
    pub to_account_id: Option<AccountId>,
    /// Why it failed, as a stable code such as `insufficient_funds`.
    pub reason: FailureReason,
    /// The reason for people, e.g. `insufficient funds`; the publisher's `on_transaction_failed`
    /// may put the caller's own message here.
    pub error_message: String,
}

/// `account_created`: an account was opened, by a customer or, for a loan's own account, by loan
/// origination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountCreated {
    /// The customer who owns the account.
    pub customer_id: CustomerId,
    /// Checking, savings, credit, or loan: the loan's own account, opened when the loan is
    /// originated.
    pub account_type: AccountType,
    /// The ISO 4217 code of the account's currency: every amount booked to the account is in it.
    pub currency: eventbus::Currency,
    /// The account's display name, 1 to 100 printable characters, or `None` (null on the wire).
    pub name: Option<String>,
    /// The account's status when opened: `active`.
    pub status: AccountStatus,
    /// How far below zero the balance may go: the overdraft of a checking account, the credit
    /// limit of a credit account, the principal of a loan account.
    pub overdraft_limit: Decimal,
}

/// `account_updated`: an account was updated, frozen, unfrozen or closed. It carries the account as
/// it is after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountUpdated {
    /// The customer who owns the account.
    pub customer_id: CustomerId,
    /// The kind of account; it never changes.
    pub account_type: AccountType,
    /// The ISO 4217 code of the account's currency; it never changes.
    pub currency: eventbus::Currency,
    /// The account's display name after the change, or `None` (null on the wire).
    pub name: Option<String>,
    /// What changed: `updated` (name or limit), `frozen`, `unfrozen` or `closed`.
    pub change: AccountChange,
    /// The account's status before the change.
    pub old_status: AccountStatus,
    /// The account's status after the change.
    pub status: AccountStatus,
    /// How far below zero the balance may go after the change, a decimal string in the account's
    /// currency; 0 once a loan account is closed.
    pub overdraft_limit: Decimal,
}

/// The payload of `customer_created` and `customer_updated`: the customer as they are after the
/// change, KYC included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerDetails {
    /// The customer's given name, 1 to 100 printable characters. Personal data.
    pub first_name: String,
    /// The customer's family name, 1 to 100 printable characters. Personal data.
    pub last_name: String,
    /// The customer's e-mail address, e.g. `jane@example.com`. Personal data.
    pub email: String,
    /// The customer's phone number in E.164 form, e.g. `+1234567890`, or `None` (null on the wire).
    /// Personal data.
    pub phone: Option<String>,
    /// Where the customer's identity check stands: `pending` when the customer is created.
    pub kyc_status: KycStatus,
    /// The tier that sets the customer's transaction limit: `tier_1` when the customer is created.
    pub kyc_tier: KycTier,
}

/// `kyc_status_changed`: a customer's identity-check status or tier changed; it carries both,
/// before and after, as the seed's event does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KycStatusChanged {
    /// The KYC status before the change.
    pub old_status: KycStatus,
    /// The KYC status after the change.
    pub new_status: KycStatus,
    /// The KYC tier before the change.
    pub old_tier: KycTier,
    /// The KYC tier after the change.
    pub new_tier: KycTier,
}

/// One row of an amortisation schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installment {
    /// The installment's place in the schedule, from 1.
    pub number: u32,
    /// The date it is due, `YYYY-MM-DD`: one payment period after the previous one, counted from
    /// the day the loan was originated.
    pub due_date: NaiveDate,
    /// What is due, a decimal string in the loan's currency: `principal` plus `interest`.
    pub payment: Decimal,
    /// The part of the payment that repays principal.
    pub principal: Decimal,
    /// The part of the payment that pays the period's interest on the principal remaining before
    /// it.
    pub interest: Decimal,
    /// The principal still owed once this installment is paid; 0 after the last one.
    pub remaining_principal: Decimal,
}

/// `loan_originated`: a loan was approved by the approval workflow and booked with its amortisation
/// schedule. Its terms never change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanOriginated {
    /// The borrower.
    pub customer_id: CustomerId,
    /// The amount lent, a decimal string in `currency`.
    pub principal: Decimal,
    /// The ISO 4217 code of the loan's currency: of its principal, payments and schedule.
    pub currency: eventbus::Currency,
    /// Annual nominal rate in percent, e.g. `"5.5"`.
    pub interest_rate: Decimal,
    /// How long the loan runs, in months: a multiple of the payment period, at most 480.
    pub term_months: u32,
    /// How often an installment is due: monthly, quarterly, semi-annually or annually.
    pub payment_frequency: PaymentFrequency,
    /// The customer's account the principal is paid into.
    pub account_id: AccountId,
    /// The loan's own account: its balance is minus the outstanding principal.
    pub loan_account_id: AccountId,
    /// The approval workflow that approved the loan; its steps are in the stream `workflow-<id>`.
    pub workflow_id: WorkflowId,
    /// The installments, in order: equal payments that pay the period's interest first; the last
    /// one takes what rounding left over, so the principal is repaid exactly.
    pub schedule: Vec<Installment>,
}

/// `loan_disbursed`: a loan's principal was paid into the customer's account; the loan is now being
/// repaid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanDisbursed {
    /// The borrower.
    pub customer_id: CustomerId,
    /// The customer's account the principal was paid into.
    pub account_id: AccountId,
    /// The amount paid out, the loan's whole principal, a decimal string in `currency`.
    pub amount: Decimal,
    /// The ISO 4217 code of the loan's currency.
    pub currency: eventbus::Currency,
    /// The `loan_disbursement` transaction that moved the money.
    pub transaction_id: TransactionId,
}

/// `loan_payment_received`: a repayment was taken from the customer's account. Interest due is paid
/// first, the rest repays principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanPaymentReceived {
    /// The borrower.
    pub customer_id: CustomerId,
    /// The customer's account the payment came from.
    pub account_id: AccountId,
    /// The whole payment, a decimal string in `currency`: `interest_portion` plus
    /// `principal_portion`.
    pub amount: Decimal,
    /// The ISO 4217 code of the loan's currency.
    pub currency: eventbus::Currency,
    /// The part of the payment that paid interest.
    pub interest_portion: Decimal,
    /// The part of the payment that repaid principal.
    pub principal_portion: Decimal,
    /// The principal still owed after this payment.
    pub outstanding_principal: Decimal,
    /// The `loan_payment` transaction that moved the money.
    pub transaction_id: TransactionId,
}

/// `loan_paid_off`: the last of a loan's principal was repaid; nothing is owed any more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanPaidOff {
    /// The borrower.
    pub customer_id: CustomerId,
    /// The ISO 4217 code of the loan's currency.
    pub currency: eventbus::Currency,
    /// All the interest paid over the loan's life, a decimal string in `currency`.
    pub total_interest_paid: Decimal,
}

/// `loan_cancelled`: an originated loan was cancelled before it was paid out, and its loan
/// account closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanCancelled {
    /// The borrower.
    pub customer_id: CustomerId,
    /// The loan's own account, closed with the cancellation.
    pub loan_account_id: AccountId,
    /// The principal that was never paid out, a decimal string in `currency`.
    pub principal: Decimal,
    /// The ISO 4217 code of the loan's currency.
    pub currency: eventbus::Currency,
    /// Why the loan was cancelled, 1 to 500 characters, e.g. `disbursement failed`.
    pub reason: String,
}

/// `loan_defaulted`: a loan was declared in default because too many installments were missed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanDefaulted {
    /// The borrower.
    pub customer_id: CustomerId,
    /// The ISO 4217 code of the loan's currency.
    pub currency: eventbus::Currency,
    /// The principal still owed when the loan defaulted, a decimal string in `currency`.
    pub outstanding_principal: Decimal,
    /// The scheduled installments missed when the loan defaulted.
    pub missed_payments: u32,
}

/// `credit_statement_generated`: the statement period of a credit account was closed, with the
/// minimum payment due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditStatementGenerated {
    /// The credit account.
    pub account_id: AccountId,
    /// The customer who owns the credit account.
    pub customer_id: CustomerId,
    /// The ISO 4217 code of the account's currency.
    pub currency: eventbus::Currency,
    /// The first day of the period, `YYYY-MM-DD`: the day after the previous statement's end; for
    /// the first statement, the day after the same date a month before `period_end`.
    pub period_start: NaiveDate,
    /// The last day of the period, `YYYY-MM-DD`; never after the day the statement was generated.
    pub period_end: NaiveDate,
    /// The balance the period opened with, a decimal string in `currency`: the previous statement's
    /// closing balance, or 0; negative while something is owed.
    pub opening_balance: Decimal,
    /// The account's balance when the statement was generated, a decimal string in `currency`;
    /// negative while something is owed.
    pub closing_balance: Decimal,
    /// The least to pay by `due_date`, a decimal string in `currency`: 2% of what is owed, at least
    /// 25, at most what is owed.
    pub minimum_payment: Decimal,
    /// The day the minimum payment is due, `YYYY-MM-DD`: 21 days after `period_end`.
    pub due_date: NaiveDate,
}

/// `credit_payment_received`: a payment towards a credit account was taken from another account of
/// its owner. The event is about the credit account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditPaymentReceived {
    /// The customer who owns both accounts.
    pub customer_id: CustomerId,
    /// The account the payment came from.
    pub from_account_id: AccountId,
    /// The amount paid, a decimal string in `currency`.
    pub amount: Decimal,
    /// The ISO 4217 code of the credit account's currency.
    pub currency: eventbus::Currency,
    /// The credit account's balance after the payment (negative while something is owed).
    pub new_balance: Decimal,
    /// The `credit_payment` transaction that moved the money.
    pub transaction_id: TransactionId,
}

/// `collection_case_created`: a collections case was opened for a loan with overdue installments,
/// or for one that defaulted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionCaseCreated {
    /// The overdue loan.
    pub loan_id: LoanId,
    /// The borrower.
    pub customer_id: CustomerId,
    /// Why the case was opened: `payment_overdue`, or `loan_defaulted`.
    pub reason: CaseReason,
    /// What is overdue, a decimal string in `currency`: the installments due before the check, less
    /// what was paid towards them.
    pub amount_due: Decimal,
    /// The ISO 4217 code of the loan's currency.
    pub currency: eventbus::Currency,
    /// Days since the first unpaid installment was due.
    pub days_overdue: u32,
    /// Scheduled installments missed so far.
    pub missed_payments: u32,
}

/// `collection_case_escalated`: an open collections case moved up a level, because more
/// installments were missed, the loan defaulted, or someone escalated it by hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionCaseEscalated {
    /// The loan the case is about.
    pub loan_id: LoanId,
    /// 2 for the first escalation, then 3, ...
    pub level: u32,
    /// Scheduled installments missed when the case was escalated.
    pub missed_payments: u32,
    /// Why it was escalated: `<n> payments missed`, `loan_defaulted`, or the reason given by
    /// whoever escalated it by hand.
    pub reason: String,
}

/// `collection_case_resolved`: a collections case was closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionCaseResolved {
    /// The loan the case was about.
    pub loan_id: LoanId,
    /// How it was resolved: `payment_received` when a payment brought the loan up to date, or the
    /// resolution given by whoever resolved it by hand.
    pub resolution: String,
}

/// `compliance_alert_raised`: a posted transaction reached the reporting threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceAlertRaised {
    /// The kind of alert: `large_transaction`.
    pub alert_type: String,
    /// The transaction that raised the alert.
    pub transaction_id: TransactionId,
    /// The account the transaction is about: the receiving account of a deposit or disbursement,
    /// the paying account otherwise.
    pub account_id: AccountId,
    /// The customer who owns that account.
    pub customer_id: CustomerId,
    /// The transaction's amount, a decimal string in `currency`.
    pub amount: Decimal,
    /// The ISO 4217 code of the transaction's currency.
    pub currency: eventbus::Currency,
    /// The reporting threshold the amount reached, a decimal string in `currency`: `10000`.
    pub threshold: Decimal,
}

/// `suspicious_activity_detected`: a pattern of transactions was flagged as suspicious; a pattern
/// is reported at most once per window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspiciousActivityDetected {
    /// The pattern found: `structuring`, several deposits just below the reporting threshold within
    /// the window.
    pub activity_type: String,
    /// The account the deposits went into.
    pub account_id: AccountId,
    /// The customer who owns that account.
    pub customer_id: CustomerId,
    /// The deposits that make the pattern, oldest first.
    pub transaction_ids: Vec<TransactionId>,
    /// The sum of those deposits, a decimal string in `currency`.
    pub total_amount: Decimal,
    /// The ISO 4217 code of the account's currency.
    pub currency: eventbus::Currency,
    /// The length of the window the deposits fell in, in hours: 24.
    pub window_hours: u32,
}

/// `audit_event_recorded`: a command was carried out, and what it recorded. Every operation of the
/// bank that writes ends with one, in the stream `audit-<day>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEventRecorded {
    /// The command, e.g. `deposit`.
    pub command: String,
    /// Who asked: the `user_id` of the command, or `system`.
    pub actor: String,
    /// The kind of entity the command was about: the entity type of its first event (`transaction`,
    /// `customer`, ...), or `command` for a command that changed nothing.
    pub entity_type: String,
    /// The id of that entity.
    pub entity_id: String,
    /// `accepted`; `failed` for a transaction recorded as failed; `rejected` for a refused command
    /// or loan application; `unchanged` for a command that found nothing to do.
    pub outcome: String,
    /// The events the command recorded, in order.
    pub event_ids: Vec<EventId>,
    /// The `event_type` of each of those events, in the same order.
    pub event_types: Vec<String>,
}

/// `command_rejected`: a command was refused: it was malformed, or core banking would not carry
/// it out. Its
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

/// `workflow_step_completed`: one step of a workflow passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowStepCompleted {
    /// The kind of workflow: `loan_approval`, the bank's approval of one loan, or
    /// `loan_application`, the saga that offers a loan to a newly verified customer.
    pub workflow_type: String,
    /// What the workflow is about: the loan's id for `loan_approval`, the customer's id for
    /// `loan_application`.
    pub subject_id: String,
    /// The step's name, e.g. `kyc_verified`.
    pub step: String,
    /// What the step found, for people, e.g. `KYC status is verified`.
    pub detail: String,
}

/// `workflow_completed`: every step of a workflow passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowCompleted {
    /// The kind of workflow: `loan_approval`, the bank's approval of one loan, or
    /// `loan_application`, the saga that offers a loan to a newly verified customer.
    pub workflow_type: String,
    /// What the workflow is about: the loan's id for `loan_approval`, the customer's id for
    /// `loan_application`.
    pub subject_id: String,
    /// The names of the steps it went through, in order.
    pub steps: Vec<String>,
}

/// `workflow_rejected`: a workflow stopped at a step that did not pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRejected {
    /// The kind of workflow: `loan_approval`, the bank's approval of one loan, or
    /// `loan_application`, the saga that offers a loan to a newly verified customer.
    pub workflow_type: String,
    /// What the workflow is about: the loan's id for `loan_approval`, the customer's id for
    /// `loan_application`.
    pub subject_id: String,
    /// The name of the step that did not pass, e.g. `kyc_verified`.
    pub step: String,
    /// Why the step did not pass, for people, e.g. `KYC status is pending`.
    pub reason: String,
}

macro_rules! catalog {
    ($($variant:ident($payload:ty, $id:ty) = $event_type:literal, $entity_type:literal, $topic:ident, $major:literal;)*) => {
        /// The payload of a Nexum event, by type.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Payload {
            $(
                #[doc = concat!("`", $event_type, "`: entity type `", $entity_type, "`, major version ", $major, ".")]
                $variant($payload),
            )*
        }

        /// Every event type with its entity type, topic and current major version.
        pub const EVENT_TYPES: &[EventTypeInfo] = &[
            $(EventTypeInfo { event_type: $event_type, entity_type: $entity_type, topic: Topic::$topic, major: $major },)*
        ];

        impl Payload {
            /// The `event_type` this payload is written with, e.g. `transaction_posted`.
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
    /// The type as written in `event_type`, e.g. `transaction_posted`.
    pub event_type: &'static str,
    /// The `entity_type` events of this type carry: the kind of entity their `entity_id` names.
    pub entity_type: &'static str,
    /// The topic events of this type are published to.
    pub topic: Topic,
    /// The major version this code writes and reads; older ones are upcast.
    pub major: u32,
}

impl EventTypeInfo {
    /// The catalog's entry for `event_type`; `None` if it is not a Nexum event type.
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
    /// The W3C `traceparent` of the span the event was recorded in, while tracing is on (see
    /// [`crate::bank::Ctx::at`]): the relay's `publish` span is a child of it, so the trace goes
    /// on past the outbox.
    pub traceparent: Option<String>,
}

/// A Nexum event: the entity it is about and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NexumEvent {
    /// The id of the entity the event is about, written to `entity_id` and used as the partition
    /// key on the bus: an id of the kind the type names, such as `acc_…` for an account event.
    pub entity_id: String,
    /// What happened: the type and its data.
    pub payload: Payload,
}

impl NexumEvent {
    /// The event `payload` about the entity `entity_id`.
    pub fn new(entity_id: impl ToString, payload: Payload) -> Self {
        Self { entity_id: entity_id.to_string(), payload }
    }

    /// The catalog's entry for the event's type.
    pub fn info(&self) -> &'static EventTypeInfo {
        EventTypeInfo::of(self.payload.event_type()).expect("every payload is in the catalog")
    }

    /// The event's `event_type`, e.g. `transaction_posted`.
    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    /// The topic the event is published to.
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
            (eventbus::trace::TRACEPARENT, &causation.traceparent),
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
            data: data.into(),
            metadata: metadata.into(),
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
            let Value::Object(data) = upcast(event_type, major, event.data.to_value()) else {
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
