//! `GET /metrics` in the Prometheus text format (0.0.4).
//!
//! Counted as they happen: HTTP requests by route and status with a latency histogram, the time
//! from an event's timestamp to its delivery to the API's tail consumer, and the time from a
//! command to its outcome for requests that wait. Read at scrape time: events per topic (what
//! was published and is retained), dead letters per topic, each consumer group's committed
//! offset (what it consumed) and lag, the event store's outbox backlog, Kafka's local outbox
//! backlog, and events applied by the projections.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// What the API counts as it goes.
#[derive(Default)]
pub struct Metrics {
    /// Responses by (method, route, status).
    responses: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Request latency by route.
    latency: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    /// From an event's timestamp to its delivery to the API.
    pub delivery: Histogram,
    /// From a command's submission to its outcome, for requests that wait.
    pub command_outcome: Histogram,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut responses = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *responses.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        drop(responses);
        let histogram = {
            let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            std::sync::Arc::clone(latency.entry(route.to_owned()).or_default())
        };
        histogram.observe(elapsed);
    }
}

/// Counts every request, by its route template (never the raw path, which holds ids).
pub async fn track(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(request).await;
    state.0.metrics.record(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub async fn render(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let inner = &state.0;
    let backend = state.backend();
    let mut out = String::new();
    let status = backend.bus.status().await?;

    out.push_str("# HELP eventbus_up Whether the bus is running.\n# TYPE eventbus_up gauge\n");
    let _ = writeln!(out, "eventbus_up{{backend=\"{}\"}} {}", status.backend, u8::from(status.running));
    out.push_str("# HELP eventbus_topic_events Events published to a topic and still retained.\n");
    out.push_str("# TYPE eventbus_topic_events gauge\n");
    for (topic, count) in status.events_by_topic.iter().filter(|(t, _)| !t.is_dlq()) {
        let _ = writeln!(out, "eventbus_topic_events{{topic=\"{}\"}} {count}", label(topic.as_str()));
    }
    out.push_str("# HELP eventbus_dead_letters Records in a dead-letter topic: letters, parked records, operators' requests and outcomes.\n# TYPE eventbus_dead_letters gauge\n");
    for (topic, count) in status.events_by_topic.iter().filter(|(t, _)| t.is_dlq()) {
        let _ = writeln!(out, "eventbus_dead_letters{{topic=\"{}\"}} {count}", label(topic.as_str()));
    }
    out.push_str("# HELP eventbus_dead_letters_open Letters not resolved yet, by state: failed (waiting for an operator), retrying, parked, redrive_requested.\n");
    out.push_str("# TYPE eventbus_dead_letters_open gauge\n");
    {
        let mut letters = backend.letters.lock().await;
        eventbus::dlq::refresh(&*backend.bus, &mut letters, None).await.map_err(ApiError::from)?;
        for ((topic, state), count) in letters.open_by_state() {
            let _ = writeln!(
                out,
                "eventbus_dead_letters_open{{topic=\"{}\",state=\"{state}\"}} {count}",
                label(topic.as_str())
            );
        }
    }
    if let Some(backlog) = status.outbox_backlog {
        out.push_str("# HELP eventbus_kafka_outbox_backlog Events waiting in the local outbox for the broker.\n");
        let _ = writeln!(out, "# TYPE eventbus_kafka_outbox_backlog gauge\neventbus_kafka_outbox_backlog {backlog}");
    }
    if let Some(pending) = status.scheduled_pending {
        out.push_str("# HELP eventbus_scheduled_pending Events scheduled with deliver_at that this instance holds until their time.\n");
        let _ = writeln!(out, "# TYPE eventbus_scheduled_pending gauge\neventbus_scheduled_pending {pending}");
    }

    out.push_str("# HELP eventbus_consumer_group_offset Committed offsets of a group in a topic (events consumed).\n");
    out.push_str("# TYPE eventbus_consumer_group_offset gauge\n");
    let mut lags = String::new();
    for (group, topics) in super::reads::service_groups(&backend.service.instance) {
        let group_id = eventbus::GroupId::new(group.as_str())?;
        for topic in topics {
            let partitions = backend.bus.group_offsets(&group_id, &topic).await?;
            let consumed: u64 = partitions.iter().map(|p| p.offset.0).sum();
            let lag: u64 = partitions.iter().map(|p| p.lag).sum();
            let labels = format!("group=\"{}\",topic=\"{}\"", label(&group), label(topic.as_str()));
            let _ = writeln!(out, "eventbus_consumer_group_offset{{{labels}}} {consumed}");
            let _ = writeln!(lags, "eventbus_consumer_group_lag{{{labels}}} {lag}");
        }
    }
    out.push_str("# HELP eventbus_consumer_group_lag Events a group has yet to consume in a topic.\n");
    out.push_str("# TYPE eventbus_consumer_group_lag gauge\n");
    out.push_str(&lags);

    out.push_str("# HELP nexum_command_lag Commands published and not yet carried out, as the API last measured.\n");
    let _ = writeln!(out, "# TYPE nexum_command_lag gauge\nnexum_command_lag {}", backend.lag.lag());
    out.push_str("# HELP nexum_command_lag_limit The command lag above which POST /commands/* answers 429.\n");
    let _ = writeln!(out, "# TYPE nexum_command_lag_limit gauge\nnexum_command_lag_limit {}", backend.lag.limit());

    out.push_str(
        "# HELP nexum_role Whether this instance holds a role that one instance holds at a time (1) or not (0).\n",
    );
    out.push_str("# TYPE nexum_role gauge\n");
    for role in &backend.service.roles {
        let (name, instance) = (label(role.role()), label(&backend.service.instance));
        let _ = writeln!(out, "nexum_role{{role=\"{name}\",instance=\"{instance}\"}} {}", u8::from(role.is_held()));
    }

    let backlog =
        backend.service.bank.store().outbox_len().await.map_err(|e| ApiError::unavailable("the event store", &e))?;
    out.push_str("# HELP nexum_outbox_backlog Committed events the relay has yet to publish.\n");
    let _ = writeln!(out, "# TYPE nexum_outbox_backlog gauge\nnexum_outbox_backlog {backlog}");
    out.push_str("# HELP nexum_projection_events_applied_total Events that changed the read models.\n");
    let _ = writeln!(
        out,
        "# TYPE nexum_projection_events_applied_total counter\nnexum_projection_events_applied_total {}",
        backend.service.projections.applied()
    );

    let metrics = &inner.metrics;
    out.push_str("# HELP eventbus_http_responses_total HTTP responses by route and status.\n");
    out.push_str("# TYPE eventbus_http_responses_total counter\n");
    for ((method, route, code), count) in metrics.responses.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(
            out,
            "eventbus_http_responses_total{{method=\"{method}\",route=\"{}\",status=\"{code}\"}} {count}",
            label(route)
        );
    }
    out.push_str("# HELP eventbus_http_request_duration_seconds HTTP request latency by route.\n");
    out.push_str("# TYPE eventbus_http_request_duration_seconds histogram\n");
    let latency: Vec<_> = metrics.latency.lock().unwrap_or_else(|e| e.into_inner()).clone().into_iter().collect();
    for (route, histogram) in latency {
        histogram.write(&mut out, "eventbus_http_request_duration_seconds", &format!("route=\"{}\"", label(&route)));
    }
    out.push_str("# HELP eventbus_event_delivery_seconds From an event's timestamp to its delivery to a consumer.\n");
    out.push_str("# TYPE eventbus_event_delivery_seconds histogram\n");
    metrics.delivery.write(&mut out, "eventbus_event_delivery_seconds", "");
    out.push_str("# HELP nexum_command_outcome_seconds From a command's submission to its outcome.\n");
    out.push_str("# TYPE nexum_command_outcome_seconds histogram\n");
    metrics.command_outcome.write(&mut out, "nexum_command_outcome_seconds", "");

    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response())
}
