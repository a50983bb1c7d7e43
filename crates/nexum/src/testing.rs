//! Given / when / then tests of the bank's rules over a [`MemoryStore`], as cqrs-es's
//! `TestFramework` reads them.
//!
//! - **Given** the events already recorded: [`BankTest::given`] records [`NexumEvent`]s in the
//!   streams the bank records them in, linked where the bank links them. Bank operations run on
//!   [`BankTest::bank`] before the `when` are given too.
//! - **When** one bank operation runs: [`BankTest::when`] takes the call of a [`Bank`] method,
//!   not yet awaited, runs it, and keeps what it returned and the events it recorded.
//! - **Then** the events it recorded, by type and key fields, or the [`BankError`] it failed
//!   with: the `then_expect_*` methods of [`Outcome`] panic with what was expected beside what
//!   happened.
//!
//! ```
//! use nexum::Ctx;
//! use nexum::bank::parse_amount;
//! use nexum::domain::{AccountStatus, AccountType, KycStatus, KycTier};
//! use nexum::events::{AccountCreated, CustomerDetails, NexumEvent, Payload};
//! use nexum::testing::BankTest;
//! use rust_decimal::Decimal;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let jane = CustomerDetails {
//!     first_name: "Jane".into(),
//!     last_name: "Smith".into(),
//!     email: "jane@example.com".into(),
//!     phone: None,
//!     kyc_status: KycStatus::Verified,
//!     kyc_tier: KycTier::Tier2,
//! };
//! let checking = AccountCreated {
//!     customer_id: "cust_jane".parse()?,
//!     account_type: AccountType::Checking,
//!     currency: "USD".parse()?,
//!     name: None,
//!     status: AccountStatus::Active,
//!     overdraft_limit: Decimal::ZERO,
//! };
//! let test = BankTest::new()
//!     .given([
//!         NexumEvent::new("cust_jane", Payload::CustomerCreated(jane)),
//!         NexumEvent::new("acc_jane", Payload::AccountCreated(checking)),
//!     ])
//!     .await;
//!
//! let one_cent = parse_amount("0.01", "USD")?;
//! test.when(test.bank().withdraw(&Ctx::now(), &"acc_jane".parse()?, one_cent, None, None))
//!     .await
//!     .then_expect_events(["transaction_created", "transaction_failed", "audit_event_recorded"])
//!     .then_expect_data("transaction_failed", json!({"amount": "0.01", "reason": "insufficient_funds"}));
//! # Ok(())
//! # }
//! ```
//!
//! The harness is part of the library, not of a feature, as cqrs-es keeps its test framework and
//! its in-memory store in its core crate: it needs no dependency the library does not have, and
//! the tests of this crate and of the crates that use it reach it without any set-up.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use eventbus::EventId;
use serde_json::Value;

use crate::bank::{Bank, BankError};
use crate::domain::{Account, Aggregate, CollectionCase, Customer, Loan};
use crate::events::{Causation, NexumEvent, Payload};
use crate::store::{Commit, EventStore, MemoryStore, NewEvent, RecordedEvent, StreamId};

/// A bank over a fresh [`MemoryStore`], with the events given to it. See the [module
/// documentation](self).
pub struct BankTest {
    store: Arc<MemoryStore>,
    bank: Bank,
}

impl Default for BankTest {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BankTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BankTest").field("store", &self.store).finish_non_exhaustive()
    }
}

