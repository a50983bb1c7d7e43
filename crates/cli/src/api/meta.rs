//! Health, readiness, the OpenAPI document, and the answer to unknown paths.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, ApiState};

/// Alive: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: the bus runs, the command handler has joined its consumer group (commands sent now
/// are carried out), the event store answers, and the data directory's disk takes writes (not
/// full, read-only or frozen; `problems` says which). Also says which of the roles that one
/// instance holds at a time this one holds.
pub async fn ready(State(state): State<ApiState>) -> impl IntoResponse {
    let backend = state.backend();
    let bus = backend.bus.is_running();
    let group = eventbus::GroupId::new(nexum::commands::GROUP).expect("a valid group name");
    // (`None`: a service without a command handler of its own, as in some tests.)
    let handling = backend.bus.joined(&group).await != Some(false);
    let store = tokio::time::timeout(super::disk::PROBE_TIMEOUT, backend.service.bank.store().outbox_len()).await;
    let store = match store {
        Ok(Ok(backlog)) => Ok(backlog),
        Ok(Err(error)) => {
            tracing::warn!(%error, "Readiness: the event store does not answer");
            Err("the event store does not answer".to_owned())
        }
        Err(_) => Err(format!("the event store did not answer within {:?}", super::disk::PROBE_TIMEOUT)),
    };
    let disk = match &state.0.disk {
        Some(disk) => disk.check().await.map_err(|problem| problem.to_string()),
        None => Ok(()),
    };
    if let Err(problem) = &disk {
        tracing::warn!(%problem, "Readiness: the data directory cannot be written");
    }
    let problem = [
        (!bus).then(|| "the bus is not running".to_owned()),
        (bus && !handling).then(|| format!("the command handler has not joined its consumer group `{group}` yet")),
        store.as_ref().err().cloned(),
        disk.as_ref().err().cloned(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let ready = problem.is_empty();
    let roles: serde_json::Map<String, Value> =
        backend.service.roles.iter().map(|role| (role.role().to_owned(), Value::Bool(role.is_held()))).collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"bus_running": bus, "handling_commands": bus && handling, "event_store": store.is_ok(), "outbox_backlog": store.ok(), "disk_writable": disk.is_ok()},
        "problems": problem,
        "instance": backend.service.instance,
        "roles": roles,
    });
    (status, Json(body))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint; see /openapi.json")
}

pub async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}
