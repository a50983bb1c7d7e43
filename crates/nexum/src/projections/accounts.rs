//! Account balances and statements.
//!
//! The balance is the sum of the account's postings, not the `final_balance` of the latest
//! transaction: transaction events are keyed by transaction id, so two transactions of one
//! account may arrive in either order, and a sum does not care. The bank's own ledger accounts
//! (`gl_…`) are not tracked: they have no owner and no details, and nobody queries them here.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use eventbus::{Currency, EventId};
use rust_decimal::Decimal;
use serde::Serialize;

use super::{Stamp, add, earliest, replace_if_newer};
use crate::domain::{AccountStatus, AccountType};
use crate::events::{AccountCreated, AccountUpdated, CreditStatementGenerated, TransactionPosted};
use crate::ids::{AccountId, CustomerId, StatementId};

/// What `account_created` and `account_updated` say about an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountDetails {
    /// The customer who owns the account.
    pub customer_id: CustomerId,
    /// Checking, savings, credit or loan.
    pub account_type: AccountType,
    /// The account's currency, in which its balance is kept.
    pub currency: Currency,
    /// Its display name, if it has one.
    pub name: Option<String>,
    /// Whether it may move money: active, frozen or closed.
    pub status: AccountStatus,
    /// How far below zero the balance may go.
    pub overdraft_limit: Decimal,
}

/// The latest credit statement of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The statement's id: the `entity_id` of its `credit_statement_generated`.
    pub statement_id: StatementId,
    /// The first day of the period, `YYYY-MM-DD`.
    pub period_start: NaiveDate,
    /// The last day of the period, `YYYY-MM-DD`.
    pub period_end: NaiveDate,
    /// The balance the period opened with, a decimal string in the account's currency.
    pub opening_balance: Decimal,
    /// The balance when the statement was generated, a decimal string; negative while something is
    /// owed.
    pub closing_balance: Decimal,
    /// The least to pay by `due_date`, a decimal string in the account's currency.
    pub minimum_payment: Decimal,
    /// The day the minimum payment is due, `YYYY-MM-DD`.
    pub due_date: NaiveDate,
}

/// One account as the read model sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountView {
    /// The account's id.
    pub account_id: AccountId,
    /// `None` while only postings or statements of the account have arrived, not its creation.
    #[serde(flatten)]
    pub details: Option<AccountDetails>,
    /// When it was opened (UTC, written in RFC 3339): the time of its earliest `account_created`.
    pub opened_at: Option<DateTime<Utc>>,
    /// The sum of its postings: credits positive.
    pub balance: Decimal,
    /// How many posted transactions booked to it.
    pub posted_transactions: u64,
    /// The time of its latest posted transaction.
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Its newest credit statement, if it has had one.
    pub latest_statement: Option<Statement>,
    #[serde(skip)]
    details_stamp: Option<Stamp>,
    #[serde(skip)]
    statement_stamp: Option<Stamp>,
}

impl AccountView {
    fn placeholder(account_id: AccountId) -> Self {
        Self {
            account_id,
            details: None,
            opened_at: None,
            balance: Decimal::ZERO,
            posted_transactions: 0,
            last_activity_at: None,
            latest_statement: None,
            details_stamp: None,
            statement_stamp: None,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Accounts {
    entries: BTreeMap<AccountId, AccountView>,
    /// The `transaction_posted` events applied: their postings must count once.
    posted: HashSet<EventId>,
}

impl Accounts {
    pub(super) fn get(&self, id: &AccountId) -> Option<&AccountView> {
        self.entries.get(id)
    }

    pub(super) fn entries(&self) -> &BTreeMap<AccountId, AccountView> {
        &self.entries
    }

    fn entry(&mut self, id: AccountId) -> &mut AccountView {
        self.entries.entry(id.clone()).or_insert_with(|| AccountView::placeholder(id))
    }

    pub(super) fn created(&mut self, id: AccountId, created: &AccountCreated, stamp: &Stamp) -> bool {
        let entry = self.entry(id);
        let opened = earliest(&mut entry.opened_at, stamp.at);
        let details = AccountDetails {
            customer_id: created.customer_id.clone(),
            account_type: created.account_type,
            currency: created.currency,
            name: created.name.clone(),
            status: created.status,
            overdraft_limit: created.overdraft_limit,
        };
        replace_if_newer(&mut entry.details, &mut entry.details_stamp, stamp, Some(details)) | opened
    }

    pub(super) fn updated(&mut self, id: AccountId, updated: &AccountUpdated, stamp: &Stamp) -> bool {
        let entry = self.entry(id);
        let details = AccountDetails {
            customer_id: updated.customer_id.clone(),
            account_type: updated.account_type,
            currency: updated.currency,
            name: updated.name.clone(),
            status: updated.status,
            overdraft_limit: updated.overdraft_limit,
        };
        replace_if_newer(&mut entry.details, &mut entry.details_stamp, stamp, Some(details))
    }

    /// Adds the postings of a transaction to the customer accounts it touches, once.
    pub(super) fn posted(
        &mut self,
        event_type: &str,
        posted: &TransactionPosted,
        stamp: &Stamp,
    ) -> Result<bool, crate::events::DecodeError> {
        if self.posted.contains(&stamp.id) {
            return Ok(false);
        }
        // Sum per account first, so that an overflowing amount leaves every balance untouched.
        let mut sums: BTreeMap<&AccountId, Decimal> = BTreeMap::new();
        for posting in posted.postings.iter().filter(|p| !p.account_id.is_ledger()) {
            let sum = sums.entry(&posting.account_id).or_default();
            *sum = add(event_type, *sum, posting.amount)?;
        }
        let mut balances = Vec::with_capacity(sums.len());
        for (id, sum) in sums {
            let current = self.entries.get(id).map_or(Decimal::ZERO, |entry| entry.balance);
            balances.push((id.clone(), add(event_type, current, sum)?));
        }
        for (id, balance) in balances {
            let entry = self.entry(id);
            entry.balance = balance;
            entry.posted_transactions += 1;
            entry.last_activity_at = entry.last_activity_at.max(stamp.at);
        }
        self.posted.insert(stamp.id.clone());
        Ok(true)
    }

    pub(super) fn statement(&mut self, id: StatementId, statement: &CreditStatementGenerated, stamp: &Stamp) -> bool {
        let entry = self.entry(statement.account_id.clone());
        let latest = Statement {
            statement_id: id,
            period_start: statement.period_start,
            period_end: statement.period_end,
            opening_balance: statement.opening_balance,
            closing_balance: statement.closing_balance,
            minimum_payment: statement.minimum_payment,
            due_date: statement.due_date,
        };
        replace_if_newer(&mut entry.latest_statement, &mut entry.statement_stamp, stamp, Some(latest))
    }
}
