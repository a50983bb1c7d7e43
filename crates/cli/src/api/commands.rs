//! `POST /commands/{transactions|customers|loans}`: a command in, its id out, and, with
//! `?wait=true`, its outcome.
//!
//! The body is the command's `data` in the seed's format (`{"action": "deposit", ...}`). It is
//! checked before it is published, so a malformed command is a 400 at once. The outcome is the
//! command's audit record, which every command gets (`accepted`, `failed`, `rejected` or
//! `unchanged`); with `?wait=true`, a rejected command is a 422 with the bank's code and reason.
//! `GET /commands/{id}` reads the outcome from the event store.
//!
//! An `Idempotency-Key` header (IETF draft `httpapi-idempotency-key-header`) makes the command
//! id derived from the key, so a client that retries after a timeout cannot move money twice:
//! - a retry of a command that ran answers at once with its stored outcome, marked
//!   `Idempotent-Replayed: true`;
//! - the same key with another body is a 422 (`idempotency_key_reused`): the body's fingerprint
//!   is kept in the audit record's metadata;
//! - concurrent requests with one key each get the outcome; the command runs once.
//!
//! A W3C `traceparent` header (with its `tracestate`) goes into the command's metadata: the
//! spans of its publishing and handling join the caller's trace.
//! An `X-Deliver-At` header (RFC 3339) schedules the command: it is checked now, held by the bus
//! and carried out at that time (a standing order, a value-dated payment). The answer is a 202
//! `scheduled` with the time, at once, even with `?wait=true`; the outcome is read later with
//! `GET /commands/{id}`. A time that does not parse, more than a minute past or further ahead
//! than `[schedule] max_ahead_days` is a 400 `invalid_deliver_at`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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
/// The shortest time a request is given, whatever `timeout_ms` says: enough to publish.
const MIN_WAIT: Duration = Duration::from_millis(100);

/// Requests waiting for the audit record of their command: several may wait for one command
/// (concurrent retries under one idempotency key), and each gets the record.
#[derive(Clone, Default)]
pub struct Outcomes(Arc<Mutex<HashMap<String, Vec<oneshot::Sender<EventSchema>>>>>);

impl Outcomes {
    /// Follows the audit trail from now on, in a group of this process.
    pub async fn start(bus: &dyn EventBus) -> Result<Self, eventbus::BusError> {
        let outcomes = Self::default();
        let waiting = outcomes.clone();
        let group = GroupId::new(format!("eventbus-api-outcomes-{}", EventId::new()))?;
        let subscription = Subscription::new(Topic::AuditEvents.name(), group).from(StartPosition::Latest).watch_only();
        bus.subscribe(
            subscription,
            handler_fn(move |message: Message| {
                let waiting = waiting.clone();
                async move {
                    if let Some(cause) = message.event.metadata.get("causation_id").and_then(Value::as_str)
                        && let Some(waiters) = waiting.lock().remove(cause)
                    {
                        for waiter in waiters {
                            let _ = waiter.send((*message.event).clone());
                        }
                    }
                    Ok(())
                }
            }),
        )
        .await?;
        Ok(outcomes)
    }

    /// Waits for the audit record of command `id`. Dropping the waiter and calling
    /// [`forget`](Self::forget) gives up.
    fn register(&self, id: &CommandId) -> oneshot::Receiver<EventSchema> {
        let (sender, receiver) = oneshot::channel();
        self.lock().entry(id.to_string()).or_default().push(sender);
        receiver
    }

