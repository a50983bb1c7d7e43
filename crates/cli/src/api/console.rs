//! The operator's console: a message browser over any topic (by partition, offset, key, event
//! type, time and one JSON field, with a cursor to go on and a JSON lines export), producing a
//! message and re-producing one, and moving a consumer group's offsets.
//!
//! Every browse is bounded: at most [`MAX_SCAN`] records are read and [`MAX_LIMIT`] returned per
//! request, and the answer carries the cursor to go on from.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use eventbus::{
    EventBus, EventId, EventSchema, GroupId, Offset, Partition, PartitionInfo, Record, RecordValue, StartPosition,
    TopicName,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, Caller, JsonBody};

/// The most records one browse request reads, matching or not.
pub const MAX_SCAN: u64 = 10_000;
/// The most messages one browse request returns.
pub const MAX_LIMIT: usize = 1000;
/// Messages returned when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// Records read from the bus at once.
const CHUNK: u64 = 500;
/// The most reads of the bus one browse request makes (each reads up to [`CHUNK`] records).
const MAX_READS: u32 = 1000;
/// The longest `where` path, in segments.
const MAX_PATH_SEGMENTS: usize = 32;
/// The longest key accepted for a produced message, in bytes.
const MAX_KEY_BYTES: usize = 256;

/// The media type of a JSON lines export.
pub const NDJSON: &str = "application/x-ndjson";
/// The header of an export that holds the cursor to go on from: `partition:offset`.
pub const NEXT_HEADER: &str = "x-eventbus-next";
/// The header of an export that says how many records were read.
pub const SCANNED_HEADER: &str = "x-eventbus-scanned";

/// The query of `GET /topics/{topic}/messages`; every value is parsed here, so that a bad one is
/// a 400 that names it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowseQuery {
    partition: Option<String>,
    from_partition: Option<String>,
    from_offset: Option<String>,
    limit: Option<String>,
    order: Option<String>,
    key: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(rename = "where")]
    field: Option<String>,
    format: Option<String>,
}

/// Which end of each partition a browse starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// From the latest record down (the default, as in Kafka UI).
    Newest,
    /// From the earliest record up.
    Oldest,
}

/// What a record must be to be returned.
#[derive(Debug, Default)]
struct Filter {
    key: Option<String>,
    event_type: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// A dotted path into the event's JSON and the text its value must equal.
    field: Option<(Vec<String>, String)>,
}

impl Filter {
    fn matches(&self, record: &Record) -> bool {
        if self.key.as_deref().is_some_and(|key| record.key.as_deref() != Some(key)) {
            return false;
        }
        if self.since.is_some_and(|since| record.timestamp < since)
            || self.until.is_some_and(|until| record.timestamp >= until)
        {
            return false;
        }
        if self.event_type.is_none() && self.field.is_none() {
            return true;
        }
        let Some(event) = record.event() else { return false };
        if self.event_type.as_deref().is_some_and(|t| event.event_type.as_str() != t) {
            return false;
        }
        match &self.field {
            None => true,
            Some((path, expected)) => {
                let document = serde_json::to_value(&**event).unwrap_or(Value::Null);
                lookup(&document, path).is_some_and(|value| text_of(value).as_deref() == Some(expected.as_str()))
            }
        }
    }
}

/// The value at a dotted path: object fields by name, array items by index.
fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A value as the text a `where` filter compares: strings as they are, numbers, booleans and
/// null as JSON writes them; objects and arrays never match.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(_) | Value::Bool(_) | Value::Null => Some(value.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn topic_name(text: &str) -> Result<TopicName, ApiError> {
    TopicName::new(text).map_err(|error| ApiError::bad_request("invalid_topic", error.to_string()))
}

fn number<T: std::str::FromStr>(text: &str, code: &'static str, what: &str) -> Result<T, ApiError> {
    text.trim().parse().map_err(|_| {
        let shown: String = text.chars().take(40).collect();
        ApiError::bad_request(code, format!("{what} must be a whole number of 0 or more, not `{shown}`"))
    })
}

