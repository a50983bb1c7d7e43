//! The dashboard at `/`: one page, its script and its style sheet, embedded in the binary, so it
//! works offline and needs no build step.
//!
//! The page and its assets are public: they hold no data. The script asks for the API token and
//! reads everything through the protected endpoints with it. Every answer carries a strict
//! Content-Security-Policy (only this origin; no inline script or style, no frames, no plugins)
//! and `X-Content-Type-Options: nosniff`, since the page shows customer data that events carry.

use axum::extract::Path;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Only this origin, for everything; no inline script or style, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");

/// The assets under `/assets/`: name, content type, content.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/dashboard/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../assets/dashboard/app.css")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../assets/dashboard/favicon.svg")),
];

/// `GET /`: the page.
pub async fn index() -> Response {
    embedded("text/html; charset=utf-8", INDEX_HTML.as_bytes())
}

/// `GET /assets/{file}`: a script, style sheet or icon of the page; a JSON 404 for any other name.
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::not_found("unknown_asset", "no such dashboard asset"))?;
    Ok(embedded(content_type, body))
}

fn embedded(content_type: &'static str, body: &'static [u8]) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        // Revalidate, so that the page of an upgraded binary is never mixed with old assets.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}
