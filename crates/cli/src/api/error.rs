//! One JSON shape for every error of the API:
//! `{"error": {"status": 404, "code": "unknown_account", "message": "..."}}`. Messages say what
//! the client can fix; internal details (store and broker errors) are logged, never returned.

use std::time::Duration;

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use eventbus::BusError;
use nexum::BankError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After`, in whole seconds: when the client may try again.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
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
        let body = json!({"error": {"status": self.status.as_u16(), "code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(after.as_secs()));
        }
        response
    }
}

impl From<BusError> for ApiError {
    fn from(error: BusError) -> Self {
        match error {
            BusError::UnknownTopic(topic) => Self::not_found("unknown_topic", format!("unknown topic `{topic}`")),
            other => Self::unavailable("the event bus", &other),
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
