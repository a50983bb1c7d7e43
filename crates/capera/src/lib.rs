//! Capera on the event bus: the producers of bank transactions and market prices, and the
//! consumer that turns them into explainable investment and savings recommendations.
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
//! - `transactions`: [`BankTransactionSimulator`], the bank feed (`bank_transaction_recorded`,
//!   keyed by account id), with its [`Merchant`]s and [`Category`]s.
//! - `prices`: [`MarketPriceSimulator`], the market feed (`market_price_updated`, keyed by
//!   symbol): geometric Brownian motion over a catalog of [`Instrument`]s.
//! - `recommender`: the [`Recommender`], its [`Rule`]s and [`RecommenderConfig`], and the
//!   [`Recommendation`] it publishes as `recommendation_issued`.
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
//!             // `recommendation.key()`.
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
//! Wiring to a bus (subscribing, publishing) belongs to the caller; the types here do no I/O.
//! The simulated amounts and prices are plausible, not calibrated to any real market or bank.

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