impl BankTest {
    /// A bank over an empty in-memory store: nothing is given yet.
    pub fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        Self { bank: Bank::new(store.clone()), store }
    }

    /// When [`given`](Self::given) events happened: 2024-01-01T00:00:00Z.
    pub fn given_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().expect("a valid date")
    }

    /// Records `events`, in order, as having happened at [`given_time`](Self::given_time).
    ///
    /// Each event goes into the stream of its entity and is linked into the streams of the
    /// aggregates it changes, as the bank records it: an `account_created` into its customer's
    /// stream, a `transaction_posted` into both accounts' streams, and so on. The one link it
    /// leaves out is an audit record's into the stream of the command it answers
    /// (`command-<id>`): a given event names no command, so no command counts as handled.
    ///
    /// Each event is checked against its JSON Schema first, so a test cannot give a fact the bank
    /// could never have recorded; such an event panics with the schema's complaint.
    pub async fn given(self, events: impl IntoIterator<Item = NexumEvent>) -> Self {
        self.given_at(Self::given_time(), events).await
    }

    /// As [`given`](Self::given), with the events having happened at `at`: what a rule reads
    /// the time of (deposits within a window, a statement period) is given at the time it needs.
    pub async fn given_at(self, at: DateTime<Utc>, events: impl IntoIterator<Item = NexumEvent>) -> Self {
        let mut commit = Commit::default();
        for event in events {
            let schema = event.to_schema(EventId::new(), at, &Causation::default());
            if let Err(error) = crate::schemas::validate(&schema) {
                panic!("given {event:?} is not an event the bank could record: {error}");
            }
            let (stream, links) = streams(&event, at);
            let mut new = NewEvent::new(stream, event.topic().name(), schema);
            for link in links {
                new.link(link);
            }
            commit.push(new);
        }
        self.store.commit(commit).await.expect("the in-memory store takes any commit without checks");
        // A fresh bank: none of its cached aggregates predates the given events.
        Self { bank: Bank::new(self.store.clone()), store: self.store }
    }

    /// The bank under test: call its operations inside [`when`](Self::when), or before it to
    /// give what they record.
    pub fn bank(&self) -> &Bank {
        &self.bank
    }

    /// The store the bank records in.
    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    /// Every event recorded so far, given or decided, in the global order.
    pub async fn recorded(&self) -> Vec<RecordedEvent> {
        self.store.read_all(1, usize::MAX).await.expect("the in-memory store reads")
    }

    /// Runs `operation`, the call of a [`Bank`] method (`test.bank().deposit(...)`), and keeps
    /// its result and the events it recorded.
    ///
    /// The call must not have been awaited: a future does nothing until it is, so the events
    /// recorded from here on are the operation's.
    pub async fn when<T>(&self, operation: impl Future<Output = Result<T, BankError>>) -> Outcome<T> {
        let before = self.store.last_position();
        let result = operation.await;
        let recorded = self.store.read_all(before + 1, usize::MAX).await.expect("the in-memory store reads");
        Outcome { result, recorded }
    }
}

/// What one operation returned and recorded, to be checked with the `then_expect_*` methods.
/// Each of them panics with the expected and the actual side by side, and returns the outcome
/// for the next check.
pub struct Outcome<T> {
    result: Result<T, BankError>,
    recorded: Vec<RecordedEvent>,
}

impl<T: fmt::Debug> fmt::Debug for Outcome<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome").field("result", &self.result).field("recorded", &self.types()).finish()
    }
}

/// The longest rendering of a returned value in a failure message.
const MAX_SHOWN: usize = 400;

