//! The recommendation consumer: explainable rules over bank transactions and market prices.
//!
//! # Determinism under replay
//!
//! Partitions and topics interleave differently on every replay; only the order of one key
//! (one account, one instrument) is kept. So every rule reads the history of one key only, and
//! never the clock or a random number: feeding the same events in any order that keeps each
//! key's order yields the same recommendations, ids included.

mod config;
mod decode;
mod error;
#[cfg(test)]
mod fixtures;
mod keys;
mod rules;
mod state;
mod vocabulary;

use eventbus::{Currency, EventSchema};

pub use config::RecommenderConfig;
pub use error::{EventProblem, RecommenderError};
pub use vocabulary::{Action, RECOMMENDATION_ISSUED, RECOMMENDER_SOURCE, Recommendation, Rule, SubjectType};

use self::decode::Ctx;
use self::keys::KeyStates;
use self::rules::{ACCOUNT_RULES, Finding, INSTRUMENT_RULES, KeyRule};
use self::state::{AccountHistory, History, InstrumentHistory, KeyState};
use crate::prices::MARKET_PRICE_UPDATED;
use crate::transactions::BANK_TRANSACTION_RECORDED;

/// Explainable rules over bank transactions and market prices, with state per account and per
/// instrument.
///
/// - `large_debit` (account): a debit at least 3x the mean of the account's previous debits (at
///   least 5 of them) → `review_transaction`.
/// - `savings_opportunity` (account): credits minus debits over the account's last 20
///   transactions reach 1500 in the account currency → `move_to_savings`; then silent for 20
///   transactions of that account.
/// - `price_dip` (instrument): a price at or below 0.97x the simple moving average of the previous
///   20 prices → `consider_buy`; then silent for 20 updates of that instrument.
/// - `price_surge` (instrument): at or above 1.03x that average → `consider_taking_profit`; then
///   silent for 20 updates.
///
/// Every rule reads the history of one key only, so any replay that keeps each key's order gives
/// the same recommendations. A redelivered event (an `event_id` among the key's last 64) is
/// ignored. Events of other types are ignored; a malformed event is an error and changes nothing.
///
/// It keeps the history of at most [`RecommenderConfig::max_keys`] accounts and as many
/// instruments; past that, the key used least recently is forgotten.
#[derive(Clone, Debug)]
pub struct Recommender {
    config: RecommenderConfig,
    accounts: KeyStates<AccountHistory>,
    instruments: KeyStates<InstrumentHistory>,
}

impl Default for Recommender {
    fn default() -> Self {
        Self::unchecked(RecommenderConfig::default())
    }
}

impl Recommender {
    /// A recommender with the default thresholds.
    pub fn new() -> Self {
        Self::default()
    }

    /// A recommender with other thresholds.
    pub fn with_config(config: RecommenderConfig) -> Result<Self, RecommenderError> {
        config.validate()?;
        Ok(Self::unchecked(config))
    }

    fn unchecked(config: RecommenderConfig) -> Self {
        let max = config.max_keys;
        Self { config, accounts: KeyStates::new(max), instruments: KeyStates::new(max) }
    }

    /// The thresholds the rules use.
    pub fn config(&self) -> &RecommenderConfig {
        &self.config
    }

    /// Accounts seen so far.
    pub fn accounts_tracked(&self) -> usize {
        self.accounts.len()
    }

    /// Instruments seen so far.
    pub fn instruments_tracked(&self) -> usize {
        self.instruments.len()
    }

    /// Evaluates the rules on one event and returns the recommendations it triggers, in the order
    /// of [`Rule::ALL`].
    pub fn on_event(&mut self, event: &EventSchema) -> Result<Vec<Recommendation>, RecommenderError> {
        let event_type = event.event_type.as_str();
        if event_type != BANK_TRANSACTION_RECORDED && event_type != MARKET_PRICE_UPDATED {
            return Ok(Vec::new());
        }
        let id = event.event_id.clone().ok_or_else(|| RecommenderError::MissingEventId {
            event_type: event.event_type.clone(),
            entity_id: event.entity_id.clone(),
        })?;
        let ctx = Ctx { event, id };
        let config = &self.config;
        if event_type == BANK_TRANSACTION_RECORDED {
            let txn = ctx.transaction()?;
            let subject = (txn.account_id, txn.amount.currency());
            evaluate(&mut self.accounts, ACCOUNT_RULES, config, &ctx, subject, &txn)
        } else {
            let update = ctx.price_update()?;
            let subject = (update.symbol, update.currency);
            evaluate(&mut self.instruments, INSTRUMENT_RULES, config, &ctx, subject, &update)
        }
    }
}

