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
mod state;
mod vocabulary;

use std::collections::{HashMap, VecDeque};

use eventbus::EventSchema;
use rust_decimal::Decimal;

pub use config::RecommenderConfig;
pub use error::RecommenderError;
pub use vocabulary::{Action, RECOMMENDATION_ISSUED, RECOMMENDER_SOURCE, Recommendation, Rule, SubjectType};

use self::decode::Ctx;
use self::state::{AccountState, InstrumentState, RecentIds, cooled_down};
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
#[derive(Clone, Debug, Default)]
pub struct Recommender {
    config: RecommenderConfig,
    accounts: HashMap<String, AccountState>,
    instruments: HashMap<String, InstrumentState>,
}

impl Recommender {
    /// A recommender with the default thresholds.
    pub fn new() -> Self {
        Self::default()
    }

    /// A recommender with other thresholds.
    pub fn with_config(config: RecommenderConfig) -> Result<Self, RecommenderError> {
        config.validate()?;
        Ok(Self { config, ..Self::default() })
    }

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
        if event_type == BANK_TRANSACTION_RECORDED { self.on_transaction(&ctx) } else { self.on_price(&ctx) }
    }

    fn on_transaction(&mut self, ctx: &Ctx<'_>) -> Result<Vec<Recommendation>, RecommenderError> {
        let txn = ctx.transaction()?;
        let config = &self.config;
        let currency = txn.amount.currency();
        let previous = self.accounts.get(txn.account_id);
        if let Some(state) = previous {
            if state.currency != currency {
                return Err(ctx.currency_changed(SubjectType::Account, txn.account_id, state.currency, currency));
            }
            if state.seen.contains(&ctx.id) {
                tracing::debug!(event_id = %ctx.id, account = txn.account_id, "Redelivered transaction ignored");
                return Ok(Vec::new());
            }
        }
        // Compute the new state aside, so that an error leaves the account as it was.
        let mut state = previous.cloned().unwrap_or_else(|| AccountState {
            currency,
            transactions: 0,
            debit_count: 0,
            debit_sum: Decimal::ZERO,
            recent: VecDeque::new(),
            savings_fired_at: None,
            seen: RecentIds::default(),
        });
        let amount = txn.amount.amount();
        let mut out = Vec::new();
        state.transactions += 1;

        // large_debit: against the debits before this one.
        if !txn.credit && state.debit_count >= config.large_debit_min_history {
            let count = Decimal::from(state.debit_count);
            let mean = ctx.checked("amount", state.debit_sum.checked_div(count))?;
            let threshold = ctx.checked("amount", mean.checked_mul(config.large_debit_multiple))?;
            if amount >= threshold {
                let ratio = ctx.checked("amount", amount.checked_div(mean))?;
                let at = if txn.merchant.is_empty() { String::new() } else { format!(" at {}", txn.merchant) };
                let reason = format!(
                    "a debit of {amount} {currency}{at} is {ratio:.1}x the mean of the {} previous debits \
                     ({} {currency}); the threshold is {}x",
                    state.debit_count,
                    mean.round_dp(2),
                    config.large_debit_multiple.normalize(),
                );
                out.push(ctx.recommend(
                    Rule::LargeDebit,
                    txn.account_id,
                    reason,
                    [
                        ("amount", amount.to_string()),
                        ("currency", currency.to_string()),
                        ("mean_previous_debits", mean.round_dp(2).to_string()),
                        ("previous_debits", state.debit_count.to_string()),
                        ("multiple", config.large_debit_multiple.normalize().to_string()),
                        ("threshold", threshold.round_dp(2).to_string()),
                    ],
                ));
            }
        }
        if !txn.credit {
            state.debit_count += 1;
            state.debit_sum = ctx.checked("amount", state.debit_sum.checked_add(amount))?;
        }

        // savings_opportunity: over the recent window, this transaction included.
        state.recent.push_back(if txn.credit { amount } else { -amount });
        while state.recent.len() > config.savings_window {
            state.recent.pop_front();
        }
        let (mut credits, mut debits) = (Decimal::ZERO, Decimal::ZERO);
        for &signed in &state.recent {
            if signed > Decimal::ZERO {
                credits = ctx.checked("amount", credits.checked_add(signed))?;
            } else {
                debits = ctx.checked("amount", debits.checked_sub(signed))?;
            }
        }
        let net = ctx.checked("amount", credits.checked_sub(debits))?;
        if net >= config.savings_threshold
            && cooled_down(state.savings_fired_at, state.transactions, config.savings_cooldown)
        {
            state.savings_fired_at = Some(state.transactions);
            let reason = format!(
                "credits exceed debits by {net} {currency} over the last {} transactions, at or above \
                 {threshold} {currency}: the surplus could earn interest in savings",
                state.recent.len(),
                threshold = config.savings_threshold.normalize(),
            );
            out.push(ctx.recommend(
                Rule::SavingsOpportunity,
                txn.account_id,
                reason,
                [
                    ("net_inflow", net.to_string()),
                    ("credits", credits.to_string()),
                    ("debits", debits.to_string()),
                    ("currency", currency.to_string()),
                    ("transactions", state.recent.len().to_string()),
                    ("threshold", config.savings_threshold.normalize().to_string()),
                ],
            ));
        }

        state.seen.push(ctx.id.clone());
        self.accounts.insert(txn.account_id.to_owned(), state);
        Ok(out)
    }

    fn on_price(&mut self, ctx: &Ctx<'_>) -> Result<Vec<Recommendation>, RecommenderError> {
        let update = ctx.price_update()?;
        let config = &self.config;
        let (symbol, price, currency) = (update.symbol, update.price, update.currency);
        let previous = self.instruments.get(symbol);
        if let Some(state) = previous {
            if state.currency != currency {
                return Err(ctx.currency_changed(SubjectType::Instrument, symbol, state.currency, currency));
            }
            if state.seen.contains(&ctx.id) {
                tracing::debug!(event_id = %ctx.id, symbol, "Redelivered price update ignored");
                return Ok(Vec::new());
            }
        }
        let mut state = previous.cloned().unwrap_or_else(|| InstrumentState {
            currency,
            updates: 0,
            prices: VecDeque::new(),
            dip_fired_at: None,
            surge_fired_at: None,
            seen: RecentIds::default(),
        });
        state.updates += 1;
        let mut out = Vec::new();

        if state.prices.len() == config.sma_window {
            let mut sum = Decimal::ZERO;
            for &p in &state.prices {
                sum = ctx.checked("price", sum.checked_add(p))?;
            }
            let sma = ctx.checked("price", sum.checked_div(Decimal::from(config.sma_window)))?;
            let deviation = ctx.checked(
                "price",
                price
                    .checked_sub(sma)
                    .and_then(|d| d.checked_div(sma))
                    .and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED)),
            )?;
            let deviation = deviation.round_dp(2);
            let checks = [
                (Rule::PriceDip, config.dip_ratio, &mut state.dip_fired_at),
                (Rule::PriceSurge, config.surge_ratio, &mut state.surge_fired_at),
            ];
            for (rule, ratio, fired_at) in checks {
                let threshold = ctx.checked("price", sma.checked_mul(ratio))?;
                let triggered = if rule == Rule::PriceDip { price <= threshold } else { price >= threshold };
                if !triggered || !cooled_down(*fired_at, state.updates, config.price_cooldown) {
                    continue;
                }
                *fired_at = Some(state.updates);
                let (direction, advice) = if rule == Rule::PriceDip {
                    ("below", "a possible entry point")
                } else {
                    ("above", "a chance to lock in gains")
                };
                let reason = format!(
                    "{symbol} at {price} {currency} is {}% {direction} its {}-update average of {} {currency}: {advice}",
                    deviation.abs(),
                    config.sma_window,
                    sma.round_dp(4).normalize(),
                );
                out.push(ctx.recommend(
                    rule,
                    symbol,
                    reason,
                    [
                        ("price", price.to_string()),
                        ("currency", currency.to_string()),
                        ("sma", sma.round_dp(4).normalize().to_string()),
                        ("sma_window", config.sma_window.to_string()),
                        ("ratio", ratio.normalize().to_string()),
                        ("threshold", threshold.round_dp(4).normalize().to_string()),
                        ("deviation_pct", deviation.to_string()),
                    ],
                ));
            }
        }

        state.prices.push_back(price);
        while state.prices.len() > config.sma_window {
            state.prices.pop_front();
        }
        state.seen.push(ctx.id.clone());
        self.instruments.insert(symbol.to_owned(), state);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::{Map, Value, json};

    fn at(n: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(n.into())
    }

    fn event(event_type: &str, id: &str, data: Value) -> EventSchema {
        let Value::Object(data) = data else { panic!("data must be an object") };
        EventSchema {
            event_id: Some(id.parse().unwrap()),
            event_type: event_type.into(),
            timestamp: Some(at(0)),
            source: None,
            version: None,
            entity_type: String::new(),
            entity_id: String::new(),
            data,
            metadata: Map::new(),
        }
    }

    /// A history builder for one account.
    struct Account {
        id: &'static str,
        n: u32,
    }

    impl Account {
        fn new(id: &'static str) -> Self {
            Self { id, n: 0 }
        }

        fn txn(&mut self, direction: &str, amount: &str) -> EventSchema {
            self.n += 1;
            event(
                BANK_TRANSACTION_RECORDED,
                &format!("{}-{}", self.id, self.n),
                json!({"account_id": self.id, "direction": direction, "amount": amount, "currency": "USD",
                       "merchant": "Kroger", "category": "groceries", "description": "Card payment at Kroger"}),
            )
        }
    }

    fn price(symbol: &str, n: u32, price: &str) -> EventSchema {
        event(
            MARKET_PRICE_UPDATED,
            &format!("{symbol}-{n}"),
            json!({"symbol": symbol, "price": price, "currency": "USD", "previous_price": price, "change_pct": "0.00"}),
        )
    }

    fn feed(rec: &mut Recommender, events: &[EventSchema]) -> Vec<Recommendation> {
        events.iter().flat_map(|e| rec.on_event(e).unwrap()).collect()
    }

    fn rules(recs: &[Recommendation]) -> Vec<Rule> {
        recs.iter().map(|r| r.rule).collect()
    }

    // --- large_debit ---

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

    // --- savings_opportunity ---

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

    // --- price_dip and price_surge ---

    fn flat_history(symbol: &str, n: u32) -> Vec<EventSchema> {
        (1..=n).map(|i| price(symbol, i, "100.00")).collect()
    }

    #[test]
    fn a_price_3_percent_below_its_20_update_average_suggests_buying() {
        // Given 20 prices of 100.00
        let mut rec = Recommender::new();
        assert!(feed(&mut rec, &flat_history("AAPL", 20)).is_empty());
        // When the price falls to 97.00
        let recs = rec.on_event(&price("AAPL", 21, "97.00")).unwrap();
        // Then buying is suggested, with the average it was compared with
        assert_eq!(rules(&recs), [Rule::PriceDip]);
        let r = &recs[0];
        assert_eq!(
            (r.action, r.subject_type, r.subject_id.as_str()),
            (Action::ConsiderBuy, SubjectType::Instrument, "AAPL")
        );
        assert_eq!(r.inputs["sma"], "100");
        assert_eq!(r.inputs["threshold"], "97");
        assert_eq!(r.inputs["deviation_pct"], "-3.00");
        assert!(r.reason.contains("3.00% below its 20-update average"), "{}", r.reason);
    }

    #[test]
    fn a_price_3_percent_above_its_20_update_average_suggests_taking_profit() {
        let mut rec = Recommender::new();
        feed(&mut rec, &flat_history("MSFT", 20));
        let recs = rec.on_event(&price("MSFT", 21, "103.00")).unwrap();
        assert_eq!(rules(&recs), [Rule::PriceSurge]);
        assert_eq!(recs[0].action, Action::ConsiderTakingProfit);
    }

    #[test]
    fn prices_just_inside_the_band_or_before_20_updates_suggest_nothing() {
        for just_inside in ["97.01", "102.99"] {
            let mut rec = Recommender::new();
            feed(&mut rec, &flat_history("GLD", 20));
            assert!(rec.on_event(&price("GLD", 21, just_inside)).unwrap().is_empty(), "{just_inside}");
        }
        // Given only 19 previous prices, a crash is not compared with anything
        let mut rec = Recommender::new();
        feed(&mut rec, &flat_history("BND", 19));
        assert!(rec.on_event(&price("BND", 20, "50.00")).unwrap().is_empty());
    }

    #[test]
    fn price_rules_cool_down_for_20_updates_each() {
        // Given a dip that fired
        let mut rec = Recommender::new();
        feed(&mut rec, &flat_history("NVDA", 20));
        assert_eq!(rules(&rec.on_event(&price("NVDA", 21, "90.00")).unwrap()), [Rule::PriceDip]);
        // When the price keeps falling for 19 updates, then price_dip stays silent
        let falling: Vec<_> = (22..=40).map(|i| price("NVDA", i, &format!("{}.00", 110 - i))).collect();
        assert!(feed(&mut rec, &falling).is_empty());
        // When the 20th update after it is still well below the average, then it fires again
        assert_eq!(rules(&rec.on_event(&price("NVDA", 41, "50.00")).unwrap()), [Rule::PriceDip]);
        // And a surge is not held back by the dip's cooldown
        assert_eq!(rules(&rec.on_event(&price("NVDA", 42, "90.00")).unwrap()), [Rule::PriceSurge]);
    }

    // --- bad input ---

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
    fn malformed_events_are_errors_that_name_the_event_and_field_and_change_nothing() {
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0009");
        let good = acc.txn("debit", "10.00");
        let broken = |f: &dyn Fn(&mut Map<String, Value>)| {
            let mut e = good.clone();
            f(&mut e.data);
            e
        };
        let cases: Vec<(EventSchema, &str)> = vec![
            (broken(&|d| drop(d.remove("amount"))), "field `amount` is missing"),
            (broken(&|d| drop(d.insert("amount".into(), json!(10.5)))), "field `amount` must be a string"),
            (broken(&|d| drop(d.insert("amount".into(), json!("ten")))), "field `amount` is invalid"),
            (broken(&|d| drop(d.insert("amount".into(), json!("10.001")))), "field `amount` is invalid"),
            (broken(&|d| drop(d.insert("amount".into(), json!("-10.00")))), "field `amount` must be positive"),
            (broken(&|d| drop(d.remove("currency"))), "field `currency` is missing"),
            (broken(&|d| drop(d.insert("currency".into(), json!("usd")))), "field `currency` is invalid"),
            (broken(&|d| drop(d.insert("direction".into(), json!("sideways")))), "field `direction` is `sideways`"),
            (broken(&|d| drop(d.insert("account_id".into(), json!("")))), "field `account_id` is missing"),
        ];
        for (event, expected) in cases {
            let err = rec.on_event(&event).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("acc_0009-1") && text.contains(expected), "{text}");
        }
        assert_eq!(rec.accounts_tracked(), 0);

        let mut bad_price = price("AAPL", 1, "0");
        assert!(matches!(rec.on_event(&bad_price), Err(RecommenderError::NotPositive { field: "price", .. })));
        bad_price.data.insert("price".into(), json!("1e3"));
        assert!(matches!(rec.on_event(&bad_price), Err(RecommenderError::InvalidMoney { field: "price", .. })));
        bad_price.data.remove("symbol");
        assert!(matches!(rec.on_event(&bad_price), Err(RecommenderError::MissingField { field: "symbol", .. })));
        let mut no_id = price("AAPL", 1, "10.00");
        no_id.event_id = None;
        assert!(matches!(rec.on_event(&no_id), Err(RecommenderError::MissingEventId { .. })));
        assert_eq!(rec.instruments_tracked(), 0);
    }

    #[test]
    fn a_currency_change_on_one_subject_is_refused() {
        let mut rec = Recommender::new();
        let mut acc = Account::new("acc_0010");
        rec.on_event(&acc.txn("debit", "10.00")).unwrap();
        let mut eur = acc.txn("debit", "10.00");
        eur.data.insert("currency".into(), json!("EUR"));
        let err = rec.on_event(&eur).unwrap_err();
        assert!(matches!(err, RecommenderError::CurrencyChanged { .. }), "{err}");
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
        assert!(matches!(result, Err(RecommenderError::Overflow { .. })), "{result:?}");
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
    fn the_recommendation_event_carries_the_recommendation() {
        let mut rec = Recommender::new();
        feed(&mut rec, &flat_history("AAPL", 20));
        let dip = price("AAPL", 21, "90.00");
        let r = rec.on_event(&dip).unwrap().remove(0);
        let event = r.to_event(dip.timestamp.unwrap());
        assert_eq!(event.event_type.as_str(), RECOMMENDATION_ISSUED);
        assert_eq!(event.entity_type, "recommendation");
        assert_eq!(event.source(), RECOMMENDER_SOURCE);
        assert_eq!(event.event_id.as_ref(), Some(&r.recommendation_id));
        assert_eq!(event.timestamp, dip.timestamp);
        assert_eq!(event.data["triggered_by"], "AAPL-21");
        assert_eq!(event.metadata["causation_id"], "AAPL-21");
        assert_eq!(r.key(), "AAPL");
        assert_eq!(Recommendation::from_event(&event).unwrap(), r);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad = [
            RecommenderConfig { sma_window: 0, ..Default::default() },
            RecommenderConfig { savings_window: 0, ..Default::default() },
            RecommenderConfig { dip_ratio: Decimal::ONE, ..Default::default() },
            RecommenderConfig { surge_ratio: Decimal::ONE, ..Default::default() },
            RecommenderConfig { large_debit_min_history: 0, ..Default::default() },
        ];
        for config in bad {
            assert!(matches!(Recommender::with_config(config), Err(RecommenderError::InvalidConfig { .. })));
        }
        let parsed: RecommenderConfig = serde_json::from_value(json!({"savings_threshold": "2500"})).unwrap();
        assert_eq!(parsed.savings_threshold, Decimal::new(2500, 0));
        assert_eq!(parsed.sma_window, 20);
        assert!(serde_json::from_value::<RecommenderConfig>(json!({"savings_treshold": "1"})).is_err());
    }
}
