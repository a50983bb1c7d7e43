//! The recommendation consumer: explainable rules over bank transactions and market prices.
//!
//! # Determinism under replay
//!
//! Partitions and topics interleave differently on every replay; only the order of one key
//! (one account, one instrument) is kept. So every rule reads the history of one key only, and
//! never the clock or a random number: feeding the same events in any order that keeps each
//! key's order yields the same recommendations, ids included.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use chrono::{DateTime, Utc};
use eventbus::money::parse_amount;
use eventbus::{Currency, EventId, EventSchema, EventType, Money, MoneyError, Topic};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::prices::MARKET_PRICE_UPDATED;
use crate::transactions::BANK_TRANSACTION_RECORDED;

/// The `event_type` of an issued recommendation.
pub const RECOMMENDATION_ISSUED: &str = "recommendation_issued";
/// The `source` of recommendation events.
pub const RECOMMENDER_SOURCE: &str = "capera.recommender";

/// How many recent event ids per key are remembered to drop redeliveries.
const RECENT_IDS: usize = 64;

/// What a recommendation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    Account,
    Instrument,
}

impl SubjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectType::Account => "account",
            SubjectType::Instrument => "instrument",
        }
    }
}

impl fmt::Display for SubjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule that issued a recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A debit at least `large_debit_multiple` times the mean of the account's previous debits.
    LargeDebit,
    /// Net inflow over the account's recent transactions at or above `savings_threshold`.
    SavingsOpportunity,
    /// A price at or below `dip_ratio` times its simple moving average.
    PriceDip,
    /// A price at or above `surge_ratio` times its simple moving average.
    PriceSurge,
}

impl Rule {
    pub const ALL: [Rule; 4] = [Rule::LargeDebit, Rule::SavingsOpportunity, Rule::PriceDip, Rule::PriceSurge];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::LargeDebit => "large_debit",
            Rule::SavingsOpportunity => "savings_opportunity",
            Rule::PriceDip => "price_dip",
            Rule::PriceSurge => "price_surge",
        }
    }

    /// What the rule recommends.
    pub fn action(self) -> Action {
        match self {
            Rule::LargeDebit => Action::ReviewTransaction,
            Rule::SavingsOpportunity => Action::MoveToSavings,
            Rule::PriceDip => Action::ConsiderBuy,
            Rule::PriceSurge => Action::ConsiderTakingProfit,
        }
    }

    /// What the rule looks at.
    pub fn subject_type(self) -> SubjectType {
        match self {
            Rule::LargeDebit | Rule::SavingsOpportunity => SubjectType::Account,
            Rule::PriceDip | Rule::PriceSurge => SubjectType::Instrument,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the customer is advised to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    ReviewTransaction,
    MoveToSavings,
    ConsiderBuy,
    ConsiderTakingProfit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReviewTransaction => "review_transaction",
            Action::MoveToSavings => "move_to_savings",
            Action::ConsiderBuy => "consider_buy",
            Action::ConsiderTakingProfit => "consider_taking_profit",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One explainable recommendation: the rule, its inputs and a reason a person can read.
///
/// Readers are tolerant: fields added by a later version are ignored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Recommendation {
    /// Derived from the rule and the triggering event's id: a replay yields the same id.
    pub recommendation_id: EventId,
    pub subject_type: SubjectType,
    /// The account id or the instrument symbol; the partition key of the recommendation.
    pub subject_id: String,
    pub rule: Rule,
    pub action: Action,
    /// Why, in one sentence.
    pub reason: String,
    /// The figures the rule compared, as decimal strings (`"1523.40"`).
    pub inputs: BTreeMap<String, String>,
    /// The `event_id` of the event that triggered the rule.
    pub triggered_by: EventId,
}

impl Recommendation {
    /// The topic recommendations are published to.
    pub const TOPIC: Topic = Topic::CaperaRecommendations;

    /// The id of the recommendation `rule` issues for the event `triggered_by`.
    pub fn derive_id(rule: Rule, triggered_by: &EventId) -> EventId {
        EventId::derived(&format!("{RECOMMENDER_SOURCE}/{rule}/{triggered_by}"))
    }

    /// The partition key: the subject, so that one account's or instrument's recommendations
    /// keep their order.
    pub fn key(&self) -> &str {
        &self.subject_id
    }

    /// The `recommendation_issued` event for [`Recommendation::TOPIC`]. `triggered_at` is the
    /// timestamp of the triggering event, so a replay yields the same event; its id is the
    /// recommendation id and its `causation_id` the triggering event.
    pub fn to_event(&self, triggered_at: DateTime<Utc>) -> EventSchema {
        let data = match serde_json::to_value(self) {
            Ok(Value::Object(data)) => data,
            _ => unreachable!("a Recommendation serialises to a JSON object"),
        };
        let mut metadata = Map::new();
        metadata.insert("causation_id".into(), Value::from(self.triggered_by.as_str()));
        EventSchema {
            event_id: Some(self.recommendation_id.clone()),
            event_type: RECOMMENDATION_ISSUED.into(),
            timestamp: Some(triggered_at),
            source: Some(RECOMMENDER_SOURCE.to_owned()),
            version: Some(eventbus::envelope::DEFAULT_VERSION.to_owned()),
            entity_type: "recommendation".to_owned(),
            entity_id: self.recommendation_id.to_string(),
            data,
            metadata,
        }
    }

    /// Reads a recommendation back from its `recommendation_issued` event.
    pub fn from_event(event: &EventSchema) -> Result<Self, serde_json::Error> {
        serde_json::from_value(Value::Object(event.data.clone()))
    }
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {} {}: {}, because {}", self.rule, self.subject_type, self.subject_id, self.action, self.reason)
    }
}

