//! Money movements: deposits, withdrawals and transfers, and the posting routine that loans and
//! credit use too. A movement is recorded as created, then posted with its balanced journal
//! entry, or failed with its reason. Posting also raises the compliance alerts it calls for.

use eventbus::{Currency, Money, MoneyError};
use rust_decimal::Decimal;

use super::{Bank, BankError, Ctx, Linked, Loaded, MAX_AMOUNT, MAX_ATTEMPTS, Work, retrying};
use crate::domain::{
    Account, AccountStatus, FailureReason, REPORTING_THRESHOLD, STRUCTURING_COUNT, STRUCTURING_WINDOW_HOURS,
    TransactionType,
};
use crate::events::{
    ComplianceAlertRaised, NexumEvent, Payload, Posting, SuspiciousActivityDetected, TransactionCreated,
    TransactionFailed, TransactionPosted,
};
use crate::ids::{AccountId, AlertId, JournalEntryId, TransactionId};
use crate::store::StreamId;

/// What became of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Posted: the money moved.
    Posted {
        /// The journal entry that booked it.
        journal_entry_id: JournalEntryId,
        /// The balance after posting of the account the transaction is about: the receiving
        /// account of a deposit or disbursement, the paying account otherwise.
        final_balance: Decimal,
    },
    /// Recorded as failed: no money moved.
    Failed {
        /// Why.
        reason: FailureReason,
    },
}

/// The answer to a money movement: the transaction recorded, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionReceipt {
    /// The transaction, recorded in the stream `transaction-<id>` whether it posted or failed.
    pub transaction_id: TransactionId,
    /// Whether it posted or failed, and the details.
    pub status: TransactionStatus,
}

impl TransactionReceipt {
    /// Whether the money moved.
    pub fn is_posted(&self) -> bool {
        matches!(self.status, TransactionStatus::Posted { .. })
    }
}

/// Parses an amount as commands carry it (`"100.50"`, `"USD"`): a positive decimal string with
/// no more decimals than the currency has, at most [`MAX_AMOUNT`].
pub fn parse_amount(amount: &str, currency: &str) -> Result<Money, BankError> {
    positive(Money::parse(amount, currency).map_err(|e| BankError::amount(amount, e))?)
}

/// Reads an ISO 4217 currency code.
pub fn parse_currency(currency: &str) -> Result<Currency, BankError> {
    currency.parse().map_err(|e: MoneyError| BankError::InvalidInput {
        field: "currency",
        reason: e.to_string(),
        source: Some(e),
    })
}

/// Refuses zero, negative and absurd amounts.
pub(super) fn positive(amount: Money) -> Result<Money, BankError> {
    let reason = if amount.amount() <= Decimal::ZERO {
        "must be greater than zero"
    } else if amount.amount() > Decimal::from(MAX_AMOUNT) {
        "exceeds the largest amount of 1000000000000"
    } else {
        return Ok(amount);
    };
    Err(BankError::refused_amount(amount.amount(), reason))
}

/// A description or reference: at most 500 printable characters.
pub(super) fn free_text(field: &'static str, text: Option<String>) -> Result<Option<String>, BankError> {
    match text {
        Some(text) if text.chars().count() > 500 || text.chars().any(char::is_control) => {
            Err(BankError::invalid(field, "expected at most 500 printable characters"))
        }
        other => Ok(other),
    }
}

fn transactional(account: &Loaded<Account>) -> Result<(), BankError> {
    if account.state.account_type.is_transactional() {
        return Ok(());
    }
    Err(BankError::invalid(
        "account_id",
        format!("`{}` is a loan account: it moves only by loan operations", account.state.id),
    ))
}

/// One movement of money between up to two accounts; a missing side is the bank's cash.
pub(super) struct Movement<'a> {
    pub kind: TransactionType,
    pub amount: Money,
    pub from: Option<&'a mut Loaded<Account>>,
    pub to: Option<&'a mut Loaded<Account>>,
    /// The journal entry, when it is not the plain debit of `from` and credit of `to`.
    pub postings: Option<Vec<Posting>>,
    /// The initiating customer's KYC limit, if it applies.
    pub kyc_limit: Option<Decimal>,
    pub description: Option<String>,
    pub reference: Option<String>,
}

