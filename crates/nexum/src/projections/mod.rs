//! Read models ("projections") of the bank, kept up to date from its events: account balances
//! and statements, the customer directory, the loan book and the compliance alerts.
//!
//! The events come from a bus, at least once, and in commit order only within one entity's key:
//! a `transaction_posted` (keyed by transaction) may arrive before the `account_created` of its
//! account, and any event may arrive twice. So every model is built to converge on the same state
//! whatever the order and however often an event is applied:
//!
//! - **Additive effects** (postings, loan payments) commute; each is applied once, by event id.
//! - **Replaced state** (details, status, KYC) keeps the stamp (time, then event id) of the event
//!   that set it and takes a value only from a newer event, so a late creation does not undo a
//!   later update.
//! - **Unknown entities** get a placeholder entry (`details: None`) that collects what arrives
//!   before the creation event completes it.
//!
//! [`Projections::rebuild`] replays the store into a fresh model, which must equal the live one
//! ([`Projections::snapshot`]).

mod accounts;
mod compliance;
mod customers;
mod loans;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use eventbus::{EventId, EventSchema, Handler, HandlerError, TopicName};
use rust_decimal::Decimal;
use serde::Serialize;

pub use accounts::{AccountDetails, AccountView, Statement};
pub use compliance::{AlertKind, ComplianceAlert};
pub use customers::{Contact, CustomerView, Kyc};
pub use loans::{LoanTerms, LoanView, OpenCase};

use crate::events::{DecodeError, EVENT_TYPES, NexumEvent, Payload};
use crate::ids::{AccountId, CustomerId, LoanId};
use crate::store::{EventStore, StoreError};

/// Events read per page when rebuilding.
const REBUILD_PAGE: usize = 10_000;

/// The event types the projections read; all others are decoded and ignored.
const READS: &[&str] = &[
    "transaction_posted",
    "account_created",
    "account_updated",
    "credit_statement_generated",
    "customer_created",
    "customer_updated",
    "kyc_status_changed",
    "loan_originated",
    "loan_disbursed",
    "loan_payment_received",
    "loan_paid_off",
    "loan_defaulted",
    "loan_cancelled",
    "collection_case_created",
    "collection_case_escalated",
    "collection_case_resolved",
    "compliance_alert_raised",
    "suspicious_activity_detected",
];

/// Errors of rebuilding the projections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The store could not be read. Retry the rebuild once it is back.
    #[error("reading the event store: {0}")]
    Store(#[from] StoreError),
    /// A stored event is not one this code understands, e.g. written by a newer producer.
    /// Upgrade this consumer; the model is incomplete without it.
    #[error("event at position {position} cannot be projected: {source}")]
    Decode {
        /// The event's place in the store's global order.
        position: u64,
        /// Why it cannot be decoded.
        #[source]
        source: DecodeError,
    },
}

/// Where an event stands in the order that settles which of two events is newer: its time, then
/// its id. Event ids are UUID v7 written in commit order, so events of one commit, which share
/// a time, are still ordered.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp {
    at: Option<DateTime<Utc>>,
    id: EventId,
}

impl Stamp {
    /// The stamp of `event`. An event without an id (producers outside the bank may omit it) is
    /// identified by its content, so that its redelivery is still recognised.
    fn of(event: &EventSchema) -> Self {
        let id = event.event_id.clone().unwrap_or_else(|| EventId::derived(&String::from_utf8_lossy(&event.to_json())));
        Self { at: event.timestamp, id }
    }
}

/// Replaces `value` with `new` if `stamp` is newer than the stamp `seen` of the current value.
/// Says whether it did.
fn replace_if_newer<T>(value: &mut T, seen: &mut Option<Stamp>, stamp: &Stamp, new: T) -> bool {
    if seen.as_ref().is_some_and(|seen| seen >= stamp) {
        return false;
    }
    *seen = Some(stamp.clone());
    *value = new;
    true
}

/// Sets `time` to `at` if `at` is earlier (or `time` unknown); says whether it did. Creation
/// times take the earliest creation seen, so that a repeated creation cannot move them.
fn earliest(time: &mut Option<DateTime<Utc>>, at: Option<DateTime<Utc>>) -> bool {
    let earlier = match (*time, at) {
        (None, Some(_)) => true,
        (Some(current), Some(at)) => at < current,
        (_, None) => false,
    };
    if earlier {
        *time = at;
    }
    earlier
}