fn time(text: &str, name: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text.trim()).map(|t| t.with_timezone(&Utc)).map_err(|error| {
        ApiError::bad_request(
            "invalid_time",
            format!("{name} must be an RFC 3339 time such as 2026-01-31T12:00:00Z: {error}"),
        )
    })
}

/// `path=value`: a dotted path of 1 to 32 non-empty segments, then the text to compare.
fn where_filter(text: &str) -> Result<(Vec<String>, String), ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(
            "invalid_where",
            format!("where must be path=value, such as data.account_id=acc_1: {why}"),
        )
    };
    let (path, value) = text.split_once('=').ok_or_else(|| bad("there is no `=`"))?;
    let path: Vec<String> = path.trim().split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(bad("the path has an empty segment"));
    }
    if path.len() > MAX_PATH_SEGMENTS {
        return Err(bad("the path has more than 32 segments"));
    }
    Ok((path, value.to_owned()))
}

/// A browse, parsed and checked against the topic.
struct Browse {
    topic: TopicName,
    order: Order,
    limit: usize,
    filter: Filter,
    /// The partitions to scan, in order.
    partitions: Vec<PartitionInfo>,
    /// Where to start in the first partition scanned (`from_partition`), or in each of them.
    from: Option<Offset>,
    /// Whether `from` holds for the first partition only (a cursor).
    from_first_only: bool,
    jsonl: bool,
}