    /// Forgets the waiters of `id` that gave up (dropped their receiver); the others keep waiting.
    fn forget(&self, id: &CommandId) {
        let mut waiting = self.lock();
        if let Some(waiters) = waiting.get_mut(id.as_str()) {
            waiters.retain(|waiter| !waiter.is_closed());
            if waiters.is_empty() {
                waiting.remove(id.as_str());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<EventSchema>>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// Wait for the outcome before answering.
    #[serde(default)]
    wait: bool,
    /// How long to wait, 100 to 30000 (values outside are moved into that range); 5000 by default.
    timeout_ms: Option<u64>,
}

/// The header that marks an answer replayed from a command that ran before, as Stripe names it.
const REPLAYED: &str = "idempotent-replayed";

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
    let idempotency_key = header(&headers, "idempotency-key")?;
    let id = match &idempotency_key {
        Some(key) => CommandId::derived(&format!("api/{kind}/{key}")),
        None => CommandId::new(),
    };
    let digest = idempotency_key.is_some().then(|| nexum::commands::digest(&data));
    let deliver_at = header(&headers, "x-deliver-at")?;
    let correlation = header(&headers, "x-correlation-id")?.unwrap_or_else(|| id.to_string());
    // Commands about one entity keep their order: they share a partition.
    let key = ["account_id", "from_account_id", "customer_id", "loan_id", "case_id"]
        .iter()
        .find_map(|field| data.get(*field).and_then(Value::as_str))
        .unwrap_or(id.as_str())
        .to_owned();
    let mut event = EventSchema::new(event_type, entity_type, key.clone(), data)
        .with_id(id.as_str().parse::<EventId>().expect("a command id is an event id"))
        .with_metadata("correlation_id", correlation);
    if let Some((traceparent, tracestate)) = trace_context(&headers) {
        // The command continues the caller's trace: its `publish` span is a child of it.
        event = event.with_metadata(eventbus::trace::TRACEPARENT, traceparent);
        if let Some(tracestate) = tracestate {
            event = event.with_metadata(eventbus::trace::TRACESTATE, tracestate);
        }
    }
    if let Some(digest) = &digest {
        // The handler keeps it in the audit record, where a later retry compares it.
        event = event.with_metadata(nexum::bank::COMMAND_DIGEST, digest.as_str());
    }
    if let Some(deliver_at) = deliver_at {
        event = event.with_metadata(eventbus::DELIVER_AT, deliver_at);
    }
    let topic = topic.name();
    let command = nexum::commands::parse(&topic, &event)
        .map_err(|error| ApiError::bad_request(error.code(), error.to_string()))?;
    // Values that are wrong whatever the bank's state are refused now, not after the bus.
    command
        .check()
        .map_err(|error| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.code(), error.to_string()))?;

    // The whole request keeps to its timeout: the store and the bus may hang (a frozen disk, a
    // broker that does not answer).
    let limit = wait.timeout_ms.map_or(DEFAULT_WAIT, Duration::from_millis).clamp(MIN_WAIT, MAX_WAIT);
    let deadline = tokio::time::Instant::now() + limit;
    let submitted = std::time::Instant::now();
    // Waiting starts before the look at the store, so an outcome recorded in between is not missed.
    let waiter =
        Waiter { outcomes: &backend.outcomes, id: &id, receiver: wait.wait.then(|| backend.outcomes.register(&id)) };
    if let Some(digest) = &digest
        && let Some(audit) = within(deadline, &id, recorded_outcome(&state, &id)).await??
    {
        // A retry of a command that ran: its stored outcome, at once (IETF Idempotency-Key draft).
        same_body(&audit, digest)?;
        let mut response = outcome_response(&state, &id, &audit, wait.wait).await?;
        response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
        return Ok(response);
    }
    // A command the handler cannot get to soon is refused, not queued without end.
    if let Some(after) = backend.lag.retry_after() {
        return Err(ApiError::overloaded("the command handler", after));
    }
    let published = within(deadline, &id, backend.bus.publish(&topic, event, Some(&key))).await??;
    if let Some(at) = published.scheduled {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let body = json!({"command_id": id, "status": "scheduled", "deliver_at": at});
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    if waiter.receiver.is_none() {
        return Ok((StatusCode::ACCEPTED, Json(json!({"command_id": id, "status": "submitted"}))).into_response());
    }
    match waiter.outcome(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
        Some(audit) => {
            state.0.metrics.command_outcome.observe(submitted.elapsed());
            if let Some(digest) = &digest {
                same_body(&audit, digest)?;
            }
            outcome_response(&state, &id, &audit, true).await
        }
        None => Ok((StatusCode::ACCEPTED, Json(json!({"command_id": id, "status": "pending"}))).into_response()),
    }
}

/// `work`, if it ends by `deadline`; else a 503 that says the command may still be carried out.
async fn within<T>(
    deadline: tokio::time::Instant,
    id: &CommandId,
    work: impl std::future::Future<Output = T>,
) -> Result<T, ApiError> {
    tokio::time::timeout_at(deadline, work).await.map_err(|_| ApiError {
        retry_after: Some(Duration::from_secs(1)),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the store or the bus did not answer in time for command `{id}`; it may still be carried out: \
                 retry with the same Idempotency-Key, or read GET /commands/{id}"
            ),
        )
    })
}

