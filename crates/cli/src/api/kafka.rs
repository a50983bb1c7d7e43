//! The seed's `/kafka/*` endpoints, on every backend.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use eventbus::{BackendKind, BusError, EventSchema, TopicName};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, ApiState, JsonBody};

/// The seed's name of each backend's bus class.
fn type_name(backend: BackendKind) -> &'static str {
    match backend {
        BackendKind::Memory => "InMemoryEventBus",
        BackendKind::Log => "LogEventBus",
        BackendKind::Embedded => "EmbeddedEventBus",
        BackendKind::Kafka => "KafkaEventBus",
    }
}

/// `GET /kafka/status`: the seed's shape, plus the backend and the Kafka outbox backlog.
pub async fn status(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let status = state.backend().bus.status().await?;
    Ok(Json(json!({
        "status": if status.running { "running" } else { "stopped" },
        "type": type_name(status.backend),
        "backend": status.backend,
        "total_events": status.total_events,
        "events_by_topic": status.events_by_topic,
        "outbox_backlog": status.outbox_backlog,
    })))
}

/// The seed's test event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    topic: String,
    event_type: String,
    entity_type: String,
    entity_id: String,
    #[serde(default)]
    data: Map<String, Value>,
}

/// `POST /kafka/publish-test`: publishes one test event, in dev mode only. A topic that does not
/// exist is created with 3 partitions.
pub async fn publish_test(
    State(state): State<ApiState>,
    JsonBody(test): JsonBody<TestEvent>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !state.0.config.dev_mode {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "dev_mode_only",
            "publish-test works only in dev mode (`eventbus serve --dev`)",
        ));
    }
    let topic = TopicName::new(&test.topic).map_err(|e| ApiError::bad_request("invalid_topic", e.to_string()))?;
    let event_type = test
        .event_type
        .parse()
        .map_err(|e: eventbus::envelope::EnvelopeError| ApiError::bad_request("invalid_event_type", e.to_string()))?;
    if test.entity_type.is_empty() || test.entity_id.is_empty() || test.entity_id.len() > 256 {
        return Err(ApiError::bad_request("invalid_entity", "entity_type and entity_id must be 1 to 256 characters"));
    }
    let mut event = EventSchema::new("test_event", test.entity_type, test.entity_id, test.data);
    event.event_type = event_type;
    let id = event.event_id.clone();
    let published = match state.backend().bus.publish(&topic, event.clone(), None).await {
        Err(BusError::UnknownTopic(_)) => {
            state.backend().bus.create_topic(&topic, 3).await?;
            state.backend().bus.publish(&topic, event, None).await?
        }
        other => other?,
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "status": "published",
            "topic": topic,
            "event_id": id,
            "partition": published.partition,
            "offset": published.offset,
        })),
    ))
}
