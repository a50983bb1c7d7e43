//! `/dead-letters`: find the letters of every subscription, look at one, and redrive or discard
//! them. A redrive or a discard is recorded in the letter's dead-letter topic with who asked and
//! from which address; the subscription of the letter's group carries it out.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use eventbus::dlq::{self, Action, Actor, DlqError, Filter, Letter};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, Caller, JsonBody};

/// Letters one answer lists, at most.
const MAX_LIMIT: usize = 1000;

impl From<DlqError> for ApiError {
    fn from(error: DlqError) -> Self {
        match error {
            DlqError::Bus(error) => error.into(),
            DlqError::UnknownLetter(_) => Self::not_found("unknown_dead_letter", error.to_string()),
            DlqError::InvalidFilter(_) => Self::bad_request("invalid_filter", error.to_string()),
            DlqError::NothingToDo(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_do", error.to_string()),
            DlqError::TooMany { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "too_many", error.to_string()),
            _ => Self::unavailable("the dead-letter console", &error),
        }
    }
}

/// The filter of a query string or a request body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterQuery {
    topic: Option<String>,
    group: Option<String>,
    error: Option<String>,
    since: Option<String>,
    until: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

impl FilterQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        let filter = Filter::parse(
            self.topic.as_deref(),
            self.group.as_deref(),
            self.error.as_deref(),
            self.since.as_deref(),
            self.until.as_deref(),
            self.state.as_deref(),
        );
        Ok(filter?)
    }
}

/// `GET /dead-letters?topic=&group=&error=&since=&until=&state=&limit=`: matching letters,
/// oldest first.
pub async fn list(State(state): State<ApiState>, Query(query): Query<FilterQuery>) -> Result<Json<Value>, ApiError> {
    let filter = query.filter()?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let backend = state.backend();
    let answer = |book: &dlq::Book| {
        let matching: Vec<&Letter> = book.letters().filter(|l| filter.matches(l)).collect();
        let letters: Vec<Value> = matching.iter().take(limit).map(|l| l.summary()).collect();
        json!({"letters": letters, "matching": matching.len(), "showing": letters.len()})
    };
    if filter.state.is_open() {
        // Open letters come from the book `/metrics` keeps, which reads only what is new.
        let mut open = backend.letters.lock().await;
        dlq::refresh(&*backend.bus, &mut open, None).await?;
        return Ok(Json(answer(&open)));
    }
    let book = dlq::load(&*backend.bus, filter.topic.as_ref()).await?;
    Ok(Json(answer(&book)))
}

/// `GET /dead-letters/{id}`: one letter with its original (personal data masked) and history.
pub async fn show(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let bus = state.backend().bus.clone();
    let book = dlq::load(&*bus, None).await?;
    let letter = book.get(&id).ok_or(DlqError::UnknownLetter(id))?;
    Ok(Json(json!(letter)))
}

/// The letters an action names: ids, or a filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    #[serde(default)]
    ids: Vec<String>,
    filter: Option<FilterQuery>,
}

/// `POST /dead-letters/redrive`.
pub async fn redrive(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(selection): JsonBody<Selection>,
) -> Result<Json<Value>, ApiError> {
    act(state, &caller, selection, Action::Redrive).await
}

/// `POST /dead-letters/discard`.
pub async fn discard(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(selection): JsonBody<Selection>,
) -> Result<Json<Value>, ApiError> {
    act(state, &caller, selection, Action::Discard).await
}

async fn act(state: ApiState, caller: &Caller, selection: Selection, action: Action) -> Result<Json<Value>, ApiError> {
    let filter = match (&selection.filter, selection.ids.is_empty()) {
        (Some(_), false) => {
            return Err(ApiError::bad_request("invalid_selection", "name letters by `ids` or by `filter`, not both"));
        }
        (None, true) => {
            return Err(ApiError::bad_request("invalid_selection", "name the letters: `ids`, or a `filter`"));
        }
        (Some(query), true) => Some(query.filter()?),
        (None, false) => None,
    };
    let bus = state.backend().bus.clone();
    let book = dlq::load(&*bus, filter.as_ref().and_then(|f| f.topic.as_ref())).await?;
    let ids = match &filter {
        Some(filter) => book.letters().filter(|l| filter.matches(l)).map(|l| l.id.clone()).collect(),
        None => selection.ids,
    };
    let actor = Actor {
        who: caller.who(),
        address: caller.address.map_or_else(|| "unknown".to_owned(), |address| address.ip().to_string()),
    };
    let acted = dlq::request(&*bus, &book, &ids, action, &actor).await?;
    let requested = acted.iter().filter(|a| a.requested).count();
    Ok(Json(json!({"action": action, "requested": requested, "results": acted})))
}
