//! Credit accounts: statements and payments.

use chrono::{Days, Months, NaiveDate};
use eventbus::Money;
use rust_decimal::Decimal;

use super::transactions::{Movement, TransactionReceipt, positive};
use super::{Bank, BankError, Ctx, MAX_ATTEMPTS, Work, retrying};
use crate::domain::{AccountType, TransactionType};
use crate::events::{CreditPaymentReceived, CreditStatementGenerated, NexumEvent, Payload};
use crate::ids::{AccountId, StatementId};
use crate::store::StreamId;

/// Days from the end of a statement period to the payment due date.
pub const PAYMENT_DUE_DAYS: u64 = 21;
/// The minimum payment: this share of what is owed, but at least [`MINIMUM_PAYMENT_FLOOR`].
pub const MINIMUM_PAYMENT_RATE: Decimal = Decimal::from_parts(2, 0, 0, false, 2);
/// The smallest minimum payment, in units of the account's currency, unless less is owed.
pub const MINIMUM_PAYMENT_FLOOR: Decimal = Decimal::from_parts(25, 0, 0, false, 0);

impl Bank {
    /// Closes the statement period of a credit account at `period_end`.
    pub async fn generate_statement(
        &self,
        ctx: &Ctx,
        account_id: &AccountId,
        period_end: NaiveDate,
    ) -> Result<CreditStatementGenerated, BankError> {
        retrying!({
            let mut work = Work::new(ctx, "generate_statement");
            let mut account = self.account_for(&mut work, account_id).await?;
            let state = &account.state;
            if state.account_type != AccountType::Credit {
                return Err(BankError::invalid("account_id", format!("`{account_id}` is not a credit account")));
            }
            if period_end > ctx.at.date_naive() {
                return Err(BankError::invalid("period_end", "a statement period cannot end in the future"));
            }
            let out_of_range = || BankError::invalid("period_end", "out of the supported date range");
            let (period_start, opening_balance) = match state.last_statement {
                Some((end, _)) if end >= period_end => {
                    return Err(BankError::InvalidState(format!("a statement up to {end} exists already")));
                }
                Some((end, closing)) => (end.checked_add_days(Days::new(1)).ok_or_else(out_of_range)?, closing),
                None => (
                    period_end
                        .checked_sub_months(Months::new(1))
                        .and_then(|d| d.checked_add_days(Days::new(1)))
                        .ok_or_else(out_of_range)?,
                    Decimal::ZERO,
                ),
            };
            let due_date = period_end.checked_add_days(Days::new(PAYMENT_DUE_DAYS)).ok_or_else(out_of_range)?;
            let owed = (-state.balance).max(Decimal::ZERO);
            let dp = state.currency.minor_units();
            let minimum_payment = (owed * MINIMUM_PAYMENT_RATE).round_dp(dp).max(MINIMUM_PAYMENT_FLOOR).min(owed);
            let statement = CreditStatementGenerated {
                account_id: account_id.clone(),
                customer_id: state.customer_id.clone(),
                currency: state.currency,
                period_start,
                period_end,
                opening_balance,
                closing_balance: state.balance,
                minimum_payment,
                due_date,
            };
            let id = StatementId::new();
            let event = NexumEvent::new(&id, Payload::CreditStatementGenerated(statement.clone()));
            work.record_linked(&event, StreamId::of("statement", &id), &mut [&mut account])?;
            Ok(self.commit(work).await?.then(|| {
                self.accounts.put(account);
                statement
            }))
        })
    }

    /// Pays towards a credit account from another account of the customer.
    pub async fn pay_credit(
        &self,
        ctx: &Ctx,
        from: &AccountId,
        credit_account: &AccountId,
        amount: Money,
    ) -> Result<TransactionReceipt, BankError> {
        let amount = positive(amount)?;
        if from == credit_account {
            return Err(BankError::invalid("from_account_id", "a credit account cannot pay itself"));
        }
        retrying!({
            let mut work = Work::new(ctx, "pay_credit");
            let mut credit = self.account_for(&mut work, credit_account).await?;
            if credit.state.account_type != AccountType::Credit {
                return Err(BankError::invalid("account_id", format!("`{credit_account}` is not a credit account")));
            }
            let mut source = self.account_for(&mut work, from).await?;
            if source.state.customer_id != credit.state.customer_id || !source.state.account_type.is_transactional() {
                return Err(BankError::invalid("from_account_id", "pay from another account of the same customer"));
            }
            if credit.state.balance + amount.amount() > Decimal::ZERO {
                return Err(BankError::refused_amount(
                    amount.amount(),
                    format!("exceeds the {} owed", -credit.state.balance),
                ));
            }
            let movement = Movement {
                kind: TransactionType::CreditPayment,
                amount,
                from: Some(&mut source),
                to: Some(&mut credit),
                postings: None,
                kyc_limit: None,
                description: Some(format!("Payment to credit account {credit_account}")),
                reference: None,
            };
            let receipt = self.post(&mut work, movement)?;
            if receipt.is_posted() {
                let paid = CreditPaymentReceived {
                    customer_id: credit.state.customer_id.clone(),
                    from_account_id: from.clone(),
                    amount: amount.amount(),
                    currency: amount.currency(),
                    new_balance: credit.state.balance,
                    transaction_id: receipt.transaction_id.clone(),
                };
                work.record_in(&NexumEvent::new(credit_account, Payload::CreditPaymentReceived(paid)), &mut credit)?;
            }
            Ok(self.commit(work).await?.then(|| {
                self.accounts.put(source);
                self.accounts.put(credit);
                receipt
            }))
        })
    }
}
