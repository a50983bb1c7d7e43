//! `POST /kafka/config`: switches the bus at runtime, in the seed's request shape:
//! `{"bus_type": "kafka", "bootstrap_servers": "localhost:9092", "client_id": "nexum"}`.
//!
//! The switch is safe: the new bus is opened first (a broker that cannot be reached changes
//! nothing); then the service drains (what is committed is published on the old bus, handlers
//! finish their message), stops, and starts again on the new bus, where the relay publishes
//! whatever was still in the outbox. The change is written to the config file, so a restart
//! keeps it. A bus that loses acknowledged commands on a crash (memory, log) is refused unless
//! the service runs in development mode, and a switch to one says that it lowers durability.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use eventbus::BackendKind;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{ApiError, ApiState, JsonBody};

/// The seed's request.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BusChange {
    pub bus_type: String,
    pub bootstrap_servers: Option<String>,
    pub client_id: Option<String>,
}

/// A checked change of bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub backend: BackendKind,
    pub brokers: Option<String>,
    pub client_id: Option<String>,
}

/// A switch to carry out, and where to send its result.
pub struct Switch {
    pub target: Target,
    pub done: oneshot::Sender<Result<Value, ApiError>>,
}

impl BusChange {
    fn check(self) -> Result<Target, ApiError> {
        let backend = match self.bus_type.to_ascii_lowercase().as_str() {
            "memory" | "in_memory" | "inmemory" | "inmemoryeventbus" => BackendKind::Memory,
            "log" | "logging" | "logeventbus" => BackendKind::Log,
            "embedded" | "embeddedeventbus" => BackendKind::Embedded,
            "kafka" | "kafkaeventbus" => BackendKind::Kafka,
            other => {
                return Err(ApiError::bad_request(
                    "invalid_bus_type",
                    format!("unknown bus_type `{}`: expected memory, log, embedded or kafka", clip(other)),
                ));
            }
        };
        let valid = |text: &str| {
            (1..=1000).contains(&text.len()) && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:,[]".contains(c))
        };
        if let Some(brokers) = &self.bootstrap_servers
            && !valid(brokers)
        {
            return Err(ApiError::bad_request("invalid_bootstrap_servers", "expected host:port[,host:port]"));
        }
        if let Some(client_id) = &self.client_id
            && !valid(client_id)
        {
            return Err(ApiError::bad_request("invalid_client_id", "expected 1 to 1000 of [A-Za-z0-9._-]"));
        }
        if backend == BackendKind::Kafka && self.bootstrap_servers.is_none() {
            return Err(ApiError::bad_request(
                "invalid_bootstrap_servers",
                "a switch to kafka needs bootstrap_servers",
            ));
        }
        Ok(Target { backend, brokers: self.bootstrap_servers, client_id: self.client_id })
    }
}

fn clip(text: &str) -> String {
    text.chars().take(50).collect()
}

pub async fn change(
    State(state): State<ApiState>,
    JsonBody(change): JsonBody<BusChange>,
) -> Result<Json<Value>, ApiError> {
    let target = change.check()?;
    if !target.backend.is_durable() && !state.0.config.dev_mode {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_durable",
            format!(
                "the {} bus loses acknowledged commands if the process dies; the service switches to it only in development mode (serve --dev)",
                target.backend
            ),
        ));
    }
    let Some(switch) = &state.0.switch else {
        return Err(ApiError::new(StatusCode::CONFLICT, "switch_unavailable", "this server cannot switch its bus"));
    };
    let (done, result) = oneshot::channel();
    switch
        .send(Switch { target, done })
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is stopping"))?;
    let answer = result
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is stopping"))??;
    Ok(Json(answer))
}