/// Runs `rules` on the event `ctx` is about, decoded as `event`, for the key `subject_id` with
/// figures in `currency`; then records the event in the key's state. A redelivery is ignored; an
/// error leaves the state as it was.
fn evaluate<H: History>(
    states: &mut KeyStates<H>,
    rules: &[&dyn KeyRule<H>],
    config: &RecommenderConfig,
    ctx: &Ctx<'_>,
    (subject_id, currency): (&str, Currency),
    event: &H::Event<'_>,
) -> Result<Vec<Recommendation>, RecommenderError> {
    let new;
    let before = match states.get(subject_id) {
        Some(state) if state.currency != currency => {
            return Err(ctx.currency_changed(H::SUBJECT, subject_id, state.currency, currency));
        }
        Some(state) if state.has_seen(&ctx.id) => {
            tracing::debug!(event_id = %ctx.id, subject_type = %H::SUBJECT, subject = subject_id, "Redelivered event ignored");
            return Ok(Vec::new());
        }
        Some(state) => state,
        None => {
            new = KeyState::new(currency);
            &new
        }
    };
    let mut issued = Vec::new();
    for rule in rules {
        if let Some(finding) = rule.check(config, before, event, ctx)? {
            issued.push(issue(rule.rule(), subject_id, ctx, finding));
        }
    }
    let mut after = before.clone();
    after.record(event, issued.iter().map(|r| r.rule), config, ctx)?;
    states.insert(subject_id, after);
    Ok(issued)
}

/// The recommendation of `rule` about `subject_id`, triggered by the event `ctx` is about.
fn issue(rule: Rule, subject_id: &str, ctx: &Ctx<'_>, finding: Finding) -> Recommendation {
    let recommendation = Recommendation {
        recommendation_id: Recommendation::derive_id(rule, &ctx.id),
        subject_type: rule.subject_type(),
        subject_id: subject_id.to_owned(),
        rule,
        action: rule.action(),
        reason: finding.reason,
        inputs: finding.inputs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        triggered_by: ctx.id.clone(),
    };
    tracing::debug!(rule = %rule, subject = %recommendation.subject_id, triggered_by = %ctx.id, "Recommendation issued");
    recommendation
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fixtures::{Account, event, feed, flat_history, price, rules};
    use super::*;

    #[test]
    fn events_of_other_types_are_ignored() {
        let mut rec = Recommender::new();
        let other = event("customer_created", "c-1", json!({"name": "Ada"}));
        assert!(rec.on_event(&other).unwrap().is_empty());
        let mut no_id = other.clone();
        no_id.event_id = None;
        assert!(rec.on_event(&no_id).unwrap().is_empty());
    }

    #[test]
    fn a_currency_change_on_one_subject_is_refused() {
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0010");
        rec.on_event(&acc.txn("debit", "10.00")).unwrap();
        let mut eur = acc.txn("debit", "10.00");
        eur.data.insert("currency".into(), json!("EUR"));
        let err = rec.on_event(&eur).unwrap_err();
        assert!(matches!(err.problem(), Some(EventProblem::CurrencyChanged { .. })), "{err}");
    }

    #[test]
    fn absurd_amounts_are_an_overflow_error_not_a_panic() {
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0011");
        let huge = "79228162514264337593543950335";
        let mut result = Ok(Vec::new());
        for _ in 0..3 {
            result = rec.on_event(&acc.txn("credit", huge));
        }
        assert!(
            matches!(result.as_ref().map_err(|e| e.problem()), Err(Some(EventProblem::Overflow { .. }))),
            "{result:?}"
        );
    }

    #[test]
    fn a_redelivered_event_is_ignored() {
        // Given a dip that fired
        let mut rec = Recommender::new();
        feed(&mut rec, &flat_history("AAPL", 20));
        let dip = price("AAPL", 21, "90.00");
        assert_eq!(rec.on_event(&dip).unwrap().len(), 1);
        // When the same event is delivered again, then nothing more happens
        assert!(rec.on_event(&dip).unwrap().is_empty());
    }

    #[test]
    fn a_refused_event_leaves_the_account_as_it_was() {
        // Given an account with four debits of 10.00
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0012");
        let history: Vec<_> = (0..4).map(|_| acc.txn("debit", "10.00")).collect();
        feed(&mut rec, &history);
        // When a fifth debit is refused for its currency
        let mut refused = acc.txn("debit", "10.00");
        refused.data.insert("currency".into(), json!("EUR"));
        assert!(rec.on_event(&refused).is_err());
        // Then it does not count as a previous debit: a large debit is not compared yet
        assert!(rec.on_event(&acc.txn("debit", "100.00")).unwrap().is_empty());
        // And, corrected, it is evaluated rather than dropped as a redelivery: 90.00 is at least
        // 3x the mean of the five debits before it (28.00)
        let mut corrected = refused;
        corrected.data.insert("currency".into(), json!("USD"));
        corrected.data.insert("amount".into(), json!("90.00"));
        assert_eq!(rules(&rec.on_event(&corrected).unwrap()), [Rule::LargeDebit]);
    }
}
