//! Why an event could not be evaluated, or a configuration was refused.

use eventbus::{Currency, EventId, EventType, MoneyError};
use rust_decimal::Decimal;

use super::vocabulary::SubjectType;

/// Why an event could not be evaluated, or a configuration was refused. An event error leaves the
/// recommender's state as it was, so the same event can be evaluated again once it is fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecommenderError {
    /// The event has no `event_id`, from which recommendation ids derive. Publish through the bus
    /// (it fills one in) or have the producer set one.
    #[error("{event_type} event for `{entity_id}` has no event_id")]
    MissingEventId {
        /// The type of the event.
        event_type: EventType,
        /// The `entity_id` of the event, to find it.
        entity_id: String,
    },
    /// The event cannot be evaluated; `problem` names the field and says why. No retry fixes
    /// it: let the consumer dead-letter the event, and fix the producer.
    #[error("event {event_id} ({event_type}): {problem}")]
    Event {
        /// The id of the event.
        event_id: EventId,
        /// The type of the event.
        event_type: EventType,
        /// What is wrong with it; [`RecommenderError::problem`] reads it. (Boxed: it is large,
        /// and a `Result` carries room for its error on every call.)
        #[source]
        problem: Box<EventProblem>,
    },
    /// A configuration value is out of range. Fix the configuration.
    #[error("invalid recommender config: `{field}` {reason}")]
    InvalidConfig {
        /// The name of the field in [`RecommenderConfig`](crate::RecommenderConfig).
        field: &'static str,
        /// What the value must be.
        reason: &'static str,
    },
}

impl RecommenderError {
    /// What is wrong with the event, for an [`Event`](Self::Event) error.
    pub fn problem(&self) -> Option<&EventProblem> {
        match self {
            Self::Event { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What is wrong with an event the recommender was given, in [`RecommenderError::Event`]. Each
/// names the field of the event's `data` that is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventProblem {
    /// A field the rules need is absent from `data`, or empty. The producer must set it.
    #[error("field `{field}` is missing")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field is not a JSON string. Amounts, prices and currencies travel as strings
    /// (`"100.50"`, `"USD"`); the producer must send them so.
    #[error("field `{field}` must be a string, found {found}")]
    NotAString {
        /// The field.
        field: &'static str,
        /// The JSON found instead.
        found: String,
    },
    /// An amount, price or currency does not parse (not a decimal, an unknown currency, more
    /// decimals than the currency has); `source` says which. The producer must send a valid one.
    #[error("field `{field}` is invalid: {source}")]
    InvalidMoney {
        /// The field.
        field: &'static str,
        /// Why the value does not parse.
        #[source]
        source: MoneyError,
    },
    /// An amount or price is zero or negative; the direction of a transaction is in `direction`.
    /// The producer must send the magnitude.
    #[error("field `{field}` must be positive, found {value}")]
    NotPositive {
        /// The field.
        field: &'static str,
        /// The value found.
        value: Decimal,
    },
    /// `direction` is neither `debit` nor `credit`. The producer must send one of those.
    #[error("field `direction` is `{found}`, expected `debit` or `credit`")]
    InvalidDirection {
        /// The direction found.
        found: String,
    },
    /// The account or instrument was seen before in another currency. Rules never mix
    /// currencies: check the producer.
    #[error("field `currency` is {found}, but {subject_type} `{subject_id}` is in {expected}")]
    CurrencyChanged {
        /// Whether the subject is an account or an instrument.
        subject_type: SubjectType,
        /// The account id or the symbol.
        subject_id: String,
        /// The currency the subject was seen in before.
        expected: Currency,
        /// The currency of this event.
        found: Currency,
    },
    /// The figures of the subject no longer fit in a decimal (about 7.9e28) with this event's.
    /// Only absurd amounts get there; the subject's later events may overflow too.
    #[error("field `{field}` overflows the rule arithmetic")]
    Overflow {
        /// The field whose value overflowed.
        field: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use serde_json::json;

    use crate::recommender::Recommender;
    use crate::recommender::fixtures::Account;

    #[test]
    fn an_invalid_amount_names_the_event_once_and_keeps_the_money_error_as_its_source() {
        // Given a transaction whose amount has more decimals than its currency
        let mut event = Account::new("acc_0013").txn("debit", "10.00");
        event.data.insert("amount".into(), json!("10.001"));
        // When it is evaluated
        let error = Recommender::new().on_event(&event).unwrap_err();
        // Then the message names the event, then the field
        let text = error.to_string();
        assert!(
            text.starts_with("event acc_0013-1 (bank_transaction_recorded): field `amount` is invalid: "),
            "{text}"
        );
        assert_eq!(text.matches("acc_0013-1").count(), 1, "{text}");
        // And the chain goes on to the problem, then to the money error
        let problem = error.source().expect("the problem is the source");
        assert!(problem.to_string().starts_with("field `amount` is invalid"), "{problem}");
        let money = problem.source().expect("the money error is the problem's source");
        assert!(money.downcast_ref::<eventbus::MoneyError>().is_some(), "{money:?}");
    }
}
