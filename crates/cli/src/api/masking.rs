//! Personal data masked for viewers: names, emails and phones in every JSON answer (as
//! [`eventbus::envelope::masked`] masks them in logs), unless the answer is marked
//! [`NoPersonalData`]. The live stream masks each of its events itself ([`for_caller`]).

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use http_body_util::BodyExt;
use serde_json::Value;

use super::{ApiError, Caller};

/// Marks an answer that holds no personal data but has fields named like it (a topic's `name`),
/// so that viewers get it as it is. A handler returns it beside its body: `(NoPersonalData, Json(..))`.
#[derive(Clone, Copy, Debug)]
pub struct NoPersonalData;

impl IntoResponseParts for NoPersonalData {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Self::Error> {
        parts.extensions_mut().insert(self);
        Ok(parts)
    }
}

/// `value` as `caller` may see it: masked for a viewer, in clear for the others.
pub fn for_caller(caller: &Caller, value: Value) -> Value {
    if caller.sees_personal_data() { value } else { eventbus::envelope::masked(&value) }
}

/// `response` with its JSON body masked, or each line of its JSON lines (an export). Any other
/// body passes as it is: the live stream masks its events itself, and the framework's own errors
/// carry no stored data. A body that cannot be read or parsed is never passed on unmasked: it
/// becomes a 500.
pub async fn mask_json(response: Response) -> Response {
    let content_type = response.headers().get(CONTENT_TYPE).map(|value| value.as_bytes());
    let is_json = content_type.is_some_and(|value| value.starts_with(b"application/json"));
    let is_lines = content_type.is_some_and(|value| value.starts_with(b"application/x-ndjson"));
    if !(is_json || is_lines) || response.extensions().get::<NoPersonalData>().is_some() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let masked = match body.collect().await {
        Ok(collected) if is_lines => mask_lines(&collected.to_bytes()),
        Ok(collected) => serde_json::from_slice::<Value>(&collected.to_bytes())
            .map(|value| eventbus::envelope::masked(&value).to_string())
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let masked = match masked {
        Ok(masked) => masked,
        Err(error) => {
            tracing::error!(%error, "Cannot read a JSON answer to mask it for a viewer");
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the answer cannot be prepared")
                .into_response();
        }
    };
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(masked))
}

/// JSON lines, each masked.
fn mask_lines(bytes: &[u8]) -> Result<String, String> {
    let mut masked = String::with_capacity(bytes.len());
    for line in bytes.split(|b| *b == b'\n').filter(|line| !line.trim_ascii().is_empty()) {
        let value = serde_json::from_slice::<Value>(line).map_err(|e| e.to_string())?;
        masked.push_str(&eventbus::envelope::masked(&value).to_string());
        masked.push('\n');
    }
    Ok(masked)
}
