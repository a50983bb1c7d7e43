//! `price_dip`: a price at or below `dip_ratio` (0.97) times the simple moving average of the
//! instrument's previous `sma_window` (20) prices → `consider_buy`; then silent for
//! `price_cooldown` (20) updates of the instrument.

use super::moving_average::Comparison;
use super::{Finding, KeyRule};
use crate::recommender::config::RecommenderConfig;
use crate::recommender::decode::{Ctx, PriceUpdate};
use crate::recommender::error::RecommenderError;
use crate::recommender::state::{InstrumentHistory, KeyState};
use crate::recommender::vocabulary::Rule;

/// The `price_dip` rule.
pub(super) struct PriceDip;

impl KeyRule<InstrumentHistory> for PriceDip {
    fn rule(&self) -> Rule {
        Rule::PriceDip
    }

    fn check(
        &self,
        config: &RecommenderConfig,
        before: &KeyState<InstrumentHistory>,
        update: &PriceUpdate<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Finding>, RecommenderError> {
        let Some(comparison) = Comparison::of(before, update, config, ctx)? else {
            return Ok(None);
        };
        let threshold = comparison.threshold(config.dip_ratio, ctx)?;
        if update.price > threshold || !before.cooled_down(Rule::PriceDip, config.price_cooldown) {
            return Ok(None);
        }
        Ok(Some(comparison.finding(config.dip_ratio, threshold, "below", "a possible entry point")))
    }
}

#[cfg(test)]
mod tests {
    use crate::recommender::fixtures::{feed, flat_history, price, rules};
    use crate::recommender::{Action, Recommender, Rule, SubjectType};

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
}
