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
    pub customer_id: CustomerId,
    pub account_type: AccountType,
    pub currency: Currency,
    pub name: Option<String>,
    pub status: AccountStatus,
    /// How far below zero the balance may go.
    pub overdraft_limit: Decimal,
}

/// The latest credit statement of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub statement_id: StatementId,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub opening_balance: Decimal,
    pub closing_balance: Decimal,
    pub minimum_payment: Decimal,
    pub due_date: NaiveDate,
}

/// One account as the read model sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountView {
    pub account_id: AccountId,
    /// `None` while only postings or statements of the account have arrived, not its creation.
    #[serde(flatten)]
    pub details: Option<AccountDetails>,
    pub opened_at: Option<DateTime<Utc>>,
    /// The sum of its postings: credits positive.
    pub balance: Decimal,
    pub posted_transactions: u64,
    /// The time of its latest posted transaction.
    pub last_activity_at: Option<DateTime<Utc>>,
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