impl Browse {
    async fn parse(bus: &dyn EventBus, topic: &str, query: BrowseQuery, headers: &HeaderMap) -> Result<Self, ApiError> {
        let topic = topic_name(topic)?;
        let limit = match &query.limit {
            None => DEFAULT_LIMIT,
            Some(text) => number::<usize>(text, "invalid_limit", "limit")?,
        };
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request("invalid_limit", format!("limit must be 1 to {MAX_LIMIT}")));
        }
        let order = match query.order.as_deref() {
            None | Some("newest") => Order::Newest,
            Some("oldest") => Order::Oldest,
            Some(_) => return Err(ApiError::bad_request("invalid_order", "order must be newest or oldest")),
        };
        let jsonl = match query.format.as_deref() {
            Some("jsonl") => true,
            Some("json") => false,
            None => headers.get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains(NDJSON)),
            Some(_) => return Err(ApiError::bad_request("invalid_format", "format must be json or jsonl")),
        };
        let non_empty = |value: Option<String>, name: &str| match value {
            Some(text) if text.is_empty() => Err(ApiError::bad_request("invalid_filter", format!("{name} is empty"))),
            other => Ok(other),
        };
        let filter = Filter {
            key: non_empty(query.key, "key")?,
            event_type: non_empty(query.event_type, "event_type")?,
            since: query.since.as_deref().map(|t| time(t, "since")).transpose()?,
            until: query.until.as_deref().map(|t| time(t, "until")).transpose()?,
            field: query.field.as_deref().map(where_filter).transpose()?,
        };
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            return Err(ApiError::bad_request("invalid_time", "since must be before until"));
        }
        let partition = query.partition.as_deref().map(|p| number::<u32>(p, "invalid_partition", "partition"));
        let from_partition =
            query.from_partition.as_deref().map(|p| number::<u32>(p, "invalid_partition", "from_partition"));
        let (partition, from_partition) = (partition.transpose()?, from_partition.transpose()?);
        let from = query.from_offset.as_deref().map(|o| number::<u64>(o, "invalid_offset", "from_offset"));
        let from = from.transpose()?.map(Offset);
        let description = bus.describe_topic(&topic).await?;
        let count = description.partitions.len() as u32;
        let unknown = |p: u32| {
            ApiError::bad_request(
                "unknown_partition",
                format!("topic `{topic}` has no partition {p}: it has {count}, numbered from 0"),
            )
        };
        for p in partition.iter().chain(&from_partition) {
            if *p >= count {
                return Err(unknown(*p));
            }
        }
        if let (Some(p), Some(f)) = (partition, from_partition)
            && p != f
        {
            return Err(ApiError::bad_request(
                "invalid_cursor",
                "from_partition must be the partition asked for, when partition is given",
            ));
        }
        let first = partition.or(from_partition).unwrap_or(0);
        let partitions: Vec<PartitionInfo> = description
            .partitions
            .into_iter()
            .filter(|info| match partition {
                Some(p) => info.partition.0 == p,
                None => info.partition.0 >= first,
            })
            .collect();
        Ok(Self { topic, order, limit, filter, partitions, from, from_first_only: from_partition.is_some(), jsonl })
    }

    /// Where the scan of the partition at `index` starts: the next offset to read going up
    /// (oldest first), or the offset below which to read going down (newest first).
    fn start(&self, index: usize) -> u64 {
        let info = &self.partitions[index];
        let from = if index == 0 || !self.from_first_only { self.from } else { None };
        match self.order {
            Order::Oldest => from.map_or(info.earliest.0, |o| o.0).clamp(info.earliest.0, info.latest.0),
            Order::Newest => {
                from.map_or(info.latest.0, |o| o.0.saturating_add(1)).clamp(info.earliest.0, info.latest.0)
            }
        }
    }

    /// The cursor of a scan stopped at `position` in the partition at `index`: the partition and
    /// the `from_offset` to go on from, or `None` when every partition asked for is scanned.
    fn cursor(&self, index: usize, position: u64) -> Option<(Partition, Offset)> {
        let mut position = position;
        for (i, info) in self.partitions.iter().enumerate().skip(index) {
            if i > index {
                position = match self.order {
                    Order::Oldest => info.earliest.0,
                    Order::Newest => info.latest.0,
                };
            }
            match self.order {
                Order::Oldest if position < info.latest.0 => return Some((info.partition, Offset(position))),
                Order::Newest if position > info.earliest.0 => return Some((info.partition, Offset(position - 1))),
                _ => {}
            }
        }
        None
    }

    /// Reads the partitions in order until `limit` records matched or the work is used up.
    async fn run(&self, bus: &dyn EventBus) -> Result<Page, ApiError> {
        let (mut scanned, mut reads, mut messages) = (0u64, 0u32, Vec::new());
        for (index, info) in self.partitions.iter().enumerate() {
            let mut position = self.start(index);
            loop {
                if messages.len() >= self.limit || scanned >= MAX_SCAN || reads >= MAX_READS {
                    return Ok(Page { messages, next: self.cursor(index, position), scanned });
                }
                let budget = CHUNK.min(MAX_SCAN - scanned);
                reads += 1;
                match self.order {
                    Order::Oldest => {
                        if position >= info.latest.0 {
                            break;
                        }
                        let want = budget.min(info.latest.0 - position) as usize;
                        let records = bus.read(&self.topic, info.partition, Offset(position), want).await?;
                        if records.is_empty() {
                            break;
                        }
                        for record in records {
                            scanned += 1;
                            position = record.offset.0 + 1;
                            if self.filter.matches(&record) {
                                messages.push(record);
                                if messages.len() >= self.limit {
                                    break;
                                }
                            }
                        }
                    }
                    Order::Newest => {
                        if position <= info.earliest.0 {
                            break;
                        }
                        let low = position.saturating_sub(budget).max(info.earliest.0);
                        let records =
                            bus.read(&self.topic, info.partition, Offset(low), (position - low) as usize).await?;
                        let below = position;
                        let mut complete = true;
                        for record in records.into_iter().rev().filter(|r| r.offset.0 < below) {
                            scanned += 1;
                            position = record.offset.0;
                            if self.filter.matches(&record) {
                                messages.push(record);
                                if messages.len() >= self.limit {
                                    complete = false;
                                    break;
                                }
                            }
                        }
                        if complete {
                            // Offsets below the lowest read and at or above `low` hold no record.
                            position = low;
                        }
                    }
                }
            }
        }
        Ok(Page { messages, next: None, scanned })
    }
}

