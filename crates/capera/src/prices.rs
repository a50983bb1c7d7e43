//! The market-price producer: a deterministic feed of instrument prices that follow geometric
//! Brownian motion, one trading day per update.

use chrono::{DateTime, SubsecRound, Utc};
use eventbus::{Currency, EventId, EventSchema, Topic};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

/// The `event_type` of a price update.
pub const MARKET_PRICE_UPDATED: &str = "market_price_updated";
/// The `source` of the simulated market feed.
pub const MARKET_FEED_SOURCE: &str = "capera.market-feed";

/// Trading days per year: one update of an instrument is one trading day.
const TRADING_DAYS_PER_YEAR: f64 = 252.0;
/// Decimal places kept of the random-walk factor before it multiplies a price.
const FACTOR_DP: u32 = 8;

/// Why an instrument or a simulator was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimulatorError {
    /// A market feed needs at least one instrument. Pass one, or use [`Instrument::catalog`].
    #[error("a market feed needs at least one instrument")]
    NoInstruments,
    /// The instrument's parameters cannot drive a random walk; the reason says which one.
    #[error("instrument `{symbol}`: {reason}")]
    InvalidInstrument {
        /// The symbol of the instrument.
        symbol: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A tradable instrument and the parameters of its random walk.
#[derive(Clone, Debug, PartialEq)]
pub struct Instrument {
    symbol: String,
    name: String,
    currency: Currency,
    start_price: Decimal,
    annual_drift: f64,
    annual_volatility: f64,
}

impl Instrument {
    /// An instrument starting at `start_price` (rounded to the currency's minor units), drifting by
    /// `annual_drift` a year (0.08 is 8%) with `annual_volatility` (0.25 is 25%).
    pub fn new(
        symbol: impl Into<String>,
        name: impl Into<String>,
        currency: Currency,
        start_price: Decimal,
        annual_drift: f64,
        annual_volatility: f64,
    ) -> Result<Self, SimulatorError> {
        let symbol = symbol.into();
        let invalid = |reason| Err(SimulatorError::InvalidInstrument { symbol: symbol.clone(), reason });
        if symbol.is_empty() {
            return invalid("the symbol is empty");
        }
        let start_price = start_price.round_dp(currency.minor_units());
        if start_price <= Decimal::ZERO {
            return invalid("the start price must be positive");
        }
        if !annual_drift.is_finite() || annual_drift.abs() > 10.0 {
            return invalid("the annual drift must be a finite rate between -10 and 10");
        }
        if !annual_volatility.is_finite() || !(0.0..=10.0).contains(&annual_volatility) {
            return invalid("the annual volatility must be a finite rate between 0 and 10");
        }
        Ok(Self { symbol, name: name.into(), currency, start_price, annual_drift, annual_volatility })
    }

    /// A handful of instruments with realistic prices and volatilities: three large US stocks, a
    /// world equity ETF, a bond ETF and a gold ETF.
    pub fn catalog() -> Vec<Instrument> {
        let usd: Currency = "USD".parse().expect("USD is an ISO 4217 currency");
        let gbp: Currency = "GBP".parse().expect("GBP is an ISO 4217 currency");
        [
            ("AAPL", "Apple Inc.", usd, Decimal::new(18_950, 2), 0.08, 0.28),
            ("MSFT", "Microsoft Corp.", usd, Decimal::new(41_520, 2), 0.08, 0.25),
            ("NVDA", "NVIDIA Corp.", usd, Decimal::new(12_140, 2), 0.15, 0.50),
            ("VWRL", "Vanguard FTSE All-World UCITS ETF", gbp, Decimal::new(11_240, 2), 0.06, 0.15),
            ("BND", "Vanguard Total Bond Market ETF", usd, Decimal::new(7_230, 2), 0.02, 0.06),
            ("GLD", "SPDR Gold Shares", usd, Decimal::new(21_560, 2), 0.04, 0.15),
        ]
        .into_iter()
        .map(|(symbol, name, currency, price, drift, vol)| {
            Instrument::new(symbol, name, currency, price, drift, vol).expect("catalog instruments are valid")
        })
        .collect()
    }

    /// The ticker symbol, such as `AAPL`: the partition key of its price updates.
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// The instrument's name, such as `Apple Inc.`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The currency its prices are in.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The price before the first update, rounded to the currency's minor units.
    pub fn start_price(&self) -> Decimal {
        self.start_price
    }
}

#[derive(Clone, Debug)]
struct Quote {
    instrument: Instrument,
    price: Decimal,
}

/// A deterministic feed of market prices: the same seed gives the same events, ids included.
///
/// Each update picks an instrument at random and moves its price by one trading day of
/// geometric Brownian motion. Events are `market_price_updated` on [`Topic::MarketPriceUpdates`],
/// keyed by symbol. Prices are decimal strings in the instrument's currency, always positive.
#[derive(Clone, Debug)]
pub struct MarketPriceSimulator {
    seed: u64,
    rng: StdRng,
    quotes: Vec<Quote>,
    sequence: u64,
}

impl MarketPriceSimulator {
    /// The topic the events belong on.
    pub const TOPIC: Topic = Topic::MarketPriceUpdates;

    /// A feed over the first `instruments` instruments of [`Instrument::catalog`] (at least one,
    /// at most all of them).
    pub fn new(seed: u64, instruments: usize) -> Self {
        let mut catalog = Instrument::catalog();
        catalog.truncate(instruments.max(1));
        Self::with_instruments(seed, catalog).expect("the catalog is not empty")
    }

    /// A feed over the given instruments.
    pub fn with_instruments(seed: u64, instruments: Vec<Instrument>) -> Result<Self, SimulatorError> {
        if instruments.is_empty() {
            return Err(SimulatorError::NoInstruments);
        }
        let quotes = instruments.into_iter().map(|i| Quote { price: i.start_price, instrument: i }).collect();
        Ok(Self { seed, rng: StdRng::seed_from_u64(seed), quotes, sequence: 0 })
    }

    /// The seed the feed was made with: the same seed gives the same events.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The instruments of the feed, in order.
    pub fn instruments(&self) -> impl Iterator<Item = &Instrument> {
        self.quotes.iter().map(|q| &q.instrument)
    }

    /// The current price of each instrument.
    pub fn prices(&self) -> impl Iterator<Item = (&str, Decimal)> {
        self.quotes.iter().map(|q| (q.instrument.symbol(), q.price))
    }

    /// The next price update, at `at`: the partition key (the symbol) and the event.
    pub fn next_event(&mut self, at: DateTime<Utc>) -> (String, EventSchema) {
        self.sequence += 1;
        let index = self.rng.random_range(0..self.quotes.len());
        let z = standard_normal(&mut self.rng);
        let quote = &mut self.quotes[index];
        let previous = quote.price;
        quote.price = next_price(previous, &quote.instrument, z);
        let price = quote.price;
        let instrument = &quote.instrument;

        // `price` and `previous` are positive, so the division is safe and the result small.
        let change_pct = ((price - previous) / previous * Decimal::ONE_HUNDRED).round_dp(2);
        let mut data = Map::new();
        data.insert("symbol".into(), Value::from(instrument.symbol()));
        data.insert("price".into(), Value::from(price.to_string()));
        data.insert("currency".into(), Value::from(instrument.currency.code()));
        data.insert("previous_price".into(), Value::from(previous.to_string()));
        data.insert("change_pct".into(), Value::from(format!("{change_pct:.2}")));

        let symbol = instrument.symbol().to_owned();
        let event = EventSchema {
            event_id: Some(EventId::derived(&format!("{MARKET_FEED_SOURCE}/{}/{}", self.seed, self.sequence))),
            event_type: MARKET_PRICE_UPDATED.into(),
            timestamp: Some(at.trunc_subsecs(6)),
            source: Some(MARKET_FEED_SOURCE.to_owned()),
            version: Some(eventbus::envelope::DEFAULT_VERSION.to_owned()),
            entity_type: "instrument".to_owned(),
            entity_id: symbol.clone(),
            data: data.into(),
            metadata: Map::new().into(),
        };
        (symbol, event)
    }
}

/// One trading day of geometric Brownian motion:
/// `S' = S * exp((mu - sigma^2 / 2) dt + sigma sqrt(dt) z)`.
///
/// The factor is computed in `f64`, rounded to [`FACTOR_DP`] places and only then applied to the
/// decimal price, which is rounded to the currency's minor units and never drops below one minor
/// unit.
fn next_price(price: Decimal, instrument: &Instrument, z: f64) -> Decimal {
    let dt = 1.0 / TRADING_DAYS_PER_YEAR;
    let sigma = instrument.annual_volatility;
    let exponent = (instrument.annual_drift - sigma * sigma / 2.0) * dt + sigma * dt.sqrt() * z;
    // |exponent| is small for any plausible z; clamp so that exp stays finite and convertible.
    let factor = exponent.clamp(-10.0, 10.0).exp();
    let factor = Decimal::try_from(factor).unwrap_or(Decimal::ONE).round_dp(FACTOR_DP);
    let minor_units = instrument.currency.minor_units();
    let floor = Decimal::new(1, minor_units);
    let mut next = price.checked_mul(factor).map_or(price, |p| p.round_dp(minor_units)).max(floor);
    next.rescale(minor_units);
    next
}

/// A standard normal draw by the Box–Muller transform.
fn standard_normal(rng: &mut StdRng) -> f64 {
    // `random` is in [0, 1); 1 - u is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use std::collections::HashMap;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 6, 14, 30, 0).unwrap()
    }

    fn run(seed: u64, n: usize) -> Vec<(String, EventSchema)> {
        let mut sim = MarketPriceSimulator::new(seed, 6);
        (0..n).map(|i| sim.next_event(start() + Duration::seconds(i as i64))).collect()
    }

    fn decimal(event: &EventSchema, field: &str) -> Decimal {
        eventbus::money::parse_amount(event.data[field].as_str().unwrap()).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_prices_and_another_seed_others() {
        assert_eq!(run(11, 1_000), run(11, 1_000));
        assert_ne!(run(11, 1_000), run(12, 1_000));
    }

    #[test]
    fn every_update_is_a_positive_price_that_follows_the_previous_one() {
        // Given a long feed over the whole catalog
        let events = run(5, 6_000);
        let symbols: Vec<String> = Instrument::catalog().iter().map(|i| i.symbol().to_owned()).collect();
        let mut last: HashMap<String, Decimal> =
            Instrument::catalog().iter().map(|i| (i.symbol().to_owned(), i.start_price())).collect();
        for (key, event) in &events {
            // Then each event is a complete market_price_updated keyed by its symbol
            assert_eq!(event.event_type.as_str(), MARKET_PRICE_UPDATED);
            assert_eq!(event.entity_type, "instrument");
            assert_eq!(&event.entity_id, key);
            assert_eq!(event.data["symbol"], key.as_str());
            assert_eq!(event.source(), MARKET_FEED_SOURCE);
            assert!(symbols.contains(key));
            // And the price is positive money in the instrument's currency
            let price = decimal(event, "price");
            assert!(price > Decimal::ZERO);
            eventbus::Money::parse(event.data["price"].as_str().unwrap(), event.data["currency"].as_str().unwrap())
                .unwrap();
            // And previous_price is the symbol's last price, change_pct the move between them
            let previous = decimal(event, "previous_price");
            assert_eq!(previous, last[key]);
            let change = decimal(event, "change_pct");
            assert_eq!(change, ((price - previous) / previous * Decimal::ONE_HUNDRED).round_dp(2));
            assert_eq!(change.scale(), 2);
            last.insert(key.clone(), price);
        }
        // And every instrument was updated
        let updated: std::collections::HashSet<_> = events.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(updated.len(), symbols.len());
    }

    #[test]
    fn daily_moves_have_the_instruments_volatility() {
        // Given 6000 updates of AAPL alone (28% a year, about 1.76% a day)
        let aapl = Instrument::catalog().remove(0);
        let mut sim = MarketPriceSimulator::with_instruments(9, vec![aapl]).unwrap();
        let moves: Vec<f64> = (0..6_000)
            .map(|_| {
                let (_, e) = sim.next_event(start());
                e.data["change_pct"].as_str().unwrap().parse::<f64>().unwrap()
            })
            .collect();
        // Then the standard deviation of daily moves is close to it
        let mean = moves.iter().sum::<f64>() / moves.len() as f64;
        let sd = (moves.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / moves.len() as f64).sqrt();
        assert!((1.6..1.95).contains(&sd), "daily sd {sd}%");
    }

    #[test]
    fn a_price_never_drops_to_zero() {
        // Given a penny stock with absurd volatility
        let usd = "USD".parse().unwrap();
        let junk = Instrument::new("JUNK", "Junk Corp.", usd, Decimal::new(2, 2), -5.0, 10.0).unwrap();
        let mut sim = MarketPriceSimulator::with_instruments(1, vec![junk]).unwrap();
        // Then its price stays at one cent or more
        for _ in 0..2_000 {
            let (_, event) = sim.next_event(start());
            assert!(decimal(&event, "price") >= Decimal::new(1, 2));
        }
    }

    #[test]
    fn invalid_instruments_are_refused() {
        let usd = "USD".parse().unwrap();
        assert!(Instrument::new("X", "X", usd, Decimal::ZERO, 0.0, 0.1).is_err());
        assert!(Instrument::new("", "X", usd, Decimal::ONE, 0.0, 0.1).is_err());
        assert!(Instrument::new("X", "X", usd, Decimal::ONE, f64::NAN, 0.1).is_err());
        assert!(Instrument::new("X", "X", usd, Decimal::ONE, 0.0, -0.1).is_err());
        assert_eq!(MarketPriceSimulator::with_instruments(1, vec![]).unwrap_err(), SimulatorError::NoInstruments);
        assert_eq!(MarketPriceSimulator::new(1, 0).instruments().count(), 1);
        assert_eq!(MarketPriceSimulator::new(1, 100).instruments().count(), 6);
    }
}
