//! `POST /commands/{transactions|customers|loans}`: a command in, its id out, and, with
//! `?wait=true`, its outcome.
//!
//! The body is the command's `data` in the seed's format (`{"action": "deposit", ...}`). It is
//! checked before it is published, so a malformed command is a 400 at once. An
//! `Idempotency-Key` header makes the command id derived from the key: a client that retries
//! after a timeout cannot move money twice. The outcome is the command's audit record, which
//! every command gets (`accepted`, `failed`, `rejected` or `unchanged`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use eventbus::{EventBus, EventId, EventSchema, GroupId, Message, StartPosition, Subscription, Topic, handler_fn};
use nexum::ids::CommandId;
use nexum::store::StreamId;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use super::{ApiError, ApiState, JsonBody};

/// The longest a request may wait for its outcome.
const MAX_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// Requests waiting for the audit record of their command.
#[derive(Clone, Default)]
pub struct Outcomes(Arc<Mutex<HashMap<String, oneshot::Sender<EventSchema>>>>);

impl Outcomes {
    /// Follows the audit trail from now on, in a group of this process.
    pub async fn start(bus: &dyn EventBus) -> Result<Self, eventbus::BusError> {
        let outcomes = Self::default();
        let waiting = outcomes.clone();
        let group = GroupId::new(format!("eventbus-api-outcomes-{}", EventId::new()))?;
        let subscription = Subscription::new(Topic::AuditEvents.name(), group).from(StartPosition::Latest);
        bus.subscribe(
            subscription,
            handler_fn(move |message: Message| {
                let waiting = waiting.clone();
                async move {
                    if let Some(cause) = message.event.metadata.get("causation_id").and_then(Value::as_str)
                        && let Some(waiter) = waiting.lock().remove(cause)
                    {
                        let _ = waiter.send((*message.event).clone());
                    }
                    Ok(())
                }
            }),
        )
        .await?;
        Ok(outcomes)
    }

    fn register(&self, id: &CommandId) -> oneshot::Receiver<EventSchema> {
        let (sender, receiver) = oneshot::channel();
        self.lock().insert(id.to_string(), sender);
        receiver
    }

    fn forget(&self, id: &CommandId) {
        self.lock().remove(id.as_str());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<EventSchema>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// Wait for the outcome before answering.
    #[serde(default)]
    wait: bool,
    /// How long to wait, at most 30000; 5000 by default.
    timeout_ms: Option<u64>,
}

pub async fn submit(
    State(state): State<ApiState>,
    Path(kind): Path<String>,
    Query(wait): Query<Wait>,
    headers: HeaderMap,
    JsonBody(data): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let backend = state.backend();
    let (topic, event_type, entity_type) = match kind.as_str() {
        "transactions" => (Topic::CommandsTransactions, "transaction_command", "transaction"),
        "customers" => (Topic::CommandsCustomers, "customer_command", "customer"),
        "loans" => (Topic::CommandsLoans, "loan_command", "loan"),
        _ => {
            return Err(ApiError::not_found(
                "unknown_command_topic",
                "commands go to /commands/transactions, /commands/customers or /commands/loans",
            ));
        }
    };
    let id = match header(&headers, "idempotency-key")? {
        Some(key) => CommandId::derived(&format!("api/{kind}/{key}")),
        None => CommandId::new(),
    };
    let correlation = header(&headers, "x-correlation-id")?.unwrap_or_else(|| id.to_string());
    // Commands about one entity keep their order: they share a partition.
    let key = ["account_id", "from_account_id", "customer_id", "loan_id", "case_id"]
        .iter()
        .find_map(|field| data.get(*field).and_then(Value::as_str))
        .unwrap_or(id.as_str())
        .to_owned();
    let event = EventSchema::new(event_type, entity_type, key.clone(), data)
        .with_id(id.as_str().parse::<EventId>().expect("a command id is an event id"))
        .with_metadata("correlation_id", correlation);
    let topic = topic.name();
    nexum::commands::parse(&topic, &event).map_err(|error| ApiError::bad_request(error.code(), error.to_string()))?;
    // A command the handler cannot get to soon is refused, not queued without end.
    if let Some(after) = backend.lag.retry_after() {
        return Err(ApiError::overloaded("the command handler", after));
    }

    let submitted = std::time::Instant::now();
    let outcome = wait.wait.then(|| backend.outcomes.register(&id));
    if let Err(error) = backend.bus.publish(&topic, event, Some(&key)).await {
        backend.outcomes.forget(&id);
        return Err(error.into());
    }
    let Some(outcome) = outcome else {
        return Ok((StatusCode::ACCEPTED, Json(json!({"command_id": id, "status": "submitted"}))).into_response());
    };
    let limit = wait.timeout_ms.map_or(DEFAULT_WAIT, Duration::from_millis).min(MAX_WAIT);
    match tokio::time::timeout(limit, outcome).await {
        Ok(Ok(audit)) => {
            state.0.metrics.command_outcome.observe(submitted.elapsed());
            Ok(Json(answer(&state, &id, &audit).await?).into_response())
        }
        _ => {
            backend.outcomes.forget(&id);
            Ok((StatusCode::ACCEPTED, Json(json!({"command_id": id, "status": "pending"}))).into_response())
        }
    }
}

/// The outcome of a command from its audit record, with the reason if it was rejected.
async fn answer(state: &ApiState, id: &CommandId, audit: &EventSchema) -> Result<Value, ApiError> {
    let field = |name: &str| audit.data.get(name).cloned().unwrap_or(Value::Null);
    let mut answer = json!({
        "command_id": id,
        "status": field("outcome"),
        "entity_type": field("entity_type"),
        "entity_id": field("entity_id"),
        "event_ids": field("event_ids"),
        "event_types": field("event_types"),
    });
    if audit.data.get("outcome").and_then(Value::as_str) == Some("rejected") {
        let backend = state.backend();
        let store = backend.service.bank.store();
        let recorded = store
            .read(&StreamId::of("command", id), 1)
            .await
            .map_err(|error| ApiError::unavailable("the event store", &error))?;
        if let Some(rejection) = recorded.iter().find(|r| r.event.event_type.as_str() == "command_rejected") {
            answer["error_code"] = rejection.event.data.get("error_code").cloned().unwrap_or(Value::Null);
            answer["reason"] = rejection.event.data.get("reason").cloned().unwrap_or(Value::Null);
        }
    }
    Ok(answer)
}

/// A header of 1 to 200 printable ASCII characters, if present.
fn header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    match value.to_str() {
        Ok(text) if (1..=200).contains(&text.len()) && text.chars().all(|c| c.is_ascii_graphic()) => {
            Ok(Some(text.to_owned()))
        }
        _ => {
            Err(ApiError::bad_request("invalid_header", format!("{name} must be 1 to 200 printable ASCII characters")))
        }
    }
}