/// A request's wait for the outcome of its command; given up when dropped.
struct Waiter<'a> {
    outcomes: &'a Outcomes,
    id: &'a CommandId,
    receiver: Option<oneshot::Receiver<EventSchema>>,
}

impl Waiter<'_> {
    /// The audit record of the command, if it comes within `limit`.
    async fn outcome(mut self, limit: Duration) -> Option<EventSchema> {
        // The receiver stays in the waiter, so that dropping it forgets the wait.
        let receiver = self.receiver.as_mut()?;
        tokio::time::timeout(limit, receiver).await.ok()?.ok()
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        // Only a request that waited has anything to forget: no lock for the others.
        if let Some(receiver) = self.receiver.take() {
            drop(receiver);
            self.outcomes.forget(self.id);
        }
    }
}

/// `GET /commands/{id}`: the outcome of a command, from the event store.
pub async fn outcome(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id: CommandId =
        id.parse().map_err(|error: nexum::ids::IdError| ApiError::bad_request("invalid_id", error.to_string()))?;
    match recorded_outcome(&state, &id).await? {
        Some(audit) => outcome_response(&state, &id, &audit, false).await,
        None => Err(ApiError::not_found(
            "unknown_command",
            format!("no outcome is recorded for command `{id}`: it is unknown, or not carried out yet"),
        )),
    }
}

/// The audit record of command `id`, if it was carried out (or refused).
async fn recorded_outcome(state: &ApiState, id: &CommandId) -> Result<Option<EventSchema>, ApiError> {
    let backend = state.backend();
    let recorded = backend
        .service
        .bank
        .store()
        .read(&StreamId::of("command", id), 1)
        .await
        .map_err(|error| ApiError::unavailable("the event store", &error))?;
    Ok(recorded.into_iter().map(|r| r.event).find(|event| event.event_type.as_str() == "audit_event_recorded"))
}

/// 422 if the command under this idempotency key had another body.
fn same_body(audit: &EventSchema, digest: &str) -> Result<(), ApiError> {
    match audit.metadata.get(nexum::bank::COMMAND_DIGEST).and_then(Value::as_str) {
        Some(recorded) if recorded != digest => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a request with another body",
        )),
        _ => Ok(()),
    }
}

/// The answer for a command's outcome: 200 with it; with `rejected_is_error`, a command the bank
/// refused is a 422 that carries its code and reason.
async fn outcome_response(
    state: &ApiState,
    id: &CommandId,
    audit: &EventSchema,
    rejected_is_error: bool,
) -> Result<Response, ApiError> {
    let answer = answer(state, id, audit).await?;
    if rejected_is_error && answer["status"] == "rejected" {
        let error = json!({"error": {
            "status": 422,
            "code": answer["error_code"],
            "message": answer["reason"],
            "command_id": id,
        }});
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response());
    }
    Ok(Json(answer).into_response())
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

/// The W3C Trace Context of the request (`traceparent`, and `tracestate` if valid), if its
/// `traceparent` is valid. An invalid one is ignored, as the W3C says: the trace starts here.
fn trace_context(headers: &HeaderMap) -> Option<(&str, Option<&str>)> {
    let traceparent = headers.get("traceparent")?.to_str().ok()?;
    let tracestate = headers.get("tracestate").and_then(|value| value.to_str().ok());
    let parent = eventbus::trace::parse_traceparent(traceparent, tracestate)?;
    let tracestate = tracestate.filter(|_| !parent.trace_state().header().is_empty());
    Some((traceparent, tracestate))
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