impl<T: fmt::Debug> Outcome<T> {
    /// Expects the operation to have recorded exactly these event types, in this order (the
    /// audit record included: every operation that writes ends with one).
    pub fn then_expect_events<'a>(self, event_types: impl IntoIterator<Item = &'a str>) -> Self {
        let expected: Vec<&str> = event_types.into_iter().collect();
        let actual = self.types();
        if actual != expected {
            panic!(
                "the operation recorded other events\n  expected: [{}]\n  actual:   [{}]\n  and it {}",
                expected.join(", "),
                actual.join(", "),
                self.returned()
            );
        }
        self
    }

    /// Expects the operation to have recorded nothing.
    pub fn then_expect_no_events(self) -> Self {
        self.then_expect_events([])
    }

    /// Expects the one event of `event_type` the operation recorded to have these fields in its
    /// `data`, as they are written on the wire (amounts are decimal strings, `"100.50"`). Fields
    /// not named are not checked.
    pub fn then_expect_data(self, event_type: &str, fields: Value) -> Self {
        let Value::Object(fields) = fields else { panic!("then_expect_data takes a JSON object of fields") };
        let data = &self.event(event_type).event.data;
        let wrong: Vec<String> = fields
            .iter()
            .filter(|(field, expected)| data.get(*field) != Some(*expected))
            .map(|(field, expected)| {
                let actual = data.get(field).map_or_else(|| "no such field".to_owned(), Value::to_string);
                format!("  {field}: expected {expected}, actual {actual}")
            })
            .collect();
        if !wrong.is_empty() {
            panic!("`{event_type}` has other data\n{}\n  its data: {}", wrong.join("\n"), data.to_value());
        }
        self
    }

    /// Expects the one event of the payload's type the operation recorded to decode to exactly
    /// `expected`.
    pub fn then_expect_payload(self, expected: Payload) -> Self {
        let recorded = self.event(expected.event_type());
        let actual = NexumEvent::from_schema(&recorded.event)
            .unwrap_or_else(|error| panic!("the recorded `{}` does not decode: {error}", expected.event_type()));
        if actual.payload != expected {
            panic!(
                "`{}` has another payload\n  expected: {expected:?}\n  actual:   {:?}",
                expected.event_type(),
                actual.payload
            );
        }
        self
    }

    /// Expects the operation to have failed with the error of this [`code`](BankError::code),
    /// writing nothing (a refused operation never does), and returns the error for a closer
    /// look.
    pub fn then_expect_error(self, code: &str) -> BankError {
        let types = self.types().join(", ");
        match self.result {
            Ok(value) => panic!(
                "expected the operation to fail with `{code}`, but it succeeded\n  returned: {}\n  recorded: [{types}]",
                shown(&value)
            ),
            Err(error) if error.code() != code => panic!(
                "expected the operation to fail with `{code}`\n  actual: it failed with `{}`: {error}",
                error.code()
            ),
            Err(error) if !self.recorded.is_empty() => panic!(
                "the operation failed with `{code}` ({error}) but recorded [{types}]: \
                 a refused operation writes nothing"
            ),
            Err(error) => error,
        }
    }

    /// The one event of `event_type` the operation recorded; panics if it recorded none or
    /// several.
    pub fn event(&self, event_type: &str) -> &RecordedEvent {
        let mut found = self.recorded.iter().filter(|recorded| recorded.event.event_type.as_str() == event_type);
        match (found.next(), found.next()) {
            (Some(event), None) => event,
            (first, _) => panic!(
                "expected one `{event_type}` event, found {}\n  recorded: [{}]\n  and it {}",
                if first.is_none() { "none" } else { "several" },
                self.types().join(", "),
                self.returned()
            ),
        }
    }

    /// The events of `event_type` the operation recorded, in order.
    pub fn events_of<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a RecordedEvent> {
        self.recorded.iter().filter(move |recorded| recorded.event.event_type.as_str() == event_type)
    }

    /// Every event the operation recorded, in order.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.recorded
    }

    /// The types of the events the operation recorded, in order.
    pub fn types(&self) -> Vec<&str> {
        self.recorded.iter().map(|recorded| recorded.event.event_type.as_str()).collect()
    }

    /// What the operation returned; panics with the error if it failed.
    pub fn value(&self) -> &T {
        match &self.result {
            Ok(value) => value,
            Err(error) => panic!("expected the operation to succeed, but it failed with `{}`: {error}", error.code()),
        }
    }

    /// What the operation returned, taken out of the outcome; panics with the error if it failed.
    pub fn into_value(self) -> T {
        self.value();
        self.result.expect("checked just above")
    }

    /// What the operation returned, success or error.
    pub fn result(self) -> Result<T, BankError> {
        self.result
    }

    /// "returned …" or "failed with …", for failure messages.
    fn returned(&self) -> String {
        match &self.result {
            Ok(value) => format!("returned {}", shown(value)),
            Err(error) => format!("failed with `{}`: {error}", error.code()),
        }
    }
}