/// Why an event could not be evaluated, or a configuration was refused. Every event error names
/// the event and the field; the recommender's state is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecommenderError {
    /// The event has no `event_id`, from which recommendation ids derive. Publish through the bus
    /// (it fills one in) or have the producer set one.
    #[error("{event_type} event for `{entity_id}` has no event_id")]
    MissingEventId { event_type: EventType, entity_id: String },
    /// A field the rules need is absent from `data`, or empty. The event is malformed: let the
    /// consumer dead-letter it and fix the producer.
    #[error("event {event_id} ({event_type}): field `{field}` is missing")]
    MissingField { event_id: EventId, event_type: EventType, field: &'static str },
    /// A field is not a JSON string. Amounts, prices and currencies travel as strings
    /// (`"100.50"`, `"USD"`); dead-letter the event and fix the producer.
    #[error("event {event_id} ({event_type}): field `{field}` must be a string, found {found}")]
    NotAString { event_id: EventId, event_type: EventType, field: &'static str, found: String },
    /// An amount, price or currency does not parse (not a decimal, an unknown currency, more
    /// decimals than the currency has). Dead-letter the event and fix the producer.
    #[error("event {event_id} ({event_type}): field `{field}` is invalid: {source}")]
    InvalidMoney {
        event_id: EventId,
        event_type: EventType,
        field: &'static str,
        #[source]
        source: MoneyError,
    },
    /// An amount or price is zero or negative; the direction of a transaction is in `direction`.
    /// Dead-letter the event and fix the producer.
    #[error("event {event_id} ({event_type}): field `{field}` must be positive, found {value}")]
    NotPositive { event_id: EventId, event_type: EventType, field: &'static str, value: Decimal },
    /// `direction` is neither `debit` nor `credit`. Dead-letter the event and fix the producer.
    #[error("event {event_id} ({event_type}): field `direction` is `{found}`, expected `debit` or `credit`")]
    InvalidDirection { event_id: EventId, event_type: EventType, found: String },
    /// The account or instrument was seen before in another currency. Rules never mix
    /// currencies: dead-letter the event and check the producer.
    #[error(
        "event {event_id} ({event_type}): field `currency` is {found}, but {subject_type} `{subject_id}` is in {expected}"
    )]
    CurrencyChanged {
        event_id: EventId,
        event_type: EventType,
        subject_type: SubjectType,
        subject_id: String,
        expected: Currency,
        found: Currency,
    },
    /// The figures of this key no longer fit in a decimal (about 7.9e28). Only absurd amounts get
    /// there: dead-letter the event.
    #[error("event {event_id} ({event_type}): field `{field}` overflows the rule arithmetic")]
    Overflow { event_id: EventId, event_type: EventType, field: &'static str },
    /// A configuration value is out of range. Fix the configuration.
    #[error("invalid recommender config: `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: &'static str },
}

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
        Ok(())
    }
}

/// The event ids a key has seen lately, to drop redeliveries (delivery is at least once).
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

/// What the rules remember of one account.
#[derive(Clone, Debug)]
struct AccountState {
    currency: Currency,
    /// Transactions seen.
    transactions: u64,
    debit_count: u64,
    debit_sum: Decimal,
    /// Signed amounts (credits positive) of the last `savings_window` transactions.
    recent: VecDeque<Decimal>,
    /// The value of `transactions` when `savings_opportunity` last fired.
    savings_fired_at: Option<u64>,
    seen: RecentIds,
}

/// What the rules remember of one instrument.
#[derive(Clone, Debug)]
struct InstrumentState {
    currency: Currency,
    /// Updates seen.
    updates: u64,
    /// The last `sma_window` prices.
    prices: VecDeque<Decimal>,
    dip_fired_at: Option<u64>,
    surge_fired_at: Option<u64>,
    seen: RecentIds,
}

