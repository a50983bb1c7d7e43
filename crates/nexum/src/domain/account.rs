//! An account: its owner, status, limit and balance. The balance is the fold of the postings of
//! the journal entries linked into the account's stream.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use eventbus::Currency;
use rust_decimal::Decimal;

use super::{AccountStatus, AccountType, Aggregate, TransactionType};
use crate::events::{NexumEvent, Payload};
use crate::ids::{AccountId, CustomerId, TransactionId};

/// A transaction of this amount or more, in its currency, raises a compliance alert.
pub const REPORTING_THRESHOLD: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);
/// Deposits within this fraction below the threshold count towards structuring (90% to 100%).
pub const NEAR_THRESHOLD_BAND: Decimal = Decimal::from_parts(9, 0, 0, false, 1);
/// Near-threshold deposits within the window that make a structuring pattern.
pub const STRUCTURING_COUNT: usize = 3;
/// The window, in hours, in which [`STRUCTURING_COUNT`] near-threshold deposits make a structuring
/// pattern.
pub const STRUCTURING_WINDOW_HOURS: u32 = 24;

/// An account as its stream leaves it: its owner, status, limit and balance, and what its
/// compliance rules remember.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account's id.
    pub id: AccountId,
    /// The customer who owns it.
    pub customer_id: CustomerId,
    /// Checking, savings, credit or loan.
    pub account_type: AccountType,
    /// Its currency: every amount booked to it is in it.
    pub currency: Currency,
    /// Its display name, if it has one.
    pub name: Option<String>,
    /// Whether it may move money.
    pub status: AccountStatus,
    /// How far below zero the balance may go.
    pub overdraft_limit: Decimal,
    /// The sum of the postings booked to it, in its currency: credits positive, debits negative.
    pub balance: Decimal,
    /// Deposits just below the reporting threshold in the last window, oldest first.
    pub near_threshold_deposits: VecDeque<(DateTime<Utc>, TransactionId, Decimal)>,
    /// When structuring was last reported on this account.
    pub structuring_reported_at: Option<DateTime<Utc>>,
    /// The end of the last credit statement and its closing balance.
    pub last_statement: Option<(NaiveDate, Decimal)>,
}

impl Account {
    /// Whether the balance may drop by `amount`.
    pub fn can_debit(&self, amount: Decimal) -> bool {
        self.balance - amount >= -self.overdraft_limit
    }

    /// True if a deposit of `amount` is just below the reporting threshold.
    pub fn is_near_threshold(amount: Decimal) -> bool {
        amount < REPORTING_THRESHOLD && amount >= REPORTING_THRESHOLD * NEAR_THRESHOLD_BAND
    }

    /// The near-threshold deposits within the window ending at `at`.
    pub fn recent_near_threshold(
        &self,
        at: DateTime<Utc>,
    ) -> impl Iterator<Item = &(DateTime<Utc>, TransactionId, Decimal)> {
        let since = at - Duration::hours(i64::from(STRUCTURING_WINDOW_HOURS));
        self.near_threshold_deposits.iter().filter(move |(when, _, _)| *when > since)
    }
}

impl Aggregate for Account {
    const KIND: &'static str = "account";

    fn create(entity_id: &str, event: &NexumEvent, _: DateTime<Utc>) -> Option<Self> {
        let Payload::AccountCreated(created) = &event.payload else { return None };
        Some(Self {
            id: entity_id.parse().ok()?,
            customer_id: created.customer_id.clone(),
            account_type: created.account_type,
            currency: created.currency,
            name: created.name.clone(),
            status: created.status,
            overdraft_limit: created.overdraft_limit,
            balance: Decimal::ZERO,
            near_threshold_deposits: VecDeque::new(),
            structuring_reported_at: None,
            last_statement: None,
        })
    }

    fn apply(&mut self, event: &NexumEvent, at: DateTime<Utc>) {
        match &event.payload {
            Payload::AccountUpdated(updated) => {
                self.status = updated.status;
                self.name = updated.name.clone();
                self.overdraft_limit = updated.overdraft_limit;
            }
            Payload::TransactionPosted(posted) => {
                for posting in posted.postings.iter().filter(|p| p.account_id == self.id) {
                    self.balance += posting.amount;
                }
                let deposit_here = posted.transaction_type == TransactionType::Deposit
                    && posted.to_account_id.as_ref() == Some(&self.id);
                if deposit_here && Self::is_near_threshold(posted.amount) {
                    let since = at - Duration::hours(i64::from(STRUCTURING_WINDOW_HOURS));
                    while self.near_threshold_deposits.front().is_some_and(|(when, _, _)| *when <= since) {
                        self.near_threshold_deposits.pop_front();
                    }
                    if let Ok(id) = event.entity_id.parse() {
                        self.near_threshold_deposits.push_back((at, id, posted.amount));
                    }
                }
            }
            Payload::SuspiciousActivityDetected(_) => self.structuring_reported_at = Some(at),
            Payload::CreditStatementGenerated(statement) => {
                self.last_statement = Some((statement.period_end, statement.closing_balance));
            }
            _ => {}
        }
    }
}
