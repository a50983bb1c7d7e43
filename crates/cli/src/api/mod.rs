//! The HTTP API of `eventbus serve` (axum): the seed's `/kafka/*` endpoints, commands, read
//! models, topics and groups, the live tail, metrics, health, and the OpenAPI document.
//!
//! Safe by default: it listens on loopback; everything but `/health`, `/ready`, `/metrics`,
//! `/openapi.json` and the dashboard's files needs a bearer token (`[[api.tokens]]` by hash, or
//! the plain admin token `EVENTBUS_API_TOKEN`), because read models and events carry personal
//! data; without a configured token those endpoints refuse every request. Each token has a role
//! (viewer < operator < admin, see [`router`]); viewers see personal data masked. Bodies are
//! limited in size, CORS is off, and errors have one JSON shape without internals.

mod auth;
mod backpressure;
mod commands;
pub mod config;
mod console;
mod dashboard;
mod dead_letters;
pub mod disk;
mod error;
mod kafka;
mod masking;
mod meta;
mod metrics;
mod openapi;
mod reads;
pub mod server;
mod tail;
pub mod tokens;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::Method;
use axum::middleware;
use axum::routing::{get, post};
use eventbus::EventBus;
use nexum::service::ServiceView;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

pub use auth::Caller;
pub use error::ApiError;
pub use tokens::Role;

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The longest a client may take to send a request body, once the handler reads it.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The command handler's lag above which `POST /commands/*` answers 429, by default.
pub const DEFAULT_MAX_COMMAND_LAG: u64 = 10_000;

/// How the API behaves.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The plain bearer token (`[api] token`, `EVENTBUS_API_TOKEN`), an admin's.
    pub token: Option<String>,
    /// The named tokens with their roles, by hash (`[[api.tokens]]`). With neither these nor
    /// `token`, every protected request is refused.
    pub tokens: Vec<tokens::NamedToken>,
    /// Enables `POST /kafka/publish-test`.
    pub dev_mode: bool,
    /// Commands published and not yet carried out above which `POST /commands/*` answers 429
    /// with `Retry-After`.
    pub max_command_lag: u64,
    /// The data directory, whose disk `GET /ready` checks that it can write to; `None`: none.
    pub data_dir: Option<std::path::PathBuf>,
    /// Recent events kept in memory per topic for `GET /kafka/events` (1 to 500).
    pub tail_per_topic: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token: None,
            tokens: Vec::new(),
            dev_mode: false,
            max_command_lag: DEFAULT_MAX_COMMAND_LAG,
            data_dir: None,
            tail_per_topic: tail::MAX_PER_TOPIC,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

struct Inner {
    config: ApiConfig,
    /// The tokens of `config`, by hash.
    tokens: auth::Tokens,
    metrics: Arc<metrics::Metrics>,
    /// The bus and the service on it; replaced when `POST /kafka/config` switches the bus.
    current: RwLock<Arc<Backend>>,
    /// Where bus switches are asked for; `None` where nothing can switch the bus.
    switch: Option<mpsc::Sender<config::Switch>>,
    /// The data directory's disk, for readiness.
    disk: Option<disk::Disk>,
}

/// The bus and the core banking service the handlers talk to.
pub struct Backend {
    /// The bus the service runs on.
    pub bus: Arc<dyn EventBus>,
    /// The bank, the read models and the roles of this instance.
    pub service: ServiceView,
    outcomes: commands::Outcomes,
    tail: Arc<tail::Tail>,
    /// How far behind the command handler is.
    lag: Arc<backpressure::CommandLag>,
    /// The open dead letters, folded a little more at each scrape of `/metrics`.
    letters: tokio::sync::Mutex<eventbus::dlq::Book>,
}

impl ApiState {
    /// The state of an API over `bus` and the running core banking service. `switch` receives
    /// the requests of `POST /kafka/config`.
    pub async fn new(
        bus: Arc<dyn EventBus>,
        service: ServiceView,
        config: ApiConfig,
        switch: Option<mpsc::Sender<config::Switch>>,
    ) -> Result<Self, eventbus::BusError> {
        let metrics = Arc::new(metrics::Metrics::default());
        let backend = Backend::start(bus, service, &metrics, &config).await?;
        let disk = config.data_dir.clone().map(disk::Disk::new);
        let tokens = auth::Tokens::new(config.token.as_deref(), &config.tokens);
        Ok(Self(Arc::new(Inner { config, tokens, metrics, current: RwLock::new(Arc::new(backend)), switch, disk })))
    }

