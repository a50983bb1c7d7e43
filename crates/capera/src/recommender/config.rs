//! The thresholds of the rules.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::error::RecommenderError;

/// The thresholds of the rules. The defaults are the documented rules; every field can be
/// changed in the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommenderConfig {
    /// `large_debit` fires on a debit at least this many times the mean of the previous debits.
    pub large_debit_multiple: Decimal,
    /// `large_debit` needs at least this many previous debits on the account.
    pub large_debit_min_history: u64,
    /// `savings_opportunity` fires when net inflow reaches this, in the account currency.
    pub savings_threshold: Decimal,
    /// The account's last this-many transactions (the current one included) count as recent.
    pub savings_window: usize,
    /// After `savings_opportunity` fires, it stays silent until this many more transactions of
    /// the account have been seen.
    pub savings_cooldown: u64,
    /// Prices in the simple moving average: the previous this-many prices of the instrument.
    pub sma_window: usize,
    /// `price_dip` fires at or below this ratio of the moving average.
    pub dip_ratio: Decimal,
    /// `price_surge` fires at or above this ratio of the moving average.
    pub surge_ratio: Decimal,
    /// After `price_dip` or `price_surge` fires, that rule stays silent until this many more
    /// updates of the instrument have been seen.
    pub price_cooldown: u64,
    /// The most accounts, and the most instruments, whose history is kept: past it, the one used
    /// least recently is forgotten, and its next event starts a fresh history. About 2 KB each.
    pub max_keys: usize,
}

impl Default for RecommenderConfig {
    fn default() -> Self {
        Self {
            large_debit_multiple: Decimal::new(3, 0),
            large_debit_min_history: 5,
            savings_threshold: Decimal::new(1500, 0),
            savings_window: 20,
            savings_cooldown: 20,
            sma_window: 20,
            dip_ratio: Decimal::new(97, 2),
            surge_ratio: Decimal::new(103, 2),
            price_cooldown: 20,
            max_keys: 100_000,
        }
    }
}

impl RecommenderConfig {
    /// Refuses values that make a rule meaningless.
    pub fn validate(&self) -> Result<(), RecommenderError> {
        let invalid = |field, reason| Err(RecommenderError::InvalidConfig { field, reason });
        if self.large_debit_multiple <= Decimal::ZERO {
            return invalid("large_debit_multiple", "must be positive");
        }
        if self.large_debit_min_history == 0 {
            return invalid("large_debit_min_history", "must be at least 1");
        }
        if self.savings_threshold <= Decimal::ZERO {
            return invalid("savings_threshold", "must be positive");
        }
        if self.savings_window == 0 {
            return invalid("savings_window", "must be at least 1");
        }
        if self.sma_window == 0 {
            return invalid("sma_window", "must be at least 1");
        }
        if self.dip_ratio <= Decimal::ZERO || self.dip_ratio >= Decimal::ONE {
            return invalid("dip_ratio", "must be between 0 and 1");
        }
        if self.surge_ratio <= Decimal::ONE {
            return invalid("surge_ratio", "must be above 1");
        }
        if !(1..=10_000_000).contains(&self.max_keys) {
            return invalid("max_keys", "must be 1 to 10000000");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::recommender::Recommender;

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