/// One page of a browse.
struct Page {
    messages: Vec<Record>,
    next: Option<(Partition, Offset)>,
    scanned: u64,
}

/// A record as the console shows it to `caller`: its place, key and event, or, for a value that
/// is not an event, its raw text and why it is not one. A viewer gets no raw text, which has no
/// fields to mask by (the answer's personal data is masked for viewers as every answer's is).
fn message(record: &Record, caller: &Caller) -> Value {
    let mut shown = json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key.as_deref(),
    });
    match &record.value {
        RecordValue::Event(event) => shown["event"] = json!(event),
        RecordValue::Invalid { bytes, reason } => {
            shown["event"] = Value::Null;
            let raw = if caller.sees_personal_data() {
                String::from_utf8_lossy(bytes).into_owned()
            } else {
                "(hidden from viewers: a value that is not an event cannot be masked)".to_owned()
            };
            shown["invalid"] = json!({"raw": raw, "reason": reason});
        }
    }
    shown
}

/// `GET /topics/{topic}/messages`: the records of a topic that match the filters, newest first
/// unless `order=oldest`, as JSON, or as JSON lines with `format=jsonl` or
/// `Accept: application/x-ndjson` (an attachment; the cursor in `X-Eventbus-Next`).
pub async fn browse(
    State(state): State<ApiState>,
    Path(topic): Path<String>,
    Query(query): Query<BrowseQuery>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let bus = state.backend().bus.clone();
    let browse = Browse::parse(&*bus, &topic, query, &headers).await?;
    let page = browse.run(&*bus).await?;
    let next = page.next.map(|(partition, offset)| json!({"partition": partition, "offset": offset}));
    if !browse.jsonl {
        let messages: Vec<Value> = page.messages.iter().map(|record| message(record, &caller)).collect();
        let order = if browse.order == Order::Newest { "newest" } else { "oldest" };
        let body = json!({"messages": messages, "next": next, "scanned": page.scanned, "order": order});
        return Ok(Json(body).into_response());
    }
    let mut text = String::new();
    for record in &page.messages {
        text.push_str(&message(record, &caller).to_string());
        text.push('\n');
    }
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    // Topic names are letters, digits, `.`, `_` and `-`: nothing to quote.
    let disposition = format!("attachment; filename=\"{}.jsonl\"", browse.topic);
    headers.insert(CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("a topic name is a header value"));
    headers.insert(HeaderName::from_static(SCANNED_HEADER), HeaderValue::from(page.scanned));
    if let Some((partition, offset)) = page.next {
        let cursor = HeaderValue::from_str(&format!("{partition}:{offset}")).expect("digits are a header value");
        headers.insert(HeaderName::from_static(NEXT_HEADER), cursor);
    }
    Ok(response)
}

/// The body of `POST /topics/{topic}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Produce {
    /// The partition key; the event's `entity_id` when absent.
    key: Option<String>,
    /// The event, as EventSchema JSON.
    event: Value,
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_key",
            format!("key must be 1 to {MAX_KEY_BYTES} bytes without control characters"),
        ));
    }
    Ok(())
}

/// `POST /topics/{topic}/messages`: publishes one event as it is given (a missing `event_id`
/// and `timestamp` are filled in).
pub async fn produce(
    State(state): State<ApiState>,
    Path(topic): Path<String>,
    JsonBody(produce): JsonBody<Produce>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let topic = topic_name(&topic)?;
    if let Some(key) = &produce.key {
        check_key(key)?;
    }
    if !produce.event.is_object() {
        return Err(ApiError::bad_request("invalid_event", "event must be an EventSchema JSON object"));
    }
    let text = serde_json::to_vec(&produce.event).expect("a JSON value serialises");
    let mut event = EventSchema::from_json(&text)
        .map_err(|error| ApiError::bad_request("invalid_event", format!("event is not an EventSchema: {error}")))?;
    event.complete();
    let event_id = event.event_id.clone();
    let bus = state.backend().bus.clone();
    bus.describe_topic(&topic).await?;
    let published = bus.publish(&topic, event, produce.key.as_deref()).await?;
    tracing::info!(%topic, partition = %published.partition, event_id = ?event_id.as_ref().map(ToString::to_string), "Message produced from the console");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "topic": topic,
            "partition": published.partition,
            "offset": published.offset,
            "event_id": event_id,
        })),
    ))
}

