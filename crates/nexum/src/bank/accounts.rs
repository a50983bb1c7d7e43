//! Accounts: opening, updates, freezing and closing.

use eventbus::{Currency, Money};
use rust_decimal::Decimal;

use super::{Bank, BankError, Ctx, Loaded, MAX_ATTEMPTS, Work, retrying};
use crate::domain::{Account, AccountChange, AccountStatus, AccountType};
use crate::events::{AccountCreated, AccountUpdated, NexumEvent, Payload};
use crate::ids::{AccountId, CustomerId};

/// A new account of a customer.
#[derive(Clone, Debug)]
pub struct NewAccount {
    /// The id to use; a fresh one if `None`.
    pub id: Option<AccountId>,
    /// The customer who will own the account; they must exist.
    pub customer_id: CustomerId,
    /// Checking, savings or credit. Loan accounts are opened by loan origination.
    pub account_type: AccountType,
    /// The account's currency: every amount booked to it must be in it.
    pub currency: Currency,
    /// A display name, 1 to 100 printable characters; none if `None`.
    pub name: Option<String>,
    /// The overdraft of a checking account or the limit of a credit account; none by default.
    pub overdraft_limit: Option<Money>,
}

/// The fields to change; `None` keeps a field as it is.
#[derive(Clone, Debug, Default)]
pub struct AccountUpdate {
    /// The new display name, 1 to 100 printable characters.
    pub name: Option<String>,
    /// The new overdraft or credit limit, in the account's currency; the balance must not be below
    /// minus it.
    pub overdraft_limit: Option<Money>,
}

fn account_name(name: &str) -> Result<String, BankError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(BankError::invalid("name", "expected 1 to 100 printable characters"));
    }
    Ok(name.to_owned())
}

/// A limit in the account's currency, zero or more, for a type that allows one.
fn limit(limit: Option<Money>, account_type: AccountType, currency: Currency) -> Result<Decimal, BankError> {
    let Some(limit) = limit else { return Ok(Decimal::ZERO) };
    if limit.currency() != currency {
        return Err(BankError::invalid("overdraft_limit", format!("must be in {currency}")));
    }
    if limit.is_negative() || limit.amount() > Decimal::from(super::MAX_AMOUNT) {
        return Err(BankError::refused_amount(limit.amount(), "a limit is between 0 and 1000000000000"));
    }
    if !limit.amount().is_zero() && matches!(account_type, AccountType::Savings) {
        return Err(BankError::invalid("overdraft_limit", "savings accounts cannot be overdrawn"));
    }
    Ok(limit.amount())
}

impl Bank {
    /// Opens an account for an existing customer and lists it on the customer's record. Refused for
    /// loan accounts (loan origination opens those), for a limit on a savings account, and for an
    /// id that exists or starts with `gl_`.
    pub async fn open_account(&self, ctx: &Ctx, new: NewAccount) -> Result<Account, BankError> {
        if new.account_type == AccountType::Loan {
            return Err(BankError::invalid("account_type", "loan accounts are opened by loan origination"));
        }
        let created = AccountCreated {
            customer_id: new.customer_id.clone(),
            account_type: new.account_type,
            currency: new.currency,
            name: new.name.as_deref().map(account_name).transpose()?,
            status: AccountStatus::Active,
            overdraft_limit: limit(new.overdraft_limit, new.account_type, new.currency)?,
        };
        let id = new.id.clone().unwrap_or_default();
        if id.is_ledger() {
            return Err(BankError::invalid("account_id", "ids starting with `gl_` are the bank's own ledger accounts"));
        }
        let event = NexumEvent::new(&id, Payload::AccountCreated(created));
        retrying!({
            if self.account(&id).await?.is_some() {
                return Err(BankError::AlreadyExists { kind: "account", id: id.to_string() });
            }
            let mut work = Work::new(ctx, "open_account");
            let mut customer = self.customer_for(&mut work, &new.customer_id).await?;
            let account = work.create::<Account>(id.as_str(), &event, &mut [&mut customer])?;
            Ok(self.commit(work).await?.then(|| {
                self.customers.put(customer);
                self.accounts.keep(account)
            }))
        })
    }