/// `total + amount`, or a payload error if the sum leaves the decimal range, which only a bogus
/// amount can cause: such an event is refused (and dead-lettered) rather than corrupt a total.
fn add(event_type: &str, total: Decimal, amount: Decimal) -> Result<Decimal, DecodeError> {
    total.checked_add(amount).ok_or_else(|| DecodeError::Payload {
        event_type: event_type.to_owned(),
        source: serde::de::Error::custom(format!("the amount {amount} overflows a total of {total}")),
    })
}

/// The four models, as one consistent picture, in a deterministic order. It leaves out the
/// bookkeeping of which events were applied, so a rebuilt model equals the live one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Every account seen, by id, placeholders included.
    pub accounts: BTreeMap<AccountId, AccountView>,
    /// Every customer seen, by id, placeholders included.
    pub customers: BTreeMap<CustomerId, CustomerView>,
    /// Every loan seen, by id, placeholders included.
    pub loans: BTreeMap<LoanId, LoanView>,
    /// Newest first.
    pub alerts: Vec<ComplianceAlert>,
}

#[derive(Debug, Default)]
struct Models {
    accounts: accounts::Accounts,
    customers: customers::Customers,
    loans: loans::Loans,
    alerts: compliance::Alerts,
    /// Events that changed something.
    applied: u64,
}

impl Models {
    fn apply(&mut self, event: &NexumEvent, stamp: &Stamp) -> Result<bool, DecodeError> {
        let event_type = event.event_type();
        let id = event.entity_id.as_str();
        let changed = match &event.payload {
            Payload::TransactionPosted(posted) => self.accounts.posted(event_type, posted, stamp)?,
            Payload::AccountCreated(created) => {
                let account = parse(event_type, id)?;
                let owner = self.customers.lists_account(&created.customer_id, &account);
                self.accounts.created(account, created, stamp) | owner
            }
            Payload::AccountUpdated(updated) => {
                let account = parse(event_type, id)?;
                let owner = self.customers.lists_account(&updated.customer_id, &account);
                self.accounts.updated(account, updated, stamp) | owner
            }
            Payload::CreditStatementGenerated(statement) => {
                self.accounts.statement(parse(event_type, id)?, statement, stamp)
            }
            Payload::CustomerCreated(details) => self.customers.created(parse(event_type, id)?, details, stamp),
            Payload::CustomerUpdated(details) => self.customers.updated(parse(event_type, id)?, details, stamp),
            Payload::KycStatusChanged(change) => self.customers.kyc_changed(parse(event_type, id)?, change, stamp),
            Payload::LoanOriginated(terms) => self.loans.originated(parse(event_type, id)?, terms, stamp),
            Payload::LoanDisbursed(_) => self.loans.disbursed(parse(event_type, id)?, stamp),
            Payload::LoanPaymentReceived(payment) => {
                self.loans.payment(event_type, parse(event_type, id)?, payment, stamp)?
            }
            Payload::LoanPaidOff(_) => self.loans.paid_off(parse(event_type, id)?, stamp),
            Payload::LoanCancelled(_) => self.loans.cancelled(parse(event_type, id)?, stamp),
            Payload::LoanDefaulted(defaulted) => self.loans.defaulted(parse(event_type, id)?, defaulted, stamp),
            Payload::CollectionCaseCreated(case) => {
                self.loans.case_opened(&case.loan_id, parse(event_type, id)?, 1, case.missed_payments, stamp)
            }
            Payload::CollectionCaseEscalated(case) => {
                self.loans.case_opened(&case.loan_id, parse(event_type, id)?, case.level, case.missed_payments, stamp)
            }
            Payload::CollectionCaseResolved(case) => self.loans.case_resolved(&case.loan_id, stamp),
            Payload::ComplianceAlertRaised(alert) => self.alerts.raised(parse(event_type, id)?, alert, stamp),
            Payload::SuspiciousActivityDetected(report) => {
                self.alerts.suspicious(parse(event_type, id)?, report, stamp)
            }
            Payload::TransactionCreated(_)
            | Payload::TransactionFailed(_)
            | Payload::CreditPaymentReceived(_)
            | Payload::AuditEventRecorded(_)
            | Payload::WorkflowStepCompleted(_)
            | Payload::WorkflowCompleted(_)
            | Payload::WorkflowRejected(_)
            | Payload::CommandRejected(_) => false,
        };
        self.applied += u64::from(changed);
        Ok(changed)
    }
}