/// The body of `POST /topics/{topic}/messages/{partition}/{offset}/reproduce`; it may be empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reproduce {
    /// The topic to publish to; the record's own when absent.
    topic: Option<String>,
    /// Keeps the event's `event_id`: consumers that saw it drop the copy as a repeat.
    #[serde(default)]
    keep_event_id: bool,
}

/// A body that may be empty; when it is not, it is JSON as [`JsonBody`] reads it.
async fn optional_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let media = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = media.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON, sent with Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request("invalid_json", format!("the request body is not valid: {error}")))
}

/// `POST /topics/{topic}/messages/{partition}/{offset}/reproduce`: publishes the event of that
/// record again, with its key, to the same topic or `topic`: a new message, with a new
/// `event_id` unless `keep_event_id` (then consumers that handled it drop it as a repeat), and
/// `metadata.reproduced_from` naming the original.
pub async fn reproduce(
    State(state): State<ApiState>,
    Path((topic, partition, offset)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let topic = topic_name(&topic)?;
    let partition = Partition(number(&partition, "invalid_partition", "partition")?);
    let offset = Offset(number(&offset, "invalid_offset", "offset")?);
    let request: Reproduce = optional_body(&headers, &body).await?;
    let target = request.topic.as_deref().map(topic_name).transpose()?.unwrap_or_else(|| topic.clone());
    let bus = state.backend().bus.clone();
    let count = bus.describe_topic(&topic).await?.partitions.len() as u32;
    if partition.0 >= count {
        return Err(ApiError::not_found(
            "unknown_message",
            format!("topic `{topic}` has no partition {partition}: it has {count}"),
        ));
    }
    let found = bus.read(&topic, partition, offset, 1).await?.into_iter().find(|r| r.offset == offset);
    let record = found.ok_or_else(|| {
        ApiError::not_found(
            "unknown_message",
            format!("`{topic}` holds no message at partition {partition}, offset {offset}"),
        )
    })?;
    let Some(original) = record.event() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_an_event",
            "that message is not an event; only events can be re-produced",
        ));
    };
    let mut event = EventSchema::clone(original);
    if !request.keep_event_id {
        event.event_id = Some(EventId::new());
    }
    let from = json!({"topic": topic, "partition": partition, "offset": offset, "event_id": original.event_id});
    event.metadata.insert("reproduced_from".to_owned(), from.clone());
    let event_id = event.event_id.clone();
    bus.describe_topic(&target).await?;
    let published = bus.publish(&target, event, record.key.as_deref()).await?;
    tracing::info!(%topic, %partition, %offset, to = %target, keep_event_id = request.keep_event_id, "Message re-produced from the console");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "topic": target,
            "partition": published.partition,
            "offset": published.offset,
            "event_id": event_id,
            "kept_event_id": request.keep_event_id,
            "reproduced_from": from,
        })),
    ))
}

/// The body of `POST /consumer-groups/{group}/offsets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    topic: String,
    /// One partition; every partition of the topic when absent.
    partition: Option<u32>,
    /// `earliest`, `latest`, `offset:N` or `time:RFC3339`.
    to: String,
}