/// Whether a rule with `cooldown` that last fired at `fired_at` may fire at `now`.
fn cooled_down(fired_at: Option<u64>, now: u64, cooldown: u64) -> bool {
    fired_at.is_none_or(|at| now - at >= cooldown)
}

/// A parsed bank transaction.
struct Transaction<'a> {
    account_id: &'a str,
    credit: bool,
    amount: Money,
    merchant: &'a str,
}

/// A parsed price update.
struct PriceUpdate<'a> {
    symbol: &'a str,
    price: Decimal,
    currency: Currency,
}

/// The event being evaluated, for error messages.
struct Ctx<'a> {
    event: &'a EventSchema,
    id: EventId,
}

impl Ctx<'_> {
    fn field(&self, field: &'static str) -> Result<&str, RecommenderError> {
        match self.event.data.get(field) {
            None | Some(Value::Null) => Err(self.missing(field)),
            Some(Value::String(s)) if s.trim().is_empty() => Err(self.missing(field)),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(RecommenderError::NotAString {
                event_id: self.id.clone(),
                event_type: self.event.event_type.clone(),
                field,
                found: other.to_string(),
            }),
        }
    }

    fn missing(&self, field: &'static str) -> RecommenderError {
        RecommenderError::MissingField { event_id: self.id.clone(), event_type: self.event.event_type.clone(), field }
    }

    fn money_error(&self, field: &'static str, source: MoneyError) -> RecommenderError {
        RecommenderError::InvalidMoney {
            event_id: self.id.clone(),
            event_type: self.event.event_type.clone(),
            field,
            source,
        }
    }

    fn currency(&self) -> Result<Currency, RecommenderError> {
        self.field("currency")?.parse().map_err(|e| self.money_error("currency", e))
    }

    fn positive(&self, field: &'static str, value: Decimal) -> Result<Decimal, RecommenderError> {
        if value > Decimal::ZERO {
            Ok(value)
        } else {
            Err(RecommenderError::NotPositive {
                event_id: self.id.clone(),
                event_type: self.event.event_type.clone(),
                field,
                value,
            })
        }
    }

    /// A checked arithmetic result, or `Overflow` blamed on `field`.
    fn checked(&self, field: &'static str, value: Option<Decimal>) -> Result<Decimal, RecommenderError> {
        value.ok_or_else(|| RecommenderError::Overflow {
            event_id: self.id.clone(),
            event_type: self.event.event_type.clone(),
            field,
        })
    }

    fn currency_changed(
        &self,
        subject_type: SubjectType,
        subject_id: &str,
        expected: Currency,
        found: Currency,
    ) -> RecommenderError {
        RecommenderError::CurrencyChanged {
            event_id: self.id.clone(),
            event_type: self.event.event_type.clone(),
            subject_type,
            subject_id: subject_id.to_owned(),
            expected,
            found,
        }
    }

    fn transaction(&self) -> Result<Transaction<'_>, RecommenderError> {
        let account_id = self.field("account_id")?;
        let credit = match self.field("direction")? {
            "credit" => true,
            "debit" => false,
            other => {
                return Err(RecommenderError::InvalidDirection {
                    event_id: self.id.clone(),
                    event_type: self.event.event_type.clone(),
                    found: other.to_owned(),
                });
            }
        };
        let currency = self.currency()?;
        let amount = parse_amount(self.field("amount")?)
            .and_then(|amount| Money::new(amount, currency))
            .map_err(|e| self.money_error("amount", e))?;
        self.positive("amount", amount.amount())?;
        let merchant = self.event.data.get("merchant").and_then(Value::as_str).unwrap_or("");
        Ok(Transaction { account_id, credit, amount, merchant })
    }

    fn price_update(&self) -> Result<PriceUpdate<'_>, RecommenderError> {
        let symbol = self.field("symbol")?;
        let currency = self.currency()?;
        // A price may have more decimals than the currency (sub-penny quotes); it is not an amount.
        let price = parse_amount(self.field("price")?).map_err(|e| self.money_error("price", e))?;
        let price = self.positive("price", price)?;
        Ok(PriceUpdate { symbol, price, currency })
    }

    fn recommend(
        &self,
        rule: Rule,
        subject_id: &str,
        reason: String,
        inputs: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Recommendation {
        let recommendation = Recommendation {
            recommendation_id: Recommendation::derive_id(rule, &self.id),
            subject_type: rule.subject_type(),
            subject_id: subject_id.to_owned(),
            rule,
            action: rule.action(),
            reason,
            inputs: inputs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            triggered_by: self.id.clone(),
        };
        tracing::debug!(
            rule = %rule,
            subject = %recommendation.subject_id,
            triggered_by = %self.id,
            "Recommendation issued"
        );
        recommendation
    }
}

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
    use chrono::TimeZone;
    use serde_json::json;

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
