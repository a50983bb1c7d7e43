//! What `price_dip` and `price_surge` share: a price compared with the simple moving average of
//! the instrument's previous `sma_window` (20) prices, and the finding that explains it.

use rust_decimal::Decimal;

use super::Finding;
use crate::recommender::config::RecommenderConfig;
use crate::recommender::decode::{Ctx, PriceUpdate};
use crate::recommender::error::RecommenderError;
use crate::recommender::state::{InstrumentHistory, KeyState};

/// A price update against the moving average of the prices before it.
pub(super) struct Comparison<'a> {
    update: &'a PriceUpdate<'a>,
    /// The simple moving average of the previous `window` prices.
    sma: Decimal,
    /// How far the price is from the average, in percent of it, to two decimals.
    deviation: Decimal,
    window: usize,
}

impl<'a> Comparison<'a> {
    /// The comparison of `update` with the prices in `before`; `None` until the instrument has
    /// `sma_window` previous prices.
    pub(super) fn of(
        before: &KeyState<InstrumentHistory>,
        update: &'a PriceUpdate<'a>,
        config: &RecommenderConfig,
        ctx: &Ctx<'_>,
    ) -> Result<Option<Self>, RecommenderError> {
        let prices = &before.history.prices;
        if prices.len() != config.sma_window {
            return Ok(None);
        }
        let mut sum = Decimal::ZERO;
        for &p in prices {
            sum = ctx.checked("price", sum.checked_add(p))?;
        }
        let sma = ctx.checked("price", sum.checked_div(Decimal::from(config.sma_window)))?;
        let deviation = ctx.checked(
            "price",
            update
                .price
                .checked_sub(sma)
                .and_then(|d| d.checked_div(sma))
                .and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED)),
        )?;
        Ok(Some(Self { update, sma, deviation: deviation.round_dp(2), window: config.sma_window }))
    }

    /// `ratio` times the average.
    pub(super) fn threshold(&self, ratio: Decimal, ctx: &Ctx<'_>) -> Result<Decimal, RecommenderError> {
        ctx.checked("price", self.sma.checked_mul(ratio))
    }

    /// Why the rule with `ratio` and `threshold` fired: the price is `direction` (`below`,
    /// `above`) the average, which is `advice`.
    pub(super) fn finding(&self, ratio: Decimal, threshold: Decimal, direction: &str, advice: &str) -> Finding {
        let PriceUpdate { symbol, price, currency } = self.update;
        let sma = self.sma.round_dp(4).normalize();
        let reason = format!(
            "{symbol} at {price} {currency} is {}% {direction} its {}-update average of {sma} {currency}: {advice}",
            self.deviation.abs(),
            self.window,
        );
        let inputs = vec![
            ("price", price.to_string()),
            ("currency", currency.to_string()),
            ("sma", sma.to_string()),
            ("sma_window", self.window.to_string()),
            ("ratio", ratio.normalize().to_string()),
            ("threshold", threshold.round_dp(4).normalize().to_string()),
            ("deviation_pct", self.deviation.to_string()),
        ];
        Finding { reason, inputs }
    }
}

#[cfg(test)]
mod tests {
    use crate::recommender::Recommender;
    use crate::recommender::fixtures::{feed, flat_history, price};

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
}