/// `POST /consumer-groups/{group}/offsets`: moves the group's committed offset in one partition,
/// or in all, like `kafka-consumer-groups --reset-offsets --execute`. Refused with a 409 while
/// this process consumes in the group; consumers in other processes must be stopped first.
pub async fn reset_offsets(
    State(state): State<ApiState>,
    Path(group): Path<String>,
    JsonBody(reset): JsonBody<Reset>,
) -> Result<Json<Value>, ApiError> {
    let group = GroupId::new(group).map_err(ApiError::from)?;
    let topic = topic_name(&reset.topic)?;
    let to: StartPosition = reset.to.parse().map_err(ApiError::from)?;
    if to == StartPosition::Committed {
        return Err(ApiError::bad_request(
            "invalid_position",
            "to must be earliest, latest, offset:N or time:RFC3339 (committed moves nothing)",
        ));
    }
    let bus = state.backend().bus.clone();
    let description = bus.describe_topic(&topic).await?;
    if let Some(partition) = reset.partition
        && partition >= description.partitions.len() as u32
    {
        return Err(ApiError::bad_request(
            "unknown_partition",
            format!("topic `{topic}` has no partition {partition}: it has {}", description.partitions.len()),
        ));
    }
    if bus.joined(&group).await.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "group_active",
            format!(
                "group `{group}` has consumers in this process, which would commit over a reset; stop them (or the service) first"
            ),
        ));
    }
    let offsets = match reset.partition {
        Some(partition) => bus.reset_partition_offset(&group, &topic, Partition(partition), to).await?,
        None => bus.reset_offsets(&group, &topic, to).await?,
    };
    tracing::info!(%group, %topic, partition = ?reset.partition, to = %reset.to, "Consumer group offsets reset from the console");
    let lag: u64 = offsets.iter().map(|o| o.lag).sum();
    Ok(Json(json!({
        "group": group,
        "topic": topic,
        "partition": reset.partition,
        "to": reset.to,
        "lag": lag,
        "partitions": offsets,
    })))
}

/// `GET /consumer-groups`: every group of the bus (those of other processes too), each with its
/// committed offset, the partition's end and the lag per partition of each topic it committed
/// in, and the totals; the groups `serve` runs are listed with all their topics even before
/// they commit, and say whether they consume in this process.
pub async fn consumer_groups(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let backend = state.backend();
    let bus = &backend.bus;
    let ends: BTreeMap<TopicName, Vec<PartitionInfo>> =
        bus.list_topics().await?.into_iter().map(|t| (t.name, t.partitions)).collect();
    let mut groups: BTreeMap<GroupId, BTreeMap<TopicName, Vec<eventbus::GroupOffset>>> = BTreeMap::new();
    for listed in bus.list_groups().await? {
        let topics = groups.entry(listed.group).or_default();
        for topic in listed.topics {
            topics.insert(topic.topic, topic.partitions);
        }
    }
    let mut service = Vec::new();
    for (group, topics) in super::reads::service_groups(&backend.service.instance) {
        let group = GroupId::new(group).map_err(ApiError::from)?;
        let entry = groups.entry(group.clone()).or_default();
        for topic in topics {
            entry.entry(topic).or_default();
        }
        service.push(group);
    }
    let mut answer = Vec::with_capacity(groups.len());
    let mut total = 0;
    for (group, topics) in groups {
        let mut rows = Vec::with_capacity(topics.len());
        let mut lag = 0;
        for (topic, partitions) in topics {
            let topic_lag: u64 = partitions.iter().map(|p| p.lag).sum();
            lag += topic_lag;
            let topic_ends = ends.get(&topic);
            let partitions: Vec<Value> = partitions
                .iter()
                .map(|p| {
                    let end = topic_ends.and_then(|ends| ends.iter().find(|e| e.partition == p.partition));
                    json!({"partition": p.partition, "offset": p.offset, "finished": p.finished, "lag": p.lag,
                           "latest": end.map(|e| e.latest)})
                })
                .collect();
            rows.push(json!({"topic": topic, "lag": topic_lag, "partitions": partitions}));
        }
        total += lag;
        let joined = bus.joined(&group).await;
        answer.push(json!({
            "group": group,
            "lag": lag,
            "topics": rows,
            "service": service.contains(&group),
            "consuming_here": joined.is_some(),
            "joined": joined,
        }));
    }
    Ok(Json(json!({"groups": answer, "count": answer.len(), "total_lag": total})))
}