    /// The bus and service of this moment.
    fn backend(&self) -> Arc<Backend> {
        Arc::clone(&self.0.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The data directory's disk, if the service has one.
    fn disk(&self) -> Option<&disk::Disk> {
        self.0.disk.as_ref()
    }

    /// Points the API at a new bus and the service running on it.
    pub async fn replace(&self, bus: Arc<dyn EventBus>, service: ServiceView) -> Result<(), eventbus::BusError> {
        let backend = Arc::new(Backend::start(bus, service, &self.0.metrics, &self.0.config).await?);
        let old = std::mem::replace(&mut *self.0.current.write().unwrap_or_else(|e| e.into_inner()), backend);
        old.tail.close();
        Ok(())
    }

    /// Ends the live streams, so that the server can stop.
    pub fn close(&self) {
        self.backend().tail.close();
    }
}

impl Backend {
    /// Follows the audit trail (for commands that wait) and every topic (for recent events).
    async fn start(
        bus: Arc<dyn EventBus>,
        service: ServiceView,
        metrics: &Arc<metrics::Metrics>,
        config: &ApiConfig,
    ) -> Result<Self, eventbus::BusError> {
        let outcomes = commands::Outcomes::start(&*bus).await?;
        let tail =
            tail::Tail::start(Arc::clone(&bus), Arc::clone(metrics), &service.instance, config.tail_per_topic).await?;
        let lag = backpressure::CommandLag::start(Arc::clone(&bus), config.max_command_lag)?;
        let letters = tokio::sync::Mutex::new(eventbus::dlq::Book::open_only());
        Ok(Self { bus, service, outcomes, tail, lag, letters })
    }
}

/// The protected routes only an admin may call: those that change the bus itself.
///
/// Who may call what ([`auth::required_role`]): on the protected routes of [`router`], a GET
/// needs a viewer and any other method an operator, unless the route is listed here. So a new
/// POST route is an operator's by default; one that changes the bus itself goes here.
pub const ADMIN_ROUTES: &[(Method, &str)] = &[(Method::POST, "/kafka/config")];

/// Every route. Roles: see [`ADMIN_ROUTES`].
pub fn router(state: ApiState) -> Router {
    let protected = Router::new()
        .route("/kafka/status", get(kafka::status))
        .route("/kafka/publish-test", post(kafka::publish_test))
        .route("/kafka/config", post(config::change))
        .route("/kafka/events", get(tail::events))
        .route("/events/stream", get(tail::stream))
        .route("/accounts", get(reads::accounts))
        .route("/commands/{kind}", get(commands::outcome).post(commands::submit))
        .route("/accounts/{id}", get(reads::account))
        .route("/customers/{id}", get(reads::customer))
        .route("/loans/{id}", get(reads::loan))
        .route("/compliance/alerts", get(reads::alerts))
        .route("/topics", get(reads::topics))
        .route("/topics/{topic}/messages", get(console::browse).post(console::produce))
        .route("/topics/{topic}/messages/{partition}/{offset}/reproduce", post(console::reproduce))
        .route("/consumer-groups", get(console::consumer_groups))
        .route("/consumer-groups/{group}/offsets", post(console::reset_offsets))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/redrive", post(dead_letters::redrive))
        .route("/dead-letters/discard", post(dead_letters::discard))
        .route("/dead-letters/{id}", get(dead_letters::show))
        .route_layer(middleware::from_fn_with_state(state.clone(), disk::explain))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .route_layer(middleware::from_fn_with_state(state.clone(), metrics::track));
    Router::new()
        .route("/health", get(meta::health))
        .route("/ready", get(meta::ready))
        .route("/openapi.json", get(meta::openapi))
        .route("/metrics", get(metrics::render))
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .route_layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .merge(protected)
        .fallback(meta::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(error::json_errors))
        .with_state(state)
}

/// The value of a `charset` parameter of a media type (`charset=utf-8`, `Charset="UTF-8"`), if
/// `part` is one.
fn charset(part: &[u8]) -> Option<&[u8]> {
    let (name, value) = part.split_at(part.iter().position(|b| *b == b'=')?);
    let value = value[1..].trim_ascii();
    let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
    name.trim_ascii().eq_ignore_ascii_case(b"charset").then_some(value)
}

/// A JSON body whose every failure (not `application/json`, too large, too slow, not JSON,
/// wrong shape) is an [`ApiError`].
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request.headers().get(axum::http::header::CONTENT_TYPE).map(|v| v.as_bytes());
        let mut parts = content_type.unwrap_or_default().split(|b| *b == b';').map(<[u8]>::trim_ascii);
        let media_type = parts.next().unwrap_or_default();
        // JSON is UTF-8 (RFC 8259): a body said to be in another charset is not read as if it were.
        let other_charset = parts.filter_map(charset).any(|c| !c.eq_ignore_ascii_case(b"utf-8"));
        if !media_type.eq_ignore_ascii_case(b"application/json") || other_charset {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON in UTF-8, sent with Content-Type: application/json",
            ));
        }
        let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::Bytes::from_request(request, state));
        let bytes = read
            .await
            .map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
                )
            })?
            .map_err(|rejection| {
                ApiError::new(
                    rejection.status(),
                    "invalid_body",
                    format!("the request body cannot be read: {}", rejection.body_text()),
                )
            })?;
        if let Some(name) = eventbus::envelope::repeated_field(&bytes) {
            return Err(ApiError::bad_request(
                "invalid_json",
                format!("the request body names the field `{name}` twice: send it once"),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| ApiError::bad_request("invalid_json", format!("the request body is not valid: {error}")))
    }
}

#[cfg(test)]
mod roles_tests;
#[cfg(test)]
mod tests;