impl Movement<'_> {
    fn failure(&self) -> Option<FailureReason> {
        let amount = self.amount.amount();
        let sides = self.from.iter().chain(self.to.iter()).map(|a| &a.state);
        for account in sides {
            match account.status {
                AccountStatus::Closed => return Some(FailureReason::AccountClosed),
                AccountStatus::Frozen => return Some(FailureReason::AccountFrozen),
                AccountStatus::Active => {}
            }
            if account.currency != self.amount.currency() {
                return Some(FailureReason::CurrencyMismatch);
            }
        }
        if self.kyc_limit.is_some_and(|limit| amount > limit) {
            return Some(FailureReason::KycLimitExceeded);
        }
        if self.from.as_ref().is_some_and(|from| !from.state.can_debit(amount)) {
            return Some(FailureReason::InsufficientFunds);
        }
        None
    }

    fn account_id(side: &Option<&mut Loaded<Account>>) -> Option<AccountId> {
        side.as_ref().map(|a| a.state.id.clone())
    }
}

impl Bank {
    /// Money in from outside the bank (cash, an external transfer).
    pub async fn deposit(
        &self,
        ctx: &Ctx,
        account_id: &AccountId,
        amount: Money,
        description: Option<String>,
        reference: Option<String>,
    ) -> Result<TransactionReceipt, BankError> {
        self.cash_movement(ctx, TransactionType::Deposit, account_id, amount, description, reference).await
    }

    /// Money out of the bank.
    pub async fn withdraw(
        &self,
        ctx: &Ctx,
        account_id: &AccountId,
        amount: Money,
        description: Option<String>,
        reference: Option<String>,
    ) -> Result<TransactionReceipt, BankError> {
        self.cash_movement(ctx, TransactionType::Withdrawal, account_id, amount, description, reference).await
    }

    /// A deposit or withdrawal: one account against the bank's cash.
    async fn cash_movement(
        &self,
        ctx: &Ctx,
        kind: TransactionType,
        account_id: &AccountId,
        amount: Money,
        description: Option<String>,
        reference: Option<String>,
    ) -> Result<TransactionReceipt, BankError> {
        let amount = positive(amount)?;
        let (description, reference) = (free_text("description", description)?, free_text("reference", reference)?);
        let command = if kind == TransactionType::Deposit { "deposit" } else { "withdraw" };
        retrying!({
            let mut work = Work::new(ctx, command);
            let mut account = self.account_for(&mut work, account_id).await?;
            transactional(&account)?;
            let owner = self.customer_for(&mut work, &account.state.customer_id).await?;
            let kyc_limit = Some(owner.state.kyc_status().transaction_limit(owner.state.kyc_tier()));
            let (from, to) =
                if kind == TransactionType::Deposit { (None, Some(&mut account)) } else { (Some(&mut account), None) };
            let movement = Movement {
                kind,
                amount,
                from,
                to,
                postings: None,
                kyc_limit,
                description: description.clone(),
                reference: reference.clone(),
            };
            let receipt = self.post(&mut work, movement)?;
            Ok(self.commit(work).await?.then(|| {
                self.accounts.put(account);
                receipt
            }))
        })
    }

    /// Money from one account of the bank to another: the paying account's owner is held to their
    /// KYC limit.
    pub async fn transfer(
        &self,
        ctx: &Ctx,
        from: &AccountId,
        to: &AccountId,
        amount: Money,
        description: Option<String>,
        reference: Option<String>,
    ) -> Result<TransactionReceipt, BankError> {
        let amount = positive(amount)?;
        let (description, reference) = (free_text("description", description)?, free_text("reference", reference)?);
        if from == to {
            return Err(BankError::invalid("to_account_id", "a transfer needs two different accounts"));
        }
        retrying!({
            let mut work = Work::new(ctx, "transfer");
            let mut source = self.account_for(&mut work, from).await?;
            let mut target = self.account_for(&mut work, to).await?;
            transactional(&source)?;
            transactional(&target)?;
            let owner = self.customer_for(&mut work, &source.state.customer_id).await?;
            let movement = Movement {
                kind: TransactionType::Transfer,
                amount,
                from: Some(&mut source),
                to: Some(&mut target),
                postings: None,
                kyc_limit: Some(owner.state.kyc_status().transaction_limit(owner.state.kyc_tier())),
                description: description.clone(),
                reference: reference.clone(),
            };
            let receipt = self.post(&mut work, movement)?;
            Ok(self.commit(work).await?.then(|| {
                self.accounts.put(source);
                self.accounts.put(target);
                receipt
            }))
        })
    }