/// The entity id of a decoded event as the id type the model keys it by. `from_schema` checked
/// it already, so this fails only for an event built by hand.
fn parse<T: std::str::FromStr<Err = crate::ids::IdError>>(event_type: &str, id: &str) -> Result<T, DecodeError> {
    id.parse().map_err(|source| DecodeError::EntityId { event_type: event_type.to_owned(), source })
}

/// The read models behind one lock. Share it in an `Arc`: the bus handler writes, queries read.
#[derive(Debug, Default)]
pub struct Projections {
    models: RwLock<Models>,
}

impl Projections {
    /// Empty read models: nothing applied yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event; says whether it changed anything (a duplicate or an older replacement
    /// does not). An event that is not a Nexum event of a known version is an error for the
    /// caller to dead-letter; it changes nothing.
    pub fn apply(&self, event: &EventSchema) -> Result<bool, DecodeError> {
        let decoded = NexumEvent::from_schema(event)?;
        self.apply_decoded(&decoded, &Stamp::of(event))
    }

    fn apply_decoded(&self, event: &NexumEvent, stamp: &Stamp) -> Result<bool, DecodeError> {
        self.write().apply(event, stamp)
    }

    /// A bus handler that applies every event it receives. An undecodable event goes to the
    /// dead-letter topic at once with the reason.
    pub fn handler(self: &Arc<Self>) -> Arc<dyn Handler> {
        let projections = Arc::clone(self);
        crate::consumer::typed_handler(move |event, message| {
            let projections = Arc::clone(&projections);
            async move {
                let changed =
                    projections.apply_decoded(&event, &Stamp::of(&message.event)).map_err(HandlerError::permanent)?;
                tracing::trace!(event_type = event.event_type(), changed, "Projected event");
                Ok(())
            }
        })
    }

    /// The topics of every event type the projections read: subscribe the handler to these.
    pub fn topics() -> Vec<TopicName> {
        let topics: BTreeSet<TopicName> =
            EVENT_TYPES.iter().filter(|info| READS.contains(&info.event_type)).map(|info| info.topic.name()).collect();
        topics.into_iter().collect()
    }

    /// A fresh model from every event in the store, in commit order, read in pages.
    pub async fn rebuild(store: &dyn EventStore) -> Result<Projections, ProjectionError> {
        let projections = Projections::new();
        projections.replay(store).await?;
        Ok(projections)
    }

    /// Applies every event of `store`, in its global order; events applied already are skipped.
    pub async fn replay(&self, store: &dyn EventStore) -> Result<(), ProjectionError> {
        let mut from = 1;
        loop {
            let page = store.read_all(from, REBUILD_PAGE).await?;
            for recorded in &page {
                self.apply(&recorded.event)
                    .map_err(|source| ProjectionError::Decode { position: recorded.position, source })?;
            }
            // Only an empty page ends the replay: a store may return fewer events than asked for
            // before the end. Positions only grow, so each page starts further on.
            match page.last() {
                Some(last) => from = last.position + 1,
                None => return Ok(()),
            }
        }
    }

    /// Account `id`, or `None` if no event about it has arrived.
    pub fn account(&self, id: &AccountId) -> Option<AccountView> {
        self.read().accounts.get(id).cloned()
    }

    /// Up to `limit` opened accounts, by account id.
    pub fn accounts(&self, limit: usize) -> Vec<AccountView> {
        let models = self.read();
        models.accounts.entries().values().filter(|view| view.details.is_some()).take(limit).cloned().collect()
    }

    /// The accounts of a customer, by account id.
    pub fn accounts_of(&self, customer: &CustomerId) -> Vec<AccountView> {
        let models = self.read();
        let Some(entry) = models.customers.get(customer) else { return Vec::new() };
        entry.account_ids.iter().filter_map(|id| models.accounts.get(id)).cloned().collect()
    }

    /// Customer `id`, or `None` if no event about them has arrived.
    pub fn customer(&self, id: &CustomerId) -> Option<CustomerView> {
        self.read().customers.get(id).cloned()
    }

    /// Loan `id`, or `None` if no event about it has arrived.
    pub fn loan(&self, id: &LoanId) -> Option<LoanView> {
        self.read().loans.get(id).cloned()
    }

