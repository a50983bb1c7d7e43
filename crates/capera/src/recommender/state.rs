//! What the recommender remembers of one key (an account or an instrument): the currency of its
//! figures, how many events it had, when each rule last fired, the event ids it saw lately, and
//! the history its rules read. Recording an event moves all of it forward.

use std::collections::{BTreeMap, VecDeque};

use eventbus::{Currency, EventId};
use rust_decimal::Decimal;

use super::config::RecommenderConfig;
use super::decode::{Ctx, PriceUpdate, Transaction};
use super::error::RecommenderError;
use super::vocabulary::{Rule, SubjectType};

/// How many recent event ids per key are remembered to drop redeliveries.
const RECENT_IDS: usize = 64;

/// The part of a key's state that its rules read, and how one event extends it.
pub(super) trait History: Clone + Default {
    /// The decoded event that extends this history.
    type Event<'a>;

    /// What a key with this history is.
    const SUBJECT: SubjectType;

    /// Adds `event`. An `Overflow` error (blamed on the event through `ctx`) if a figure no
    /// longer fits in a decimal.
    fn record(
        &mut self,
        event: &Self::Event<'_>,
        config: &RecommenderConfig,
        ctx: &Ctx<'_>,
    ) -> Result<(), RecommenderError>;
}

/// The state of one key. Rules read it as it was before the event they look at; the recommender
/// then records the event on a copy, so that an error leaves the key as it was.
#[derive(Clone, Debug)]
pub(super) struct KeyState<H> {
    /// The currency of every figure of the key; an event in another one is refused.
    pub(super) currency: Currency,
    /// Events recorded.
    events: u64,
    /// The value of `events` when each rule last fired.
    fired_at: BTreeMap<Rule, u64>,
    seen: RecentIds,
    /// What the rules read.
    pub(super) history: H,
}

impl<H: History> KeyState<H> {
    /// The state of a key not seen before, whose figures are in `currency`.
    pub(super) fn new(currency: Currency) -> Self {
        Self { currency, events: 0, fired_at: BTreeMap::new(), seen: RecentIds::default(), history: H::default() }
    }

    /// Whether the event `id` was recorded lately: a redelivery (delivery is at least once).
    pub(super) fn has_seen(&self, id: &EventId) -> bool {
        self.seen.contains(id)
    }

    /// Whether `rule`, which stays silent for `cooldown` events of the key after it fires, may
    /// fire on the next event.
    pub(super) fn cooled_down(&self, rule: Rule, cooldown: u64) -> bool {
        let next = self.events + 1;
        self.fired_at.get(&rule).is_none_or(|&at| next - at >= cooldown)
    }

    /// Records the event `ctx` is about: `event` extends the history, and the rules in `fired`
    /// fired on it.
    pub(super) fn record(
        &mut self,
        event: &H::Event<'_>,
        fired: impl IntoIterator<Item = Rule>,
        config: &RecommenderConfig,
        ctx: &Ctx<'_>,
    ) -> Result<(), RecommenderError> {
        self.history.record(event, config, ctx)?;
        self.events += 1;
        for rule in fired {
            self.fired_at.insert(rule, self.events);
        }
        self.seen.push(ctx.id.clone());
        Ok(())
    }
}

/// What the account rules read.
#[derive(Clone, Debug, Default)]
pub(super) struct AccountHistory {
    /// Debits recorded.
    pub(super) debit_count: u64,
    /// The sum of the debits recorded, in the account currency.
    pub(super) debit_sum: Decimal,
    /// Signed amounts (credits positive) of the last `savings_window` transactions, oldest first.
    recent: VecDeque<Decimal>,
}

impl AccountHistory {
    /// The signed amounts of the last `window` transactions once one of `signed` is added, oldest
    /// first.
    pub(super) fn recent_with(&self, signed: Decimal, window: usize) -> impl Iterator<Item = Decimal> + '_ {
        let skip = (self.recent.len() + 1).saturating_sub(window);
        self.recent.iter().copied().chain([signed]).skip(skip)
    }
}

impl History for AccountHistory {
    type Event<'a> = Transaction<'a>;

    const SUBJECT: SubjectType = SubjectType::Account;

    fn record(
        &mut self,
        txn: &Transaction<'_>,
        config: &RecommenderConfig,
        ctx: &Ctx<'_>,
    ) -> Result<(), RecommenderError> {
        let amount = txn.amount.amount();
        if !txn.credit {
            self.debit_count += 1;
            self.debit_sum = ctx.checked("amount", self.debit_sum.checked_add(amount))?;
        }
        self.recent.push_back(txn.signed_amount());
        while self.recent.len() > config.savings_window {
            self.recent.pop_front();
        }
        Ok(())
    }
}

/// What the instrument rules read.
#[derive(Clone, Debug, Default)]
pub(super) struct InstrumentHistory {
    /// The last `sma_window` prices, oldest first.
    pub(super) prices: VecDeque<Decimal>,
}

impl History for InstrumentHistory {
    type Event<'a> = PriceUpdate<'a>;

    const SUBJECT: SubjectType = SubjectType::Instrument;

    fn record(
        &mut self,
        update: &PriceUpdate<'_>,
        config: &RecommenderConfig,
        _ctx: &Ctx<'_>,
    ) -> Result<(), RecommenderError> {
        self.prices.push_back(update.price);
        while self.prices.len() > config.sma_window {
            self.prices.pop_front();
        }
        Ok(())
    }
}

/// The event ids a key has seen lately, oldest first.
#[derive(Clone, Debug, Default)]
struct RecentIds(VecDeque<EventId>);

impl RecentIds {
    fn contains(&self, id: &EventId) -> bool {
        self.0.contains(id)
    }

    fn push(&mut self, id: EventId) {
        if self.0.len() == RECENT_IDS {
            self.0.pop_front();
        }
        self.0.push_back(id);
    }
}
