//! Events and helpers for the recommender's unit tests.

use chrono::{DateTime, TimeZone, Utc};
use eventbus::EventSchema;
use serde_json::{Map, Value, json};

use super::{Recommendation, Recommender, Rule};
use crate::prices::MARKET_PRICE_UPDATED;
use crate::transactions::BANK_TRANSACTION_RECORDED;

pub(super) fn at(n: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(n.into())
}

pub(super) fn event(event_type: &str, id: &str, data: Value) -> EventSchema {
    let Value::Object(data) = data else { panic!("data must be an object") };
    EventSchema {
        event_id: Some(id.parse().unwrap()),
        event_type: event_type.into(),
        timestamp: Some(at(0)),
        source: None,
        version: None,
        entity_type: String::new(),
        entity_id: String::new(),
        data: data.into(),
        metadata: Map::new().into(),
    }
}

/// A history builder for one account.
pub(super) struct Account {
    id: &'static str,
    n: u32,
}

impl Account {
    pub(super) fn new(id: &'static str) -> Self {
        Self { id, n: 0 }
    }

    pub(super) fn txn(&mut self, direction: &str, amount: &str) -> EventSchema {
        self.n += 1;
        event(
            BANK_TRANSACTION_RECORDED,
            &format!("{}-{}", self.id, self.n),
            json!({"account_id": self.id, "direction": direction, "amount": amount, "currency": "USD",
                   "merchant": "Kroger", "category": "groceries", "description": "Card payment at Kroger"}),
        )
    }
}

pub(super) fn price(symbol: &str, n: u32, price: &str) -> EventSchema {
    event(
        MARKET_PRICE_UPDATED,
        &format!("{symbol}-{n}"),
        json!({"symbol": symbol, "price": price, "currency": "USD", "previous_price": price, "change_pct": "0.00"}),
    )
}

pub(super) fn feed(rec: &mut Recommender, events: &[EventSchema]) -> Vec<Recommendation> {
    events.iter().flat_map(|e| rec.on_event(e).unwrap()).collect()
}

pub(super) fn rules(recs: &[Recommendation]) -> Vec<Rule> {
    recs.iter().map(|r| r.rule).collect()
}

/// `n` prices of 100.00 for `symbol`.
pub(super) fn flat_history(symbol: &str, n: u32) -> Vec<EventSchema> {
    (1..=n).map(|i| price(symbol, i, "100.00")).collect()
}
