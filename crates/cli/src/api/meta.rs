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

/// Ready: the bus runs and the event store answers. Also says which of the roles that one
/// instance holds at a time this one holds.
pub async fn ready(State(state): State<ApiState>) -> impl IntoResponse {
    let backend = state.backend();
    let bus = backend.bus.is_running();
    let store = backend.service.bank.store().outbox_len().await;
    if let Err(error) = &store {
        tracing::warn!(%error, "Readiness: the event store does not answer");
    }
    let ready = bus && store.is_ok();
    let roles: serde_json::Map<String, Value> =
        backend.service.roles.iter().map(|role| (role.role().to_owned(), Value::Bool(role.is_held()))).collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"bus_running": bus, "event_store": store.is_ok(), "outbox_backlog": store.ok()},
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
