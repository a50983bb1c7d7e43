//! Sagas: long-running processes that react to banking events by sending commands, as the
//! seed's `LoanApplicationSaga` does.
//!
//! - [`LoanApplicationSaga`]: a customer whose KYC is verified is offered a pre-approved loan:
//!   originate, then disburse; a disbursement that fails is compensated by cancelling the loan.
//! - [`CollectionsSaga`]: a missed installment opens a collections case, an open case escalates
//!   after a configurable time, and a payment resolves it; it wakes on timers it schedules on the
//!   bus (`metadata.deliver_at`).
//!
//! Both are idempotent. Every command they send has an id derived from the saga and the step,
//! so sending it twice (after a crash, or on a redelivered event) has one effect: the command
//! handler records each command once. Their state is persisted: the loan application's in its
//! workflow stream, the collections saga's in the loan and case aggregates it reads. Time comes
//! from a [`Clock`](crate::clock::Clock), so tests drive them deterministically.

mod collections;
mod loan_application;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventbus::{BusError, EventBus, EventId, EventSchema, Topic};
use serde_json::{Map, Value};

use crate::ids::CommandId;

pub use collections::{
    CollectionsConfig, CollectionsError, CollectionsSaga, GROUP as COLLECTIONS_GROUP,
    TIMER_ROLE as COLLECTIONS_TIMER_ROLE, TIMER_TOPIC as COLLECTIONS_TIMER_TOPIC, Tick,
    timer_topic as collections_timer_topic,
};
pub use loan_application::{GROUP as LOAN_APPLICATION_GROUP, LoanApplicationSaga, LoanOffer};

/// A command a saga sends, in the seed's format.
struct Outgoing {
    topic: Topic,
    id: CommandId,
    /// What the command is about, e.g. the loan id.
    entity_id: String,
    /// The saga instance: everything the command causes carries it as `correlation_id`.
    correlation_id: String,
    /// `data`, with its `action`.
    data: Value,
}

impl Outgoing {
    async fn send(self, bus: &dyn EventBus, saga: &str, at: DateTime<Utc>) -> Result<(), BusError> {
        let (event_type, entity_type) = match self.topic {
            Topic::CommandsTransactions => ("transaction_command", "transaction"),
            Topic::CommandsCustomers => ("customer_command", "customer"),
            _ => ("loan_command", "loan"),
        };
        let Value::Object(data) = self.data else { unreachable!("command data is built as an object") };
        let mut event = EventSchema::new(event_type, entity_type, self.entity_id.clone(), Map::from_iter(data))
            .with_id(self.id.as_str().parse::<EventId>().expect("a command id is a valid event id"))
            .with_metadata("correlation_id", self.correlation_id)
            .with_metadata("user_id", saga);
        event.timestamp = Some(at);
        tracing::debug!(saga, command_id = %self.id, topic = %self.topic, "Saga sends a command");
        bus.publish(&self.topic.name(), event, Some(&self.entity_id)).await.map(drop)
    }
}

/// The `correlation_id` of an event, if any.
fn correlation(event: &EventSchema) -> Option<&str> {
    event.metadata.get("correlation_id").and_then(Value::as_str)
}

/// The `causation_id` of an event, if any.
fn causation(event: &EventSchema) -> Option<&str> {
    event.metadata.get("causation_id").and_then(Value::as_str)
}

/// Shared handles of a saga.
#[derive(Clone)]
struct Parts {
    bank: Arc<crate::Bank>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn crate::clock::Clock>,
}
