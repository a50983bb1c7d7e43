//! Read models, topics and consumer groups.

use axum::Json;
use axum::extract::{Path, Query, State};
use eventbus::TopicName;
use nexum::commands::COMMAND_TOPICS;
use nexum::ids::{AccountId, CustomerId, LoanId};
use nexum::projections::Projections;
use serde::Deserialize;
use serde_json::{Value, json};

use super::masking::NoPersonalData;
use super::{ApiError, ApiState};

fn id<T: std::str::FromStr<Err = nexum::ids::IdError>>(text: &str) -> Result<T, ApiError> {
    text.parse().map_err(|error: nexum::ids::IdError| ApiError::bad_request("invalid_id", error.to_string()))
}

pub async fn account(State(state): State<ApiState>, Path(account): Path<String>) -> Result<Json<Value>, ApiError> {
    let account: AccountId = id(&account)?;
    let view = state.backend().service.projections.account(&account).filter(|view| view.details.is_some());
    let view = view.ok_or_else(|| ApiError::not_found("unknown_account", format!("unknown account `{account}`")))?;
    Ok(Json(json!(view)))
}

/// `GET /accounts?limit=`: opened accounts with their balances, by id.
pub async fn accounts(State(state): State<ApiState>, Query(query): Query<Limit>) -> Result<Json<Value>, ApiError> {
    let limit = limit(query.limit)?;
    let accounts = state.backend().service.projections.accounts(limit);
    Ok(Json(json!({"accounts": accounts, "showing": accounts.len()})))
}

fn limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be 1 to 1000"));
    }
    Ok(limit)
}

pub async fn customer(State(state): State<ApiState>, Path(customer): Path<String>) -> Result<Json<Value>, ApiError> {
    let customer: CustomerId = id(&customer)?;
    let view = state.backend().service.projections.customer(&customer).filter(|view| view.contact.is_some());
    let view = view.ok_or_else(|| ApiError::not_found("unknown_customer", format!("unknown customer `{customer}`")))?;
    Ok(Json(json!(view)))
}

pub async fn loan(State(state): State<ApiState>, Path(loan): Path<String>) -> Result<Json<Value>, ApiError> {
    let loan: LoanId = id(&loan)?;
    let view = state.backend().service.projections.loan(&loan).filter(|view| view.terms.is_some());
    let view = view.ok_or_else(|| ApiError::not_found("unknown_loan", format!("unknown loan `{loan}`")))?;
    Ok(Json(json!(view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    limit: Option<usize>,
}

pub async fn alerts(State(state): State<ApiState>, Query(query): Query<Limit>) -> Result<Json<Value>, ApiError> {
    let alerts = state.backend().service.projections.alerts(limit(query.limit)?);
    Ok(Json(json!({"alerts": alerts, "showing": alerts.len()})))
}

/// `GET /topics`: no personal data, though each topic has a `name`.
pub async fn topics(State(state): State<ApiState>) -> Result<(NoPersonalData, Json<Value>), ApiError> {
    let topics: Vec<Value> = state
        .backend()
        .bus
        .list_topics()
        .await?
        .iter()
        .map(|topic| {
            json!({
                "name": topic.name,
                "partitions": topic.partitions.len(),
                "retained": topic.retained(),
                "dead_letter": topic.name.is_dlq(),
                "offsets": topic.partitions,
            })
        })
        .collect();
    Ok((NoPersonalData, Json(json!({"topics": topics}))))
}

/// The consumer groups `serve` runs as the instance named `instance`, and their topics: those
/// the instances share, and this instance's own projections group.
pub fn service_groups(instance: &str) -> Vec<(String, Vec<TopicName>)> {
    let commands: Vec<TopicName> = COMMAND_TOPICS.iter().map(|(topic, _)| topic.name()).collect();
    vec![
        (nexum::commands::GROUP.to_owned(), commands.clone()),
        (nexum::commands::REJECTIONS_GROUP.to_owned(), commands.iter().map(TopicName::dlq).collect()),
        (format!("{}.{instance}", nexum::service::PROJECTIONS_GROUP), Projections::topics()),
        (nexum::sagas::LOAN_APPLICATION_GROUP.to_owned(), nexum::sagas::LoanApplicationSaga::topics()),
        (capera::service::DEFAULT_GROUP.to_owned(), capera::service::topics()),
    ]
}
