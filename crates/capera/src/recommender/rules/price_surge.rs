//! `price_surge`: a price at or above `surge_ratio` (1.03) times the simple moving average of
//! the instrument's previous `sma_window` (20) prices → `consider_taking_profit`; then silent
//! for `price_cooldown` (20) updates of the instrument.

use super::moving_average::Comparison;
use super::{Finding, KeyRule};
use crate::recommender::config::RecommenderConfig;
use crate::recommender::decode::{Ctx, PriceUpdate};
use crate::recommender::error::RecommenderError;
use crate::recommender::state::{InstrumentHistory, KeyState};
use crate::recommender::vocabulary::Rule;

/// The `price_surge` rule.
pub(super) struct PriceSurge;

impl KeyRule<InstrumentHistory> for PriceSurge {
    fn rule(&self) -> Rule {
        Rule::PriceSurge
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
        let threshold = comparison.threshold(config.surge_ratio, ctx)?;
        if update.price < threshold || !before.cooled_down(Rule::PriceSurge, config.price_cooldown) {
            return Ok(None);
        }
        Ok(Some(comparison.finding(config.surge_ratio, threshold, "above", "a chance to lock in gains")))
    }
}

#[cfg(test)]
mod tests {
    use crate::recommender::fixtures::{feed, flat_history, price, rules};
    use crate::recommender::{Action, Recommender, Rule};

    #[test]
    fn a_price_3_percent_above_its_20_update_average_suggests_taking_profit() {
        let mut rec = Recommender::new();
        feed(&mut rec, &flat_history("MSFT", 20));
        let recs = rec.on_event(&price("MSFT", 21, "103.00")).unwrap();
        assert_eq!(rules(&recs), [Rule::PriceSurge]);
        assert_eq!(recs[0].action, Action::ConsiderTakingProfit);
    }
}
