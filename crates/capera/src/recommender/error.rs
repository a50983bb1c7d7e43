//! Why an event could not be evaluated, or a configuration was refused.

use eventbus::{Currency, EventId, EventType, MoneyError};
use rust_decimal::Decimal;

use super::vocabulary::SubjectType;

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
