//! What the recommender remembers of one account and of one instrument.

use std::collections::VecDeque;

use eventbus::{Currency, EventId};
use rust_decimal::Decimal;

/// How many recent event ids per key are remembered to drop redeliveries.
const RECENT_IDS: usize = 64;

/// The event ids a key has seen lately, to drop redeliveries (delivery is at least once).
#[derive(Clone, Debug, Default)]
pub(super) struct RecentIds(VecDeque<EventId>);

impl RecentIds {
    pub(super) fn contains(&self, id: &EventId) -> bool {
        self.0.contains(id)
    }

    pub(super) fn push(&mut self, id: EventId) {
        if self.0.len() == RECENT_IDS {
            self.0.pop_front();
        }
        self.0.push_back(id);
    }
}

/// What the rules remember of one account.
#[derive(Clone, Debug)]
pub(super) struct AccountState {
    pub(super) currency: Currency,
    /// Transactions seen.
    pub(super) transactions: u64,
    pub(super) debit_count: u64,
    pub(super) debit_sum: Decimal,
    /// Signed amounts (credits positive) of the last `savings_window` transactions.
    pub(super) recent: VecDeque<Decimal>,
    /// The value of `transactions` when `savings_opportunity` last fired.
    pub(super) savings_fired_at: Option<u64>,
    pub(super) seen: RecentIds,
}

/// What the rules remember of one instrument.
#[derive(Clone, Debug)]
pub(super) struct InstrumentState {
    pub(super) currency: Currency,
    /// Updates seen.
    pub(super) updates: u64,
    /// The last `sma_window` prices.
    pub(super) prices: VecDeque<Decimal>,
    pub(super) dip_fired_at: Option<u64>,
    pub(super) surge_fired_at: Option<u64>,
    pub(super) seen: RecentIds,
}

/// Whether a rule with `cooldown` that last fired at `fired_at` may fire at `now`.
pub(super) fn cooled_down(fired_at: Option<u64>, now: u64, cooldown: u64) -> bool {
    fired_at.is_none_or(|at| now - at >= cooldown)
}
