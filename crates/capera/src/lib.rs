//! Capera on the event bus: the producers of bank transactions and market prices, the consumer
//! that turns them into explainable investment and savings recommendations, and [`service`],
//! which runs that consumer on a bus.
//!
//! ```text
//! BankTransactionSimulator ──> bank.transactions ────┐
//!                                                    ├──> Recommender ──> capera.recommendations
//! MarketPriceSimulator ──────> market.price.updates ─┘
//! ```
//!
//! The simulators are deterministic for a seed, ids included, so a demo can be rerun exactly.
//! The recommender is deterministic under replay: every rule reads the history of one account or
//! one instrument only, never the clock, so any delivery order that keeps each key's order gives
//! the same recommendations with the same ids.
//!
//! # Layout
//!
//! - `transactions.rs`: [`BankTransactionSimulator`], the bank feed (`bank_transaction_recorded`,
//!   keyed by account id), with its [`Merchant`]s and [`Category`]s.
//! - `prices.rs`: [`MarketPriceSimulator`], the market feed (`market_price_updated`, keyed by
//!   symbol): geometric Brownian motion over a catalog of [`Instrument`]s.
//! - `recommender/`: the recommendation consumer, without I/O.
//!   - `mod.rs`: the [`Recommender`], which decodes each event, runs the registered rules over
//!     the state of its account or instrument, and records the event.
//!   - `vocabulary.rs`: [`SubjectType`], [`Rule`], [`Action`] and the [`Recommendation`] it
//!     publishes as `recommendation_issued`.
//!   - `decode.rs`: reads a bank transaction or a price update out of an event's `data`.
//!   - `state.rs`: what is remembered of each account and instrument.
//!   - `rules/`: a file per rule (`large_debit.rs`, `savings_opportunity.rs`, `price_dip.rs`,
//!     `price_surge.rs`), what the price rules share (`moving_average.rs`), and in `mod.rs` the
//!     trait a rule implements and the lists the recommender runs them from.
//!   - `config.rs`: [`RecommenderConfig`], the thresholds.
//!   - `error.rs`: [`RecommenderError`] and [`EventProblem`].
//!   - `fixtures.rs`: events for the unit tests (test builds only).
//! - `service.rs`: [`service`], the recommender on a bus: its consumer group and subscription,
//!   the [`service::Worker`] that publishes recommendations, the state rebuild of a restarted
//!   worker, and the background consumer `eventbus serve` runs.
//!
//! # Example
//!
//! ```
//! use capera::{BankTransactionSimulator, MarketPriceSimulator, Recommender};
//! use chrono::{Duration, TimeZone, Utc};
//!
//! let mut bank = BankTransactionSimulator::new(7, 20);
//! let mut market = MarketPriceSimulator::new(7, 6);
//! let mut recommender = Recommender::new();
//! let start = Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0).unwrap();
//! let mut issued = Vec::new();
//! for minute in 0..2_000 {
//!     let at = start + Duration::minutes(minute);
//!     for (_key, event) in [bank.next_event(at), market.next_event(at)] {
//!         for recommendation in recommender.on_event(&event)? {
//!             // Publish `recommendation.to_event(at)` to `Recommendation::TOPIC`, keyed by
//!             // `recommendation.key()`, as `service::Worker::handle` does.
//!             issued.push(recommendation.to_string());
//!         }
//!     }
//! }
//! assert!(!issued.is_empty());
//! # Ok::<(), capera::RecommenderError>(())
//! ```
//!
//! # Out of scope
//!
//! The simulators and the recommender do no I/O. [`service`] subscribes and publishes, but
//! opening and configuring a bus, command-line flags, printing and HTTP belong to the caller (the
//! `eventbus` command). The simulated amounts and prices are plausible, not calibrated to any real market or bank.

mod prices;
mod recommender;
pub mod service;
mod transactions;

pub use prices::{Instrument, MARKET_FEED_SOURCE, MARKET_PRICE_UPDATED, MarketPriceSimulator, SimulatorError};
pub use recommender::{
    Action, EventProblem, RECOMMENDATION_ISSUED, RECOMMENDER_SOURCE, Recommendation, Recommender, RecommenderConfig,
    RecommenderError, Rule, SubjectType,
};
pub use transactions::{
    BANK_FEED_SOURCE, BANK_TRANSACTION_RECORDED, BankTransactionSimulator, Category, MERCHANTS, Merchant,
};