    /// Every loan, by loan id.
    pub fn loans(&self) -> Vec<LoanView> {
        self.read().loans.all().cloned().collect()
    }

    /// The `limit` newest compliance alerts, newest first.
    pub fn alerts(&self, limit: usize) -> Vec<ComplianceAlert> {
        self.read().alerts.newest().take(limit).cloned().collect()
    }

    /// Every model as it is now, taken under one lock, so the models agree with each other.
    pub fn snapshot(&self) -> Snapshot {
        let models = self.read();
        Snapshot {
            accounts: models.accounts.entries().clone(),
            customers: models.customers.entries().clone(),
            loans: models.loans.entries().clone(),
            alerts: models.alerts.newest().cloned().collect(),
        }
    }

    /// Events that changed the model so far; duplicates are not counted.
    pub fn applied(&self) -> u64 {
        self.read().applied
    }

    // Applying never panics (amounts are added with checks), so a poisoned lock still holds a
    // consistent model.
    fn read(&self) -> RwLockReadGuard<'_, Models> {
        self.models.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Models> {
        self.models.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use eventbus::Currency;

    use super::*;
    use crate::domain::{AccountChange, AccountStatus, AccountType, KycStatus, KycTier, TransactionType};
    use crate::events::{AccountCreated, AccountUpdated, Causation, CustomerDetails, KycStatusChanged, Posting};
    use crate::events::{Payload as P, TransactionPosted};

    const ACC: &str = "acc_1";
    const CUST: &str = "cust_1";

    /// An event at minute `minute`, with an id of its own.
    fn event(entity: &str, payload: Payload, minute: u32) -> EventSchema {
        let at = Utc.with_ymd_and_hms(2024, 1, 1, 12, minute, 0).unwrap();
        let id = EventId::derived(&format!("{entity}-{minute}-{}", payload.event_type()));
        NexumEvent::new(entity, payload).to_schema(id, at, &Causation::default())
    }

    fn usd() -> Currency {
        "USD".parse().unwrap()
    }

    fn account(status: AccountStatus) -> AccountCreated {
        AccountCreated {
            customer_id: CUST.parse().unwrap(),
            account_type: AccountType::Checking,
            currency: usd(),
            name: None,
            status,
            overdraft_limit: Decimal::ZERO,
        }
    }

    fn frozen() -> AccountUpdated {
        let created = account(AccountStatus::Active);
        AccountUpdated {
            customer_id: created.customer_id,
            account_type: created.account_type,
            currency: created.currency,
            name: Some("Main".into()),
            change: AccountChange::Frozen,
            old_status: AccountStatus::Active,
            status: AccountStatus::Frozen,
            overdraft_limit: Decimal::ZERO,
        }
    }

    fn deposit(amount: Decimal) -> TransactionPosted {
        TransactionPosted {
            transaction_type: TransactionType::Deposit,
            amount,
            currency: usd(),
            from_account_id: None,
            to_account_id: Some(ACC.parse().unwrap()),
            final_balance: amount,
            journal_entry_id: "je_1".parse().unwrap(),
            postings: vec![
                Posting { account_id: AccountId::cash(), amount: -amount },
                Posting { account_id: ACC.parse().unwrap(), amount },
            ],
        }
    }

    fn details(kyc_status: KycStatus, phone: &str) -> CustomerDetails {
        CustomerDetails {
            first_name: "Jane".into(),
            last_name: "Smith".into(),
            email: "jane@example.com".into(),
            phone: Some(phone.into()),
            kyc_status,
            kyc_tier: KycTier::Tier1,
        }
    }

    #[test]
    fn a_creation_that_arrives_after_an_update_does_not_undo_it() {
        let projections = Projections::new();

        projections.apply(&event(ACC, P::AccountUpdated(frozen()), 2)).unwrap();
        projections.apply(&event(ACC, P::AccountCreated(account(AccountStatus::Active)), 1)).unwrap();

        let view = projections.account(&ACC.parse().unwrap()).unwrap();
        assert_eq!(view.details.unwrap().status, AccountStatus::Frozen);
        assert_eq!(view.opened_at.unwrap().to_rfc3339(), "2024-01-01T12:01:00+00:00");
    }

    #[test]
    fn an_account_is_written_as_json_with_amounts_as_strings_and_without_bookkeeping() {
        let projections = Projections::new();
        projections.apply(&event(ACC, P::AccountCreated(account(AccountStatus::Active)), 1)).unwrap();
        projections.apply(&event("txn_1", P::TransactionPosted(deposit("100.50".parse().unwrap())), 2)).unwrap();

        let json = serde_json::to_value(projections.account(&ACC.parse().unwrap()).unwrap()).unwrap();

        assert_eq!(
            json,
            serde_json::json!({
                "account_id": "acc_1", "customer_id": "cust_1", "account_type": "checking", "currency": "USD",
                "name": null, "status": "active", "overdraft_limit": "0", "opened_at": "2024-01-01T12:01:00Z",
                "balance": "100.50", "posted_transactions": 1, "last_activity_at": "2024-01-01T12:02:00Z",
                "latest_statement": null
            })
        );
    }

    #[test]
    fn a_posting_before_the_account_exists_is_kept_and_counted_once() {
        let projections = Projections::new();
        let posted = event("txn_1", P::TransactionPosted(deposit(Decimal::ONE_HUNDRED)), 1);

        assert!(projections.apply(&posted).unwrap());
        assert!(!projections.apply(&posted).unwrap(), "a redelivery changes nothing");
        let placeholder = projections.account(&ACC.parse().unwrap()).unwrap();
        projections.apply(&event(ACC, P::AccountCreated(account(AccountStatus::Active)), 0)).unwrap();

        assert_eq!((placeholder.details, placeholder.balance), (None, Decimal::ONE_HUNDRED));
        let view = projections.account(&ACC.parse().unwrap()).unwrap();
        assert_eq!((view.details.is_some(), view.balance, view.posted_transactions), (true, Decimal::ONE_HUNDRED, 1));
        assert_eq!(projections.applied(), 2);
    }

    #[test]
    fn kyc_and_contact_details_are_each_taken_from_their_newest_event() {
        let projections = Projections::new();
        let kyc = KycStatusChanged {
            old_status: KycStatus::Pending,
            new_status: KycStatus::Verified,
            old_tier: KycTier::Tier1,
            new_tier: KycTier::Tier2,
        };

        projections.apply(&event(CUST, P::KycStatusChanged(kyc), 3)).unwrap();
        projections.apply(&event(CUST, P::CustomerUpdated(details(KycStatus::Pending, "+442")), 2)).unwrap();
        projections.apply(&event(CUST, P::CustomerCreated(details(KycStatus::Pending, "+441")), 1)).unwrap();

        let view = projections.customer(&CUST.parse().unwrap()).unwrap();
        assert_eq!(view.kyc, Some(Kyc { kyc_status: KycStatus::Verified, kyc_tier: KycTier::Tier2 }));
        assert_eq!(view.contact.as_ref().unwrap().phone.as_deref(), Some("+442"));
        assert_eq!(
            (view.created_at.unwrap().format("%M").to_string(), view.updated_at.unwrap().format("%M").to_string()),
            ("01".into(), "03".into())
        );
    }

    #[test]
    fn a_customer_in_debug_output_has_no_personal_data() {
        let projections = Projections::new();
        projections.apply(&event(CUST, P::CustomerCreated(details(KycStatus::Pending, "+4412345678")), 1)).unwrap();

        let debug = format!("{:?}", projections.snapshot());

        for secret in ["Jane", "Smith", "jane@", "12345678"] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
        assert!(debug.contains("j***@example.com"), "{debug}");
    }

    #[test]
    fn an_amount_that_overflows_a_balance_is_refused_and_changes_nothing() {
        let projections = Projections::new();
        projections.apply(&event("txn_1", P::TransactionPosted(deposit(Decimal::MAX)), 1)).unwrap();
        let before = projections.snapshot();

        let refused = projections.apply(&event("txn_2", P::TransactionPosted(deposit(Decimal::MAX)), 2));

        assert!(matches!(refused, Err(DecodeError::Payload { .. })), "{refused:?}");
        assert_eq!(projections.snapshot(), before);
    }

    #[test]
    fn the_topics_cover_every_event_type_read() {
        let topics = Projections::topics();
        assert_eq!(topics.len(), READS.len());
        for event_type in READS {
            let info = crate::events::EventTypeInfo::of(event_type).expect("a catalog event type");
            assert!(topics.contains(&info.topic.name()), "{event_type}");
        }
    }
}