    /// Changes an account's name or limit, or both. Refused if nothing would change, if the account
    /// is closed, or if the balance is below the new limit.
    pub async fn update_account(&self, ctx: &Ctx, id: &AccountId, update: AccountUpdate) -> Result<Account, BankError> {
        if update.name.is_none() && update.overdraft_limit.is_none() {
            return Err(BankError::invalid("update", "nothing to change"));
        }
        self.change_account(ctx, "update_account", id, AccountChange::Updated, |account| {
            let name = match &update.name {
                Some(name) => Some(account_name(name)?),
                None => account.name.clone(),
            };
            let overdraft_limit = match update.overdraft_limit {
                Some(new) => limit(Some(new), account.account_type, account.currency)?,
                None => account.overdraft_limit,
            };
            if account.account_type == AccountType::Loan && overdraft_limit != account.overdraft_limit {
                return Err(BankError::invalid("overdraft_limit", "a loan account's limit is its principal"));
            }
            if account.balance < -overdraft_limit {
                return Err(BankError::InvalidState(format!("the balance {} is below the new limit", account.balance)));
            }
            Ok((account.status, name, overdraft_limit))
        })
        .await
    }

    /// Stops every movement of money on the account until it is unfrozen.
    pub async fn freeze_account(&self, ctx: &Ctx, id: &AccountId) -> Result<Account, BankError> {
        self.change_account(ctx, "freeze_account", id, AccountChange::Frozen, |account| match account.status {
            AccountStatus::Active => Ok((AccountStatus::Frozen, account.name.clone(), account.overdraft_limit)),
            _ => Err(BankError::InvalidState(format!("account `{id}` is {} already", account.status))),
        })
        .await
    }

    /// Lets a frozen account move money again.
    pub async fn unfreeze_account(&self, ctx: &Ctx, id: &AccountId) -> Result<Account, BankError> {
        self.change_account(ctx, "unfreeze_account", id, AccountChange::Unfrozen, |account| match account.status {
            AccountStatus::Frozen => Ok((AccountStatus::Active, account.name.clone(), account.overdraft_limit)),
            _ => Err(BankError::InvalidState(format!("account `{id}` is not frozen"))),
        })
        .await
    }

    /// Closes an account whose balance is zero. A closed account never changes again.
    pub async fn close_account(&self, ctx: &Ctx, id: &AccountId) -> Result<Account, BankError> {
        self.change_account(ctx, "close_account", id, AccountChange::Closed, |account| {
            if !account.balance.is_zero() {
                return Err(BankError::InvalidState(format!(
                    "account `{id}` has a balance of {}; bring it to zero before closing",
                    account.balance
                )));
            }
            Ok((AccountStatus::Closed, account.name.clone(), account.overdraft_limit))
        })
        .await
    }

    /// Records one `account_updated`: `decide` gives the new status, name and limit.
    async fn change_account(
        &self,
        ctx: &Ctx,
        command: &'static str,
        id: &AccountId,
        change: AccountChange,
        decide: impl Fn(&Account) -> Result<(AccountStatus, Option<String>, Decimal), BankError>,
    ) -> Result<Account, BankError> {
        retrying!({
            let mut work = Work::new(ctx, command);
            let mut account: Loaded<Account> = self.account_for(&mut work, id).await?;
            if account.state.status == AccountStatus::Closed {
                return Err(BankError::AccountClosed(id.clone()));
            }
            let (status, name, overdraft_limit) = decide(&account.state)?;
            let state = &account.state;
            let updated = AccountUpdated {
                customer_id: state.customer_id.clone(),
                account_type: state.account_type,
                currency: state.currency,
                name,
                change,
                old_status: state.status,
                status,
                overdraft_limit,
            };
            work.record_in(&NexumEvent::new(id, Payload::AccountUpdated(updated)), &mut account)?;
            Ok(self.commit(work).await?.then(|| self.accounts.keep(account)))
        })
    }
}