    /// Records a movement as created, then as posted or failed, and raises compliance alerts.
    pub(super) fn post(&self, work: &mut Work, mut movement: Movement<'_>) -> Result<TransactionReceipt, BankError> {
        let transaction_id = TransactionId::new();
        let stream = StreamId::of("transaction", &transaction_id);
        let (amount, currency) = (movement.amount.amount(), movement.amount.currency());
        let from_account_id = Movement::account_id(&movement.from);
        let to_account_id = Movement::account_id(&movement.to);
        let created = TransactionCreated {
            transaction_type: movement.kind,
            amount,
            currency,
            from_account_id: from_account_id.clone(),
            to_account_id: to_account_id.clone(),
            description: movement.description.clone(),
            reference: movement.reference.clone(),
        };
        work.record(&NexumEvent::new(&transaction_id, Payload::TransactionCreated(created)), stream.clone())?;

        if let Some(reason) = movement.failure() {
            let failed = TransactionFailed {
                transaction_type: movement.kind,
                amount,
                currency,
                from_account_id,
                to_account_id,
                reason,
                error_message: reason.message().to_owned(),
            };
            work.record(&NexumEvent::new(&transaction_id, Payload::TransactionFailed(failed)), stream)?;
            work.outcome = "failed";
            return Ok(TransactionReceipt { transaction_id, status: TransactionStatus::Failed { reason } });
        }

        let postings = movement.postings.take().unwrap_or_else(|| {
            vec![
                Posting { account_id: from_account_id.clone().unwrap_or_else(AccountId::cash), amount: -amount },
                Posting { account_id: to_account_id.clone().unwrap_or_else(AccountId::cash), amount },
            ]
        });
        debug_assert_eq!(postings.iter().map(|p| p.amount).sum::<Decimal>(), Decimal::ZERO, "journal entries balance");
        // The account the transaction is about: the one receiving a deposit or disbursement,
        // the one paying otherwise.
        let receives = matches!(movement.kind, TransactionType::Deposit | TransactionType::LoanDisbursement);
        let primary = if receives {
            movement.to.as_deref().or(movement.from.as_deref())
        } else {
            movement.from.as_deref().or(movement.to.as_deref())
        }
        .expect("a movement has at least one account");
        let primary_id = primary.state.id.clone();
        let owner = primary.state.customer_id.clone();
        let own_delta: Decimal = postings.iter().filter(|p| p.account_id == primary_id).map(|p| p.amount).sum();
        let final_balance = primary.state.balance + own_delta;
        let journal_entry_id = JournalEntryId::new();
        let posted = TransactionPosted {
            transaction_type: movement.kind,
            amount,
            currency,
            from_account_id,
            to_account_id,
            final_balance,
            journal_entry_id: journal_entry_id.clone(),
            postings,
        };
        let event = NexumEvent::new(&transaction_id, Payload::TransactionPosted(posted));
        let mut targets: Vec<&mut dyn Linked> = Vec::new();
        if let Some(from) = movement.from.as_deref_mut() {
            targets.push(from);
        }
        if let Some(to) = movement.to.as_deref_mut() {
            targets.push(to);
        }
        work.record_linked(&event, stream, &mut targets)?;

        if amount >= REPORTING_THRESHOLD {
            let alert_id = AlertId::new();
            let alert = ComplianceAlertRaised {
                alert_type: "large_transaction".into(),
                transaction_id: transaction_id.clone(),
                account_id: primary_id.clone(),
                customer_id: owner.clone(),
                amount,
                currency,
                threshold: REPORTING_THRESHOLD,
            };
            work.record(
                &NexumEvent::new(&alert_id, Payload::ComplianceAlertRaised(alert)),
                StreamId::of("alert", &alert_id),
            )?;
        }
        if movement.kind == TransactionType::Deposit
            && let Some(account) = movement.to.as_deref_mut()
        {
            self.check_structuring(work, account)?;
        }
        Ok(TransactionReceipt { transaction_id, status: TransactionStatus::Posted { journal_entry_id, final_balance } })
    }

    /// Reports structuring: several deposits just below the reporting threshold within the
    /// window, once per window.
    fn check_structuring(&self, work: &mut Work, account: &mut Loaded<Account>) -> Result<(), BankError> {
        let at = work.ctx.at;
        let recent: Vec<_> = account.state.recent_near_threshold(at).cloned().collect();
        let window = chrono::Duration::hours(i64::from(STRUCTURING_WINDOW_HOURS));
        let reported_recently = account.state.structuring_reported_at.is_some_and(|when| at - when < window);
        if recent.len() < STRUCTURING_COUNT || reported_recently {
            return Ok(());
        }
        let alert_id = AlertId::new();
        let report = SuspiciousActivityDetected {
            activity_type: "structuring".into(),
            account_id: account.state.id.clone(),
            customer_id: account.state.customer_id.clone(),
            transaction_ids: recent.iter().map(|(_, id, _)| id.clone()).collect(),
            total_amount: recent.iter().map(|(_, _, amount)| *amount).sum(),
            currency: account.state.currency,
            window_hours: STRUCTURING_WINDOW_HOURS,
        };
        let event = NexumEvent::new(&alert_id, Payload::SuspiciousActivityDetected(report));
        work.record_linked(&event, StreamId::of("alert", &alert_id), &mut [account])
    }
}
