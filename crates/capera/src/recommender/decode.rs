//! Reads a bank transaction or a price update out of an event's `data`, naming the event and
//! the field in every error.

use eventbus::money::parse_amount;
use eventbus::{Currency, EventId, EventSchema, Money, MoneyError};
use rust_decimal::Decimal;
use serde_json::Value;

use super::error::RecommenderError;
use super::vocabulary::{Recommendation, Rule, SubjectType};

/// A parsed bank transaction.
pub(super) struct Transaction<'a> {
    pub(super) account_id: &'a str,
    pub(super) credit: bool,
    pub(super) amount: Money,
    pub(super) merchant: &'a str,
}

/// A parsed price update.
pub(super) struct PriceUpdate<'a> {
    pub(super) symbol: &'a str,
    pub(super) price: Decimal,
    pub(super) currency: Currency,
}

/// The event being evaluated, for error messages.
pub(super) struct Ctx<'a> {
    pub(super) event: &'a EventSchema,
    pub(super) id: EventId,
}

impl Ctx<'_> {
    pub(super) fn field(&self, field: &'static str) -> Result<&str, RecommenderError> {
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

    pub(super) fn missing(&self, field: &'static str) -> RecommenderError {
        RecommenderError::MissingField { event_id: self.id.clone(), event_type: self.event.event_type.clone(), field }
    }

    pub(super) fn money_error(&self, field: &'static str, source: MoneyError) -> RecommenderError {
        RecommenderError::InvalidMoney {
            event_id: self.id.clone(),
            event_type: self.event.event_type.clone(),
            field,
            source,
        }
    }

    pub(super) fn currency(&self) -> Result<Currency, RecommenderError> {
        self.field("currency")?.parse().map_err(|e| self.money_error("currency", e))
    }

    pub(super) fn positive(&self, field: &'static str, value: Decimal) -> Result<Decimal, RecommenderError> {
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
    pub(super) fn checked(&self, field: &'static str, value: Option<Decimal>) -> Result<Decimal, RecommenderError> {
        value.ok_or_else(|| RecommenderError::Overflow {
            event_id: self.id.clone(),
            event_type: self.event.event_type.clone(),
            field,
        })
    }

    pub(super) fn currency_changed(
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

    pub(super) fn transaction(&self) -> Result<Transaction<'_>, RecommenderError> {
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

    pub(super) fn price_update(&self) -> Result<PriceUpdate<'_>, RecommenderError> {
        let symbol = self.field("symbol")?;
        let currency = self.currency()?;
        // A price may have more decimals than the currency (sub-penny quotes); it is not an amount.
        let price = parse_amount(self.field("price")?).map_err(|e| self.money_error("price", e))?;
        let price = self.positive("price", price)?;
        Ok(PriceUpdate { symbol, price, currency })
    }

    pub(super) fn recommend(
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
