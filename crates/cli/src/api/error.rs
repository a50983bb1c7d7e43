//! One JSON shape for every error of the API:
//! `{"error": {"status": 404, "code": "unknown_account", "message": "..."}}`, with a few more
//! fields where an error has something a client can act on (`required_role` of a refusal for a
//! role too low). Messages say what the client can fix; internal details (store and broker
//! errors) are logged, never returned.

use std::time::Duration;

use axum::Json;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eventbus::{BusError, ScheduleError};
use http_body_util::BodyExt;
use nexum::BankError;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After`, in whole seconds: when the client may try again.
    pub retry_after: Option<Duration>,
    /// More fields of the `error` object, beside `status`, `code` and `message`.
    pub details: Vec<(&'static str, Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, details: Vec::new() }
    }

    /// This error with the field `key` (not `status`, `code` or `message`) in its `error` object.
    pub fn with_detail(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        debug_assert!(!["status", "code", "message"].contains(&key), "`{key}` is a field of every error");
        self.details.push((key, value.into()));
        self
    }

    /// 429: the service is too far behind to take more work now; try again after `retry_after`.
    pub fn overloaded(what: &str, retry_after: Duration) -> Self {
        let seconds = retry_after.as_secs().max(1);
        let message = format!("{what} is behind; try again in {seconds} s");
        Self {
            retry_after: Some(Duration::from_secs(seconds)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message)
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure of a component behind the API: logged in full, answered without detail.
    pub fn unavailable(what: &str, error: &dyn std::error::Error) -> Self {
        tracing::error!(%error, "{what} failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("{what} is unavailable; try again later"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"status": self.status.as_u16(), "code": self.code, "message": self.message});
        if let Value::Object(fields) = &mut error {
            for (key, value) in self.details {
                fields.entry(key.to_owned()).or_insert(value);
            }
        }
        let body = json!({"error": error});
        let mut response = (self.status, Json(body)).into_response();
        if self.code == "unavailable" {
            // For `disk::explain`, which names the disk's fault if that is the cause.
            response.extensions_mut().insert(super::disk::Unavailable);
        }
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(after.as_secs()));
        }
        response
    }
}

impl From<BusError> for ApiError {
    fn from(error: BusError) -> Self {
        match &error {
            BusError::UnknownTopic(topic) => Self::not_found("unknown_topic", format!("unknown topic `{topic}`")),
            BusError::Schedule(ScheduleError::Full { .. }) => Self {
                retry_after: Some(Duration::from_secs(60)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "schedule_full", error.to_string())
            },
            BusError::Schedule(_) => Self::bad_request("invalid_deliver_at", error.to_string()),
            BusError::UnknownPartition { .. } => Self::bad_request("unknown_partition", error.to_string()),
            BusError::InvalidGroup(_) => Self::bad_request("invalid_group", error.to_string()),
            BusError::InvalidPosition(_) => Self::bad_request("invalid_position", error.to_string()),
            BusError::InvalidTopic(_) => Self::bad_request("invalid_topic", error.to_string()),
            BusError::Envelope(_) => Self::bad_request("invalid_event", error.to_string()),
            BusError::MessageTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "message_too_large", error.to_string())
            }
            _ => Self::unavailable("the event bus", &error),
        }
    }
}

impl From<BankError> for ApiError {
    fn from(error: BankError) -> Self {
        if error.is_transient() || matches!(error, BankError::Corrupt { .. } | BankError::Schema(_)) {
            return Self::unavailable("the event store", &error);
        }
        let status = match &error {
            BankError::UnknownAccount(_)
            | BankError::UnknownCustomer(_)
            | BankError::UnknownLoan(_)
            | BankError::UnknownCase(_) => StatusCode::NOT_FOUND,
            BankError::AlreadyExists { .. } | BankError::DuplicateCommand(_) => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, error.code(), error.to_string())
    }
}

/// The longest request target (path and query) accepted, in bytes; longer is a 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Puts every error into the one JSON shape: the answers of the framework itself (a query
/// string or path that does not parse, 405 with its `Allow` header, 415) come as plain text or
/// empty, and leave here as `{"error": {...}}` with their status and headers kept. Also refuses
/// a request target longer than [`MAX_URI_BYTES`] with a 414.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let target = uri.path().len() + uri.query().map_or(0, |query| query.len() + 1);
    if target > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The framework's texts are short and say what was wrong with the request; nothing internal.
    let text = match http_body_util::Limited::new(body, 2048).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        _ if status.is_server_error() => "internal",
        _ => "invalid_request",
    };
    let message = match (text.is_empty(), status) {
        (false, _) => text.chars().take(300).collect(),
        (true, StatusCode::METHOD_NOT_ALLOWED) => {
            let allowed = parts.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default();
            format!("this path takes only {allowed}")
        }
        (true, _) => status.canonical_reason().unwrap_or("the request failed").to_owned(),
    };
    let answer = ApiError::new(status, code, message).into_response();
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, answer.into_body())
}
