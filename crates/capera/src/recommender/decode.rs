//! Reads a bank transaction or a price update out of an event's `data`, naming the event and
//! the field in every error.

use eventbus::money::parse_amount;
use eventbus::{Currency, EventId, EventSchema, Money, MoneyError};
use rust_decimal::Decimal;
use serde_json::Value;

use super::error::{EventProblem, RecommenderError};
use super::vocabulary::SubjectType;

/// A parsed bank transaction.
pub(super) struct Transaction<'a> {
    pub(super) account_id: &'a str,
    pub(super) credit: bool,
    pub(super) amount: Money,
    pub(super) merchant: &'a str,
}

impl Transaction<'_> {
    /// The amount, positive for a credit and negative for a debit.
    pub(super) fn signed_amount(&self) -> Decimal {
        if self.credit { self.amount.amount() } else { -self.amount.amount() }
    }
}

/// A parsed price update.
pub(super) struct PriceUpdate<'a> {
    pub(super) symbol: &'a str,
    pub(super) price: Decimal,
    pub(super) currency: Currency,
}

/// The event being decoded and evaluated: every error names it.
pub(super) struct Ctx<'a> {
    pub(super) event: &'a EventSchema,
    pub(super) id: EventId,
}

impl Ctx<'_> {
    /// The error `problem` of this event.
    pub(super) fn error(&self, problem: EventProblem) -> RecommenderError {
        let (event_id, event_type) = (self.id.clone(), self.event.event_type.clone());
        RecommenderError::Event { event_id, event_type, problem: Box::new(problem) }
    }

    /// The string `field` of `data`; missing if absent, null or blank.
    pub(super) fn field(&self, field: &'static str) -> Result<&str, RecommenderError> {
        match self.event.data.get(field) {
            None | Some(Value::Null) => Err(self.error(EventProblem::MissingField { field })),
            Some(Value::String(s)) if s.trim().is_empty() => Err(self.error(EventProblem::MissingField { field })),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.error(EventProblem::NotAString { field, found: other.to_string() })),
        }
    }

    fn invalid_money(&self, field: &'static str, source: MoneyError) -> RecommenderError {
        self.error(EventProblem::InvalidMoney { field, source })
    }

    /// The `currency` of `data`.
    pub(super) fn currency(&self) -> Result<Currency, RecommenderError> {
        self.field("currency")?.parse().map_err(|e| self.invalid_money("currency", e))
    }

    /// `value` of `field` if it is above zero.
    pub(super) fn positive(&self, field: &'static str, value: Decimal) -> Result<Decimal, RecommenderError> {
        if value > Decimal::ZERO { Ok(value) } else { Err(self.error(EventProblem::NotPositive { field, value })) }
    }

    /// A checked arithmetic result, or `Overflow` blamed on `field`.
    pub(super) fn checked(&self, field: &'static str, value: Option<Decimal>) -> Result<Decimal, RecommenderError> {
        value.ok_or_else(|| self.error(EventProblem::Overflow { field }))
    }

    /// The error of an event in `found` about a subject seen in `expected` before.
    pub(super) fn currency_changed(
        &self,
        subject_type: SubjectType,
        subject_id: &str,
        expected: Currency,
        found: Currency,
    ) -> RecommenderError {
        let subject_id = subject_id.to_owned();
        self.error(EventProblem::CurrencyChanged { subject_type, subject_id, expected, found })
    }

    /// The event as a bank transaction (`bank_transaction_recorded`).
    pub(super) fn transaction(&self) -> Result<Transaction<'_>, RecommenderError> {
        let account_id = self.field("account_id")?;
        let credit = match self.field("direction")? {
            "credit" => true,
            "debit" => false,
            other => return Err(self.error(EventProblem::InvalidDirection { found: other.to_owned() })),
        };
        let currency = self.currency()?;
        let amount = parse_amount(self.field("amount")?)
            .and_then(|amount| Money::new(amount, currency))
            .map_err(|e| self.invalid_money("amount", e))?;
        self.positive("amount", amount.amount())?;
        let merchant = self.event.data.get("merchant").and_then(Value::as_str).unwrap_or("");
        Ok(Transaction { account_id, credit, amount, merchant })
    }

    /// The event as a price update (`market_price_updated`).
    pub(super) fn price_update(&self) -> Result<PriceUpdate<'_>, RecommenderError> {
        let symbol = self.field("symbol")?;
        let currency = self.currency()?;
        // A price may have more decimals than the currency (sub-penny quotes); it is not an amount.
        let price = parse_amount(self.field("price")?).map_err(|e| self.invalid_money("price", e))?;
        let price = self.positive("price", price)?;
        Ok(PriceUpdate { symbol, price, currency })
    }
}

#[cfg(test)]
mod tests {
    use eventbus::EventSchema;
    use serde_json::{Map, Value, json};

    use crate::recommender::fixtures::{Account, price};
    use crate::recommender::{EventProblem, Recommender, RecommenderError};

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
        assert!(matches!(
            rec.on_event(&bad_price).unwrap_err().problem(),
            Some(EventProblem::NotPositive { field: "price", .. })
        ));
        bad_price.data.insert("price".into(), json!("1e3"));
        assert!(matches!(
            rec.on_event(&bad_price).unwrap_err().problem(),
            Some(EventProblem::InvalidMoney { field: "price", .. })
        ));
        bad_price.data.remove("symbol");
        assert!(matches!(
            rec.on_event(&bad_price).unwrap_err().problem(),
            Some(EventProblem::MissingField { field: "symbol", .. })
        ));
        let mut no_id = price("AAPL", 1, "10.00");
        no_id.event_id = None;
        assert!(matches!(rec.on_event(&no_id), Err(RecommenderError::MissingEventId { .. })));
        assert_eq!(rec.instruments_tracked(), 0);
    }
}