/// `value`'s `Debug`, cut to [`MAX_SHOWN`] characters.
fn shown(value: &impl fmt::Debug) -> String {
    let mut text = format!("{value:?}");
    if let Some((cut, _)) = text.char_indices().nth(MAX_SHOWN) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The stream `event` is recorded in and the streams it is linked into, as the bank records it
/// at `at`. The bank decides them where it records each event; this is the same layout written
/// down once, and `tests/invariants.rs` checks it against the bank: the events the bank records,
/// given to a fresh [`BankTest`], fold to the same aggregates with the same stream versions.
fn streams(event: &NexumEvent, at: DateTime<Utc>) -> (StreamId, Vec<StreamId>) {
    let own = |kind: &str| StreamId::of(kind, &event.entity_id);
    let account = |id: &dyn fmt::Display| StreamId::of(Account::KIND, id);
    match &event.payload {
        Payload::TransactionCreated(_) | Payload::TransactionFailed(_) => (own("transaction"), vec![]),
        Payload::TransactionPosted(posted) => {
            let sides = posted.from_account_id.iter().chain(&posted.to_account_id);
            (own("transaction"), sides.map(|id| account(id)).collect())
        }
        Payload::AccountCreated(created) => {
            (own(Account::KIND), vec![StreamId::of(Customer::KIND, &created.customer_id)])
        }
        Payload::AccountUpdated(_) | Payload::CreditPaymentReceived(_) => (own(Account::KIND), vec![]),
        Payload::CustomerCreated(_) | Payload::CustomerUpdated(_) | Payload::KycStatusChanged(_) => {
            (own(Customer::KIND), vec![])
        }
        Payload::LoanOriginated(_)
        | Payload::LoanDisbursed(_)
        | Payload::LoanPaymentReceived(_)
        | Payload::LoanPaidOff(_)
        | Payload::LoanDefaulted(_)
        | Payload::LoanCancelled(_) => (own(Loan::KIND), vec![]),
        Payload::CreditStatementGenerated(statement) => (own("statement"), vec![account(&statement.account_id)]),
        Payload::CollectionCaseCreated(case) => {
            (own(CollectionCase::KIND), vec![StreamId::of(Loan::KIND, &case.loan_id)])
        }
        Payload::CollectionCaseEscalated(case) => {
            (own(CollectionCase::KIND), vec![StreamId::of(Loan::KIND, &case.loan_id)])
        }
        Payload::CollectionCaseResolved(case) => {
            (own(CollectionCase::KIND), vec![StreamId::of(Loan::KIND, &case.loan_id)])
        }
        Payload::ComplianceAlertRaised(_) => (own("alert"), vec![]),
        Payload::SuspiciousActivityDetected(report) => (own("alert"), vec![account(&report.account_id)]),
        Payload::AuditEventRecorded(_) => (StreamId::of("audit", at.date_naive()), vec![]),
        Payload::WorkflowStepCompleted(_) | Payload::WorkflowCompleted(_) | Payload::WorkflowRejected(_) => {
            (own("workflow"), vec![])
        }
        Payload::CommandRejected(_) => (own("command"), vec![]),
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use serde_json::json;

    use super::*;
    use crate::Ctx;
    use crate::bank::parse_amount;
    use crate::domain::{AccountStatus, AccountType, KycStatus, KycTier};
    use crate::events::{AccountCreated, CustomerDetails};
    use crate::ids::AccountId;

    /// A verified customer `cust_jane` with an empty checking account `acc_jane`.
    fn jane() -> [NexumEvent; 2] {
        let details = CustomerDetails {
            first_name: "Jane".into(),
            last_name: "Smith".into(),
            email: "jane@example.com".into(),
            phone: None,
            kyc_status: KycStatus::Verified,
            kyc_tier: KycTier::Tier2,
        };
        let checking = AccountCreated {
            customer_id: "cust_jane".parse().unwrap(),
            account_type: AccountType::Checking,
            currency: "USD".parse().unwrap(),
            name: None,
            status: AccountStatus::Active,
            overdraft_limit: Decimal::ZERO,
        };
        [
            NexumEvent::new("cust_jane", Payload::CustomerCreated(details)),
            NexumEvent::new("acc_jane", Payload::AccountCreated(checking)),
        ]
    }

    fn account() -> AccountId {
        "acc_jane".parse().unwrap()
    }

    async fn deposit(test: &BankTest, amount: &str) -> Outcome<crate::bank::TransactionReceipt> {
        test.when(test.bank().deposit(&Ctx::now(), &account(), parse_amount(amount, "USD").unwrap(), None, None)).await
    }

    #[tokio::test]
    async fn given_events_are_where_the_bank_reads_them_and_when_sees_only_the_operations_events() {
        let test = BankTest::new().given(jane()).await;

        let outcome = deposit(&test, "10.00")
            .await
            .then_expect_events(["transaction_created", "transaction_posted", "audit_event_recorded"])
            .then_expect_data("transaction_posted", json!({"amount": "10.00", "final_balance": "10.00"}));

        assert!(outcome.value().is_posted());
        let customer = test.bank().customer(&"cust_jane".parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(customer.accounts.iter().map(|a| &a.id).collect::<Vec<_>>(), [&account()], "linked");
        assert_eq!(test.recorded().await.len(), 5);
    }

    #[tokio::test]
    #[should_panic(expected = "expected: [transaction_created, transaction_failed, audit_event_recorded]\n  \
                               actual:   [transaction_created, transaction_posted, audit_event_recorded]")]
    async fn other_events_than_expected_are_shown_beside_the_expected() {
        let test = BankTest::new().given(jane()).await;

        let _ = deposit(&test, "1.00").await.then_expect_events([
            "transaction_created",
            "transaction_failed",
            "audit_event_recorded",
        ]);
    }

    #[tokio::test]
    #[should_panic(expected = "final_balance: expected \"2.00\", actual \"1.00\"")]
    async fn other_data_than_expected_is_shown_field_by_field() {
        let test = BankTest::new().given(jane()).await;

        let _ = deposit(&test, "1.00").await.then_expect_data("transaction_posted", json!({"final_balance": "2.00"}));
    }

    #[tokio::test]
    #[should_panic(expected = "expected the operation to fail with `invalid_amount`\n  \
                               actual: it failed with `unknown_account`")]
    async fn another_error_than_expected_is_shown_with_its_code() {
        let test = BankTest::new().given(jane()).await;
        let (ctx, nowhere): (_, AccountId) = (Ctx::now(), "acc_nowhere".parse().unwrap());
        let one = parse_amount("1", "USD").unwrap();

        test.when(test.bank().deposit(&ctx, &nowhere, one, None, None)).await.then_expect_error("invalid_amount");
    }

    #[tokio::test]
    #[should_panic(expected = "expected the operation to fail with `account_closed`, but it succeeded")]
    async fn a_success_where_an_error_was_expected_is_shown_with_what_it_recorded() {
        let test = BankTest::new().given(jane()).await;

        deposit(&test, "1.00").await.then_expect_error("account_closed");
    }

    #[tokio::test]
    #[should_panic(expected = "is not an event the bank could record")]
    async fn a_given_event_that_breaks_its_schema_is_refused() {
        let [customer, _] = jane();

        let _ = BankTest::new().given([NexumEvent::new("not an id", customer.payload)]).await;
    }
}
