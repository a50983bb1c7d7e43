//! `savings_opportunity`: credits minus debits over the account's last `savings_window` (20)
//! transactions, the current one included, reach `savings_threshold` (1500) in the account
//! currency → `move_to_savings`; then silent for `savings_cooldown` (20) transactions of the
//! account.

use rust_decimal::Decimal;

use super::{Finding, KeyRule};
use crate::recommender::config::RecommenderConfig;
use crate::recommender::decode::{Ctx, Transaction};
use crate::recommender::error::RecommenderError;
use crate::recommender::state::{AccountHistory, KeyState};
use crate::recommender::vocabulary::Rule;

/// The `savings_opportunity` rule.
pub(super) struct SavingsOpportunity;

impl KeyRule<AccountHistory> for SavingsOpportunity {
    fn rule(&self) -> Rule {
        Rule::SavingsOpportunity
    }

    fn check(
        &self,
        config: &RecommenderConfig,
        before: &KeyState<AccountHistory>,
        txn: &Transaction<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Finding>, RecommenderError> {
        let (mut credits, mut debits, mut transactions) = (Decimal::ZERO, Decimal::ZERO, 0usize);
        for signed in before.history.recent_with(txn.signed_amount(), config.savings_window) {
            transactions += 1;
            if signed > Decimal::ZERO {
                credits = ctx.checked("amount", credits.checked_add(signed))?;
            } else {
                debits = ctx.checked("amount", debits.checked_sub(signed))?;
            }
        }
        let net = ctx.checked("amount", credits.checked_sub(debits))?;
        if net < config.savings_threshold || !before.cooled_down(Rule::SavingsOpportunity, config.savings_cooldown) {
            return Ok(None);
        }
        let currency = txn.amount.currency();
        let reason = format!(
            "credits exceed debits by {net} {currency} over the last {transactions} transactions, at or above \
             {threshold} {currency}: the surplus could earn interest in savings",
            threshold = config.savings_threshold.normalize(),
        );
        let inputs = vec![
            ("net_inflow", net.to_string()),
            ("credits", credits.to_string()),
            ("debits", debits.to_string()),
            ("currency", currency.to_string()),
            ("transactions", transactions.to_string()),
            ("threshold", config.savings_threshold.normalize().to_string()),
        ];
        Ok(Some(Finding { reason, inputs }))
    }
}

#[cfg(test)]
mod tests {
    use crate::recommender::fixtures::{Account, feed, rules};
    use crate::recommender::{Action, Recommender, RecommenderConfig, Rule};

    #[test]
    fn a_surplus_of_1500_over_recent_transactions_suggests_savings_once_per_cooldown() {
        // Given an account with 19 debits of 10.00
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0003");
        let spending: Vec<_> = (0..19).map(|_| acc.txn("debit", "10.00")).collect();
        assert!(feed(&mut rec, &spending).is_empty());
        // When a salary brings the last 20 transactions to +1500.00 exactly
        let salary = acc.txn("credit", "1690.00");
        let recs = rec.on_event(&salary).unwrap();
        // Then moving money to savings is suggested, with the figures
        assert_eq!(rules(&recs), [Rule::SavingsOpportunity]);
        let r = &recs[0];
        assert_eq!(r.action, Action::MoveToSavings);
        assert_eq!(r.inputs["net_inflow"], "1500.00");
        assert_eq!(r.inputs["credits"], "1690.00");
        assert_eq!(r.inputs["debits"], "190.00");
        assert_eq!(r.inputs["transactions"], "20");
        // When 19 more credits keep the surplus high, then the rule stays silent (cooldown)
        let more: Vec<_> = (0..19).map(|_| acc.txn("credit", "100.00")).collect();
        assert!(feed(&mut rec, &more).is_empty());
        // When the 20th transaction after it arrives, then the rule may fire again
        assert_eq!(rules(&rec.on_event(&acc.txn("credit", "100.00")).unwrap()), [Rule::SavingsOpportunity]);
    }

    #[test]
    fn a_surplus_just_below_1500_suggests_nothing() {
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0004");
        let spending: Vec<_> = (0..19).map(|_| acc.txn("debit", "10.00")).collect();
        feed(&mut rec, &spending);
        assert!(rec.on_event(&acc.txn("credit", "1689.99")).unwrap().is_empty());
    }

    #[test]
    fn only_the_last_20_transactions_count() {
        // Given a large credit followed by 20 small debits
        let mut rec =
            Recommender::with_config(RecommenderConfig { savings_cooldown: 0, ..RecommenderConfig::default() })
                .unwrap();
        let mut acc = Account::new("acc_0005");
        assert_eq!(rules(&rec.on_event(&acc.txn("credit", "2000.00")).unwrap()), [Rule::SavingsOpportunity]);
        let mut fired = 0;
        for _ in 0..20 {
            fired += rec.on_event(&acc.txn("debit", "1.00")).unwrap().len();
        }
        // Then it fires while the credit is in the window (19 more times, no cooldown), and not
        // once it has left
        assert_eq!(fired, 19);
    }
}
