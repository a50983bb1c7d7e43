//! The banking domain: each entity's state, rebuilt by folding its stream, and the vocabulary of
//! the events. The decisions that change state live in [`crate::bank`].

mod account;
mod collections;
mod customer;
mod loan;
// The vocabulary is a leaf: the event payloads are written in it, and the aggregates here fold the
// events. `events` imports it from `domain::types`, not through this module, so that `domain` and
// `events` do not import each other.
pub(crate) mod types;

use chrono::{DateTime, Utc};

pub use account::{Account, NEAR_THRESHOLD_BAND, REPORTING_THRESHOLD, STRUCTURING_COUNT, STRUCTURING_WINDOW_HOURS};
pub use collections::CollectionCase;
pub use customer::{Customer, OwnedAccount};
pub use loan::{Loan, LoanStatus, amortisation_schedule, periodic_rate};
pub use types::{
    AccountChange, AccountStatus, AccountType, CaseReason, FailureReason, KycStatus, KycTier, PaymentFrequency,
    TransactionType,
};

use crate::events::NexumEvent;

/// State rebuilt from a stream. Applying never fails: events are facts, validated when they were
/// decided.
pub trait Aggregate: Clone + Send + Sync + Sized + 'static {
    /// The entity kind: the prefix of its stream names.
    const KIND: &'static str;

    /// The state after the stream's first event; `None` if that event does not create one.
    fn create(entity_id: &str, event: &NexumEvent, at: DateTime<Utc>) -> Option<Self>;

    /// The state after a later event. Events of other kinds are ignored.
    fn apply(&mut self, event: &NexumEvent, at: DateTime<Utc>);

    /// Folds a stream; `None` if it is empty or does not start with a creation.
    fn fold<'a>(entity_id: &str, events: impl IntoIterator<Item = (&'a NexumEvent, DateTime<Utc>)>) -> Option<Self> {
        let mut events = events.into_iter();
        let (first, at) = events.next()?;
        let mut state = Self::create(entity_id, first, at)?;
        for (event, at) in events {
            state.apply(event, at);
        }
        Some(state)
    }
}
