//! The rules, a file each, and the lists the [`Recommender`](super::Recommender) runs them from.
//!
//! A rule looks at one key's state as it was before an event, and at the event, and says whether
//! it fires and why. Adding a rule takes a [`Rule`] variant (its name, action and subject), a
//! file here with a [`KeyRule`] over its subject's history, and its entry in [`ACCOUNT_RULES`] or
//! [`INSTRUMENT_RULES`] in the order of [`Rule::ALL`].

mod large_debit;
mod moving_average;
mod price_dip;
mod price_surge;
mod savings_opportunity;

use super::config::RecommenderConfig;
use super::decode::Ctx;
use super::error::RecommenderError;
use super::state::{AccountHistory, History, InstrumentHistory, KeyState};
use super::vocabulary::Rule;

/// The account rules, in the order of [`Rule::ALL`].
pub(super) const ACCOUNT_RULES: &[&dyn KeyRule<AccountHistory>] =
    &[&large_debit::LargeDebit, &savings_opportunity::SavingsOpportunity];

/// The instrument rules, in the order of [`Rule::ALL`].
pub(super) const INSTRUMENT_RULES: &[&dyn KeyRule<InstrumentHistory>] =
    &[&price_dip::PriceDip, &price_surge::PriceSurge];

/// Why a rule fired: a sentence a person can read, and the figures it compared as decimal
/// strings. The recommender makes the [`Recommendation`](super::Recommendation) of it.
pub(super) struct Finding {
    pub(super) reason: String,
    pub(super) inputs: Vec<(&'static str, String)>,
}

/// One rule over one key (an account or an instrument) whose history is `H`.
pub(super) trait KeyRule<H: History>: Sync {
    /// Which rule this is.
    fn rule(&self) -> Rule;

    /// Whether `event` fires the rule, given `before`, the key's state before the event (empty for
    /// a key not seen before). A rule with a cooldown asks `before` whether it has cooled down.
    /// An error (an overflow of the rule's arithmetic) names the event through `ctx`.
    fn check(
        &self,
        config: &RecommenderConfig,
        before: &KeyState<H>,
        event: &H::Event<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Finding>, RecommenderError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SubjectType;

    #[test]
    fn every_rule_is_registered_once_under_its_subject_in_the_order_of_rule_all() {
        // Given the registered rules, when they are listed by subject, then each list is
        // `Rule::ALL` filtered by that subject, in the same order
        let of =
            |subject: SubjectType| Rule::ALL.into_iter().filter(|r| r.subject_type() == subject).collect::<Vec<_>>();
        let accounts: Vec<_> = ACCOUNT_RULES.iter().map(|r| r.rule()).collect();
        let instruments: Vec<_> = INSTRUMENT_RULES.iter().map(|r| r.rule()).collect();
        assert_eq!(accounts, of(AccountHistory::SUBJECT));
        assert_eq!(instruments, of(InstrumentHistory::SUBJECT));
    }
}
