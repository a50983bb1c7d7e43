//! `large_debit`: a debit at least `large_debit_multiple` (3) times the mean of the account's
//! previous debits, once there are `large_debit_min_history` (5) of them →
//! `review_transaction`. Credits are not compared, and do not count as previous debits.

use rust_decimal::Decimal;

use super::{Finding, KeyRule};
use crate::recommender::config::RecommenderConfig;
use crate::recommender::decode::{Ctx, Transaction};
use crate::recommender::error::RecommenderError;
use crate::recommender::state::{AccountHistory, KeyState};
use crate::recommender::vocabulary::Rule;

/// The `large_debit` rule.
pub(super) struct LargeDebit;

impl KeyRule<AccountHistory> for LargeDebit {
    fn rule(&self) -> Rule {
        Rule::LargeDebit
    }

    fn check(
        &self,
        config: &RecommenderConfig,
        before: &KeyState<AccountHistory>,
        txn: &Transaction<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Finding>, RecommenderError> {
        let history = &before.history;
        if txn.credit || history.debit_count < config.large_debit_min_history {
            return Ok(None);
        }
        let (amount, currency) = (txn.amount.amount(), txn.amount.currency());
        let mean = ctx.checked("amount", history.debit_sum.checked_div(Decimal::from(history.debit_count)))?;
        let threshold = ctx.checked("amount", mean.checked_mul(config.large_debit_multiple))?;
        if amount < threshold {
            return Ok(None);
        }
        let ratio = ctx.checked("amount", amount.checked_div(mean))?;
        let at = if txn.merchant.is_empty() { String::new() } else { format!(" at {}", txn.merchant) };
        let reason = format!(
            "a debit of {amount} {currency}{at} is {ratio:.1}x the mean of the {} previous debits \
             ({} {currency}); the threshold is {}x",
            history.debit_count,
            mean.round_dp(2),
            config.large_debit_multiple.normalize(),
        );
        let inputs = vec![
            ("amount", amount.to_string()),
            ("currency", currency.to_string()),
            ("mean_previous_debits", mean.round_dp(2).to_string()),
            ("previous_debits", history.debit_count.to_string()),
            ("multiple", config.large_debit_multiple.normalize().to_string()),
            ("threshold", threshold.round_dp(2).to_string()),
        ];
        Ok(Some(Finding { reason, inputs }))
    }
}

#[cfg(test)]
mod tests {
    use crate::recommender::fixtures::{Account, feed, rules};
    use crate::recommender::{Action, Recommendation, Recommender, Rule, SubjectType};

    #[test]
    fn a_debit_three_times_the_mean_of_previous_debits_is_flagged_for_review() {
        // Given an account with five debits averaging 50.00
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0001");
        let history: Vec<_> = ["40.00", "60.00", "50.00", "45.00", "55.00"].map(|a| acc.txn("debit", a)).into();
        assert!(feed(&mut rec, &history).is_empty());
        // When it pays exactly 150.00
        let big = acc.txn("debit", "150.00");
        let recs = rec.on_event(&big).unwrap();
        // Then the debit is flagged, with its figures and the triggering event
        assert_eq!(rules(&recs), [Rule::LargeDebit]);
        let r = &recs[0];
        assert_eq!(r.action, Action::ReviewTransaction);
        assert_eq!(r.subject_type, SubjectType::Account);
        assert_eq!(r.subject_id, "acc_0001");
        assert_eq!(r.triggered_by, big.event_id.clone().unwrap());
        assert_eq!(r.recommendation_id, Recommendation::derive_id(Rule::LargeDebit, &r.triggered_by));
        assert_eq!(r.inputs["amount"], "150.00");
        assert_eq!(r.inputs["mean_previous_debits"], "50.00");
        assert_eq!(r.inputs["previous_debits"], "5");
        assert_eq!(r.inputs["threshold"], "150.00");
        assert!(r.reason.contains("3.0x the mean of the 5 previous debits"), "{}", r.reason);
        let line = r.to_string();
        assert!(line.starts_with("[large_debit] account acc_0001: review_transaction, because"), "{line}");
    }

    #[test]
    fn a_debit_just_below_three_times_the_mean_is_not_flagged() {
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0001");
        let history: Vec<_> = ["40.00", "60.00", "50.00", "45.00", "55.00"].map(|a| acc.txn("debit", a)).into();
        feed(&mut rec, &history);
        assert!(rec.on_event(&acc.txn("debit", "149.99")).unwrap().is_empty());
    }

    #[test]
    fn large_debit_needs_five_previous_debits_and_ignores_credits() {
        // Given an account with four small debits and a large credit
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0002");
        let history: Vec<_> = ["10.00", "10.00", "10.00", "10.00"].map(|a| acc.txn("debit", a)).into();
        feed(&mut rec, &history);
        // When a credit far above the mean arrives, then nothing is flagged
        assert!(rules(&rec.on_event(&acc.txn("credit", "900.00")).unwrap()).is_empty());
        // When the fifth debit is large, then it is not flagged: only four came before
        assert!(rec.on_event(&acc.txn("debit", "500.00")).unwrap().is_empty());
        // When the next debit is 3x the mean of all five (108.00), then it is
        assert!(rec.on_event(&acc.txn("debit", "323.99")).unwrap().is_empty());
        let mut rec2 = Recommender::new();
        let mut acc2 = Account::new("acc_0002");
        let history: Vec<_> = ["10.00", "10.00", "10.00", "10.00", "500.00"].map(|a| acc2.txn("debit", a)).into();
        feed(&mut rec2, &history);
        assert_eq!(rules(&rec2.on_event(&acc2.txn("debit", "324.00")).unwrap()), [Rule::LargeDebit]);
    }

    #[test]
    fn debits_of_one_account_do_not_count_for_another() {
        // Given a long history of small debits on acc_0001
        let mut rec = Recommender::new();
        let mut a = Account::new("acc_0001");
        let history: Vec<_> = (0..10).map(|_| a.txn("debit", "5.00")).collect();
        feed(&mut rec, &history);
        // When acc_0002 makes its first debits, large by acc_0001's standard
        let mut b = Account::new("acc_0002");
        let events: Vec<_> = (0..6).map(|_| b.txn("debit", "100.00")).collect();
        // Then nothing is flagged
        assert!(feed(&mut rec, &events).is_empty());
        assert_eq!(rec.accounts_tracked(), 2);
    }
}
