//! The OpenAPI 3.1 document of the API, served at `/openapi.json`.

use axum::http::Method;
use serde_json::{Value, json};

use super::Role;
use super::auth::required_role;

fn op(summary: &str, tag: &str, responses: &[(&str, &str)]) -> Value {
    let responses: serde_json::Map<String, Value> = responses
        .iter()
        .map(|(code, description)| {
            let body = if code.starts_with('2') { "#/components/schemas/Any" } else { "#/components/schemas/Error" };
            (
                (*code).to_owned(),
                json!({"description": description, "content": {"application/json": {"schema": {"$ref": body}}}}),
            )
        })
        .collect();
    json!({"summary": summary, "tags": [tag], "responses": responses})
}

/// An operation anyone may call: no bearer token.
fn public(summary: &str, tag: &str, responses: &[(&str, &str)]) -> Value {
    let mut operation = op(summary, tag, responses);
    operation["security"] = json!([]);
    operation
}

/// `operation` whose answer `code` is text in `media_type` (a page, metrics, an event stream), not
/// JSON.
fn answers_in(mut operation: Value, code: &str, media_type: &str) -> Value {
    operation["responses"][code]["content"] = json!({media_type: {"schema": {"type": "string"}}});
    operation
}

/// `operation`, `method` on the protected route `path`, for the callers whose role is the one it
/// needs ([`required_role`]) or above: the document says so in `x-required-role` and in its 403,
/// which is also the answer to a role too low.
fn protected(method: Method, path: &str, mut operation: Value) -> Value {
    let role = required_role(&method, path);
    operation["x-required-role"] = json!(role);
    let refusal = format!(
        "an unknown token, or a role below {role} (`error.required_role` is `{role}`; roles: viewer < operator < admin)"
    );
    let responses = &mut operation["responses"];
    let description = match responses["403"]["description"].as_str() {
        Some(own) => format!("{own}; or {refusal}"),
        None => refusal,
    };
    responses["403"] = json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    operation
}

/// An id in the path: what `nexum::ids` accepts from outside.
fn id_param(name: &str, description: &str) -> Value {
    json!([{"name": name, "in": "path", "required": true, "description": description,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$"}}])
}

/// `?limit=`, 1 to `max`.
fn limit_param(max: u64) -> Value {
    json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": max}})
}

/// `?topic=`: topic names, comma-separated.
fn topic_param(description: &str) -> Value {
    json!({"name": "topic", "in": "query", "description": description, "schema": {"type": "string"}})
}

/// `operation` whose answer `code` has the JSON schema `schema` (a `$ref` name under
/// `components/schemas`).
fn answers_with(mut operation: Value, code: &str, schema: &str) -> Value {
    operation["responses"][code]["content"]["application/json"]["schema"] =
        json!({"$ref": format!("#/components/schemas/{schema}")});
    operation
}

/// `{topic}` in the path: a Kafka topic name.
fn topic_path_param() -> Value {
    json!({"name": "topic", "in": "path", "required": true, "description": "the topic",
           "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,249}$"}, "example": "nexum.commands.transactions"})
}

/// The schemas of the console's bodies and answers.
fn console_schemas() -> Value {
    json!({
        "Message": {"type": "object", "required": ["topic", "partition", "offset", "timestamp", "key", "event"], "properties": {
            "topic": {"type": "string"}, "partition": {"type": "integer"}, "offset": {"type": "integer"},
            "timestamp": {"type": "string", "format": "date-time"},
            "key": {"type": ["string", "null"]},
            "event": {"type": ["object", "null"], "description": "the event (EventSchema JSON); null when the value is not an event"},
            "invalid": {"type": "object", "description": "only for a value that is not an event",
                        "properties": {"raw": {"type": "string", "description": "the value as text (invalid UTF-8 replaced)"},
                                       "reason": {"type": "string"}}}}},
        "Cursor": {"type": ["object", "null"], "description": "where to go on from: send from_partition=partition&from_offset=offset with the same filters; null when every partition asked for was scanned",
                   "properties": {"partition": {"type": "integer"}, "offset": {"type": "integer"}}},
        "MessagePage": {"type": "object", "required": ["messages", "next", "scanned", "order"], "properties": {
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
            "next": {"$ref": "#/components/schemas/Cursor"},
            "scanned": {"type": "integer", "description": "records read for this page, matching or not (at most 10,000)"},
            "order": {"enum": ["newest", "oldest"]}}},
        "Produced": {"type": "object", "required": ["topic", "partition", "offset", "event_id"], "properties": {
            "topic": {"type": "string"}, "partition": {"type": "integer"},
            "offset": {"type": ["integer", "null"], "description": "null only on Kafka while the broker is unreachable: the event waits in the outbox"},
            "event_id": {"type": "string"},
            "kept_event_id": {"type": "boolean"},
            "reproduced_from": {"type": "object"}}},
        "GroupOffset": {"type": "object", "properties": {
            "partition": {"type": "integer"}, "offset": {"type": "integer", "description": "the committed offset: where the group resumes"},
            "finished": {"type": "array", "items": {"type": "integer"}, "description": "offsets above it handled already"},
            "lag": {"type": "integer"}, "latest": {"type": ["integer", "null"], "description": "the partition's end (the offset of its next message)"}}},
        "GroupOffsets": {"type": "object", "required": ["group", "topic", "partitions"], "properties": {
            "group": {"type": "string"}, "topic": {"type": "string"}, "partition": {"type": ["integer", "null"]},
            "to": {"type": "string"}, "lag": {"type": "integer"},
            "partitions": {"type": "array", "items": {"$ref": "#/components/schemas/GroupOffset"}}}},
        "ConsumerGroups": {"type": "object", "required": ["groups", "count", "total_lag"], "properties": {
            "count": {"type": "integer"}, "total_lag": {"type": "integer"},
            "groups": {"type": "array", "items": {"type": "object", "properties": {
                "group": {"type": "string"}, "lag": {"type": "integer"},
                "service": {"type": "boolean", "description": "a group serve runs"},
                "consuming_here": {"type": "boolean", "description": "this process consumes in the group: a reset is refused"},
                "joined": {"type": ["boolean", "null"]},
                "topics": {"type": "array", "items": {"type": "object", "properties": {
                    "topic": {"type": "string"}, "lag": {"type": "integer"},
                    "partitions": {"type": "array", "items": {"$ref": "#/components/schemas/GroupOffset"}}}}}}}}}}
    })
}

pub fn document() -> Value {
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    let auth = [("401", "no bearer token")];
    let with = |mut base: Vec<(&'static str, &'static str)>| {
        base.extend(auth);
        base
    };
    let mut commands = op(
        "Submit a command (the seed's data.action format); ?wait=true waits for its outcome; X-Deliver-At schedules it",
        "commands",
        &with(vec![
            ("200", "the outcome"),
            (
                "202",
                "submitted, or still pending; or, with X-Deliver-At, `scheduled` with its `deliver_at` (at once, whatever ?wait says)",
            ),
            (
                "400",
                "malformed command; or an X-Deliver-At that is not an RFC 3339 time, more than a minute past or too far ahead (`invalid_deliver_at`)",
            ),
            ("404", "unknown command topic"),
            ("413", "body too large"),
            ("415", "the body is not application/json"),
            (
                "422",
                "with ?wait=true: the bank rejected the command (its code and reason); or the Idempotency-Key was used with another body",
            ),
            (
                "429",
                "the command handler is behind, or too many commands are scheduled (`schedule_full`); Retry-After says when to try again",
            ),
        ]),
    );
    commands["parameters"] = json!([
        {"name": "kind", "in": "path", "required": true, "schema": {"enum": ["transactions", "customers", "loans"]},
         "example": "transactions"},
        {"name": "wait", "in": "query", "schema": {"type": "boolean"}},
        {"name": "timeout_ms", "in": "query", "schema": {"type": "integer", "maximum": 30000}},
        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
        {"name": "X-Correlation-Id", "in": "header", "schema": {"type": "string"}},
        {"name": "X-Deliver-At", "in": "header", "schema": {"type": "string", "format": "date-time"},
         "description": "schedules the command for this time (RFC 3339): from a minute ago up to [schedule] max_ahead_days (400 by default) ahead; the outcome is read later with GET /commands/{id}",
         "example": "2027-01-31T09:00:00Z"}
    ]);
    commands["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["action"], "properties": {
            "action": {"type": "string", "description": "deposit, withdraw, transfer (transactions); create, update, kyc, open_account (customers); originate, disburse, pay, ... (loans)"},
            "account_id": {"type": "string"},
            "amount": {"type": "string", "pattern": "^[0-9]{1,18}(\\.[0-9]{1,8})?$", "description": "a decimal as a string"},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}},
        "example": {"action": "deposit", "account_id": "acc_1", "amount": "100.50", "currency": "USD"}}}});
    let mut outcome = op(
        "The outcome of a command, from the event store",
        "commands",
        &with(vec![("200", "the outcome"), ("400", "invalid command id"), ("404", "unknown, or not carried out yet")]),
    );
    // One path template for both methods: here the segment is a command id (`cmd_...`).
    outcome["parameters"] = id_param("kind", "the command id, as POST answered it");
    let mut config = op(
        "Switch the bus at runtime: drain, switch, resume; written to the config file",
        "kafka",
        &with(vec![
            ("200", "switched"),
            ("400", "invalid request"),
            ("409", "cannot switch here, or the bus is not durable outside --dev"),
            ("413", "body too large"),
            ("415", "the body is not application/json"),
            ("502", "new bus unreachable; nothing changed"),
        ]),
    );
    config["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["bus_type"], "additionalProperties": false, "properties": {
            "bus_type": {"enum": ["memory", "log", "embedded", "kafka"]},
            "bootstrap_servers": {"type": "string"},
            "client_id": {"type": "string"}}}}}});
    let mut publish_test = op(
        "Publish a test event (dev mode only)",
        "kafka",
        &with(vec![
            ("201", "published"),
            ("400", "invalid event"),
            ("403", "not in dev mode"),
            ("413", "body too large"),
            ("415", "the body is not application/json"),
        ]),
    );
    publish_test["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "description": "an EventSchema: event_type, entity_type, entity_id, data"}}}});
    let read = |summary: &str, tag: &str, param: &str, missing: &'static str| {
        let mut operation = op(summary, tag, &with(vec![("200", "found"), ("400", "invalid id"), ("404", missing)]));
        operation["parameters"] = id_param(param, "the id");
        operation
    };
    let mut accounts =
        op("Accounts with balances, by id", "read models", &with(vec![("200", "accounts"), ("400", "invalid limit")]));
    accounts["parameters"] = json!([limit_param(1000)]);
    let mut alerts =
        op("Compliance alerts, newest first", "read models", &with(vec![("200", "alerts"), ("400", "invalid limit")]));
    alerts["parameters"] = json!([limit_param(1000)]);
    let mut recent = op(
        "Recent events, newest first, on every backend",
        "kafka",
        &with(vec![("200", "events"), ("400", "invalid topic or limit"), ("404", "unknown topic")]),
    );
    recent["parameters"] = json!([topic_param("one topic; all if absent"), limit_param(500)]);
    let mut stream = answers_in(
        op(
            "Live tail as Server-Sent Events; it does not end",
            "kafka",
            &with(vec![("200", "the events"), ("400", "invalid topic"), ("404", "unknown topic")]),
        ),
        "200",
        "text/event-stream",
    );
    stream["parameters"] = json!([topic_param("topics, comma-separated; all if absent")]);
    let filter_params = json!([
        topic_param("the source topic, or its .dlq topic"),
        {"name": "group", "in": "query", "schema": {"type": "string"}, "description": "the group whose subscription failed"},
        {"name": "error", "in": "query", "schema": {"type": "string"}, "description": "text the error contains, case-insensitive"},
        {"name": "since", "in": "query", "schema": {"type": "string"}, "description": "RFC 3339, or an age: 15m, 2h, 7d"},
        {"name": "until", "in": "query", "schema": {"type": "string"}, "description": "RFC 3339, or an age: 15m, 2h, 7d"},
        {"name": "state", "in": "query", "schema": {"enum": ["open", "failed", "retrying", "parked", "redrive_requested", "resolved", "all"]}},
        limit_param(1000)
    ]);
    let mut letters = op(
        "Dead letters of every subscription, oldest first: open ones unless `state` says otherwise",
        "dead letters",
        &with(vec![("200", "letters"), ("400", "a filter or limit that does not parse")]),
    );
    letters["parameters"] = filter_params;
    let mut letter = op(
        "One dead letter: its error, its original (personal data masked) and its history, who asked what from where",
        "dead letters",
        &with(vec![("200", "the letter"), ("404", "unknown dead letter")]),
    );
    letter["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let selection = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": false,
        "description": "the letters: `ids`, or a `filter` (the query parameters of GET /dead-letters as fields), not both",
        "properties": {
            "ids": {"type": "array", "items": {"type": "string"}, "maxItems": 10000},
            "filter": {"type": "object", "additionalProperties": false, "properties": {
                "topic": {"type": "string"}, "group": {"type": "string"}, "error": {"type": "string"},
                "since": {"type": "string"}, "until": {"type": "string"}, "state": {"type": "string"}, "limit": {"type": "integer"}}}}},
        "example": {"ids": ["0191f1c2-8a7e-7cc0-9a4e-6f2d3b1c0a11"]}}}});
    let action = |summary: &str| {
        let mut operation = op(
            summary,
            "dead letters",
            &with(vec![
                ("200", "what was asked for each letter, and why not where it was not"),
                ("400", "neither ids nor a filter, both, or a filter that does not parse"),
                ("404", "an unknown dead letter (nothing is asked then)"),
                ("413", "body too large"),
                ("415", "the body is not application/json"),
                ("422", "no letter matches, or more than 10,000 do"),
            ]),
        );
        operation["requestBody"] = selection.clone();
        operation
    };
    let redrive = action(
        "Redrive letters: their group handles them again, keeping each event_id; the records parked behind follow in order",
    );
    let discard = action("Discard letters: the records parked behind each go on; a discarded command is rejected");
    let mut browse = answers_with(
        op(
            "Browse a topic's messages: newest first (order=oldest for the other way), filtered; at most 10,000 records read and `limit` returned per request, with a cursor to go on. With format=jsonl or Accept: application/x-ndjson, the same page as JSON lines (one message per line), as an attachment, the cursor in X-Eventbus-Next (`partition:offset`)",
            "console",
            &with(vec![
                ("200", "the page"),
                (
                    "400",
                    "a filter that does not parse: partition, offset, limit, order, format, since/until, where, or a partition the topic does not have",
                ),
                ("404", "unknown topic"),
            ]),
        ),
        "200",
        "MessagePage",
    );
    browse["responses"]["200"]["content"]["application/x-ndjson"] = json!({"schema": {"type": "string"}});
    browse["responses"]["200"]["headers"] = json!({
        "X-Eventbus-Next": {"description": "JSON lines only: the cursor, `partition:offset`, when there is more", "schema": {"type": "string"}},
        "X-Eventbus-Scanned": {"description": "JSON lines only: records read", "schema": {"type": "integer"}}});
    let uint = |name: &str, description: &str| json!({"name": name, "in": "query", "description": description, "schema": {"type": "integer", "minimum": 0}});
    let text = |name: &str, description: &str| json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "minLength": 1}});
    let when = |name: &str, description: &str| json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "format": "date-time"}});
    browse["parameters"] = json!([
        topic_path_param(),
        uint("partition", "only this partition; every partition when absent, scanned in partition order"),
        uint("from_partition", "the cursor's partition: the scan starts there, at from_offset, and goes on with the later partitions"),
        uint("from_offset", "the first offset looked at (inclusive; going down with order=newest); with from_partition, in that partition only, else in every partition"),
        limit_param(1000),
        {"name": "order", "in": "query", "schema": {"enum": ["newest", "oldest"]}, "description": "newest (the default) or oldest first, within each partition"},
        text("key", "only messages with this key"),
        text("event_type", "only events of this type"),
        when("since", "only messages appended at or after this time (RFC 3339)"),
        when("until", "only messages appended before this time (RFC 3339)"),
        text("where", "path=value: a dotted path into the event's JSON (data.account_id, metadata.correlation_id, event_type; array items by index) whose value, as text, equals value exactly (strings as they are; numbers, true, false and null as JSON writes them; objects and arrays never match). A value that is not an event never matches."),
        {"name": "format", "in": "query", "schema": {"enum": ["json", "jsonl"]}, "description": "jsonl: JSON lines, as an attachment"}
    ]);
    let mut produce = answers_with(
        op(
            "Produce one event to the topic (a missing event_id and timestamp are filled in)",
            "console",
            &with(vec![
                ("201", "published"),
                ("400", "invalid topic, key or event"),
                ("404", "unknown topic"),
                ("413", "body or message too large"),
                ("415", "the body is not application/json"),
            ]),
        ),
        "201",
        "Produced",
    );
    produce["parameters"] = json!([topic_path_param()]);
    produce["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["event"], "additionalProperties": false, "properties": {
            "key": {"type": "string", "minLength": 1, "maxLength": 256, "description": "the partition key; the event's entity_id when absent"},
            "event": {"type": "object", "description": "EventSchema JSON: event_type, entity_type, entity_id, data, metadata, ..."}}},
        "example": {"key": "acc_1", "event": {"event_type": "transaction_created", "entity_type": "transaction", "entity_id": "acc_1", "data": {"account_id": "acc_1", "amount": "10.00", "currency": "USD"}}}}}});
    let mut reproduce = answers_with(
        op(
            "Re-produce a message: publish its event again, with its key, to the same topic or another, as a new message with a new event_id (keep_event_id keeps it, and then consumers that handled it drop the copy as a repeat) and metadata.reproduced_from naming the original",
            "console",
            &with(vec![
                ("201", "published"),
                ("400", "invalid topic, partition, offset or body"),
                ("404", "unknown topic, or no message at that place"),
                ("413", "body or message too large"),
                ("415", "a body that is not application/json"),
                ("422", "the message is not an event"),
            ]),
        ),
        "201",
        "Produced",
    );
    let place = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"}});
    reproduce["parameters"] = json!([topic_path_param(), place("partition"), place("offset")]);
    reproduce["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": false, "properties": {
            "topic": {"type": "string", "description": "publish to this topic instead"},
            "keep_event_id": {"type": "boolean", "default": false}}}}}});
    let mut reset = answers_with(
        op(
            "Reset a consumer group's committed offset in one partition of a topic, or in all of them, like kafka-consumer-groups --reset-offsets. Refused (409) while this process consumes in the group; consumers in other processes must be stopped first, or they commit over the reset",
            "console",
            &with(vec![
                ("200", "the group's offsets in the topic after the reset"),
                ("400", "invalid group, topic, partition or position"),
                ("404", "unknown topic"),
                ("409", "the group has consumers in this process"),
                ("413", "body too large"),
                ("415", "the body is not application/json"),
            ]),
        ),
        "200",
        "GroupOffsets",
    );
    reset["parameters"] = json!([{"name": "group", "in": "path", "required": true, "description": "the consumer group",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,255}$"}, "example": "nexum-command-handler"}]);
    reset["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["topic", "to"], "additionalProperties": false, "properties": {
            "topic": {"type": "string"},
            "partition": {"type": "integer", "minimum": 0, "maximum": 4294967295_u64, "description": "one partition; every partition when absent"},
            "to": {"type": "string", "description": "earliest, latest, offset:N or time:RFC3339 (clamped to what the partition holds)"}}},
        "example": {"topic": "nexum.commands.transactions", "partition": 0, "to": "earliest"}}}});
    let groups = answers_with(
        op(
            "Every consumer group of the bus (those of other processes too, Kafka's ListGroups, the embedded store's groups), with committed offset, end and lag per partition of each topic, and totals",
            "bus",
            &with(vec![("200", "groups")]),
        ),
        "200",
        "ConsumerGroups",
    );
    let mut schemas = json!({
        "Any": {"type": "object"},
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["status", "code", "message"],
            "properties": {"status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                           "required_role": {"enum": Role::ALL, "description": "in a 403 for a role too low: the role needed"},
                           "cause": {"enum": super::disk::Fault::ALL.map(super::disk::Fault::code),
                                     "description": "in a 503 of a write that failed for the service's disk: what an operator must mend"}}}}}
    });
    if let (Some(schemas), Value::Object(console)) = (schemas.as_object_mut(), console_schemas()) {
        schemas.extend(console);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "eventbus serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Core banking on the event bus. Every endpoint but /health, /ready, /metrics, /openapi.json and the dashboard needs `Authorization: Bearer <token>`. Each token has a role, viewer < operator < admin: reads need a viewer, other methods an operator, and changes to the bus an admin (`x-required-role` of each operation); a role too low is a 403 whose `error.required_role` names the role needed. Viewers get names, emails and phones masked."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        },
        "security": [{"bearer": []}],
        "paths": {
            "/": {"get": answers_in(public("The dashboard (its files under /assets/)", "dashboard", &[("200", "the page")]), "200", "text/html")},
            "/health": {"get": public("The process is alive", "meta", &[("200", "alive")])},
            "/ready": {"get": public("The bus runs, the event store answers and takes writes", "meta", &[("200", "ready"), ("503", "not ready")])},
            "/openapi.json": {"get": public("This document", "meta", &[("200", "the document")])},
            "/kafka/status": {"get": protected(GET, "/kafka/status", op("Bus status (the seed's shape)", "kafka", &with(vec![("200", "status")])))},
            "/kafka/events": {"get": protected(GET, "/kafka/events", recent)},
            "/kafka/config": {"post": protected(POST, "/kafka/config", config)},
            "/events/stream": {"get": protected(GET, "/events/stream", stream)},
            "/metrics": {"get": answers_in(public("Prometheus metrics (text format 0.0.4)", "meta", &[("200", "metrics")]), "200", "text/plain")},
            "/accounts": {"get": protected(GET, "/accounts", accounts)},
            "/kafka/publish-test": {"post": protected(POST, "/kafka/publish-test", publish_test)},
            "/commands/{kind}": {"post": protected(POST, "/commands/{kind}", commands), "get": protected(GET, "/commands/{kind}", outcome)},
            "/accounts/{id}": {"get": protected(GET, "/accounts/{id}", read("An account: balance, status, latest statement", "read models", "id", "unknown account"))},
            "/customers/{id}": {"get": protected(GET, "/customers/{id}", read("A customer of the directory", "read models", "id", "unknown customer"))},
            "/loans/{id}": {"get": protected(GET, "/loans/{id}", read("A loan of the loan book", "read models", "id", "unknown loan"))},
            "/compliance/alerts": {"get": protected(GET, "/compliance/alerts", alerts)},
            "/topics": {"get": protected(GET, "/topics", op("Topics with partitions and offsets", "bus", &with(vec![("200", "topics")])))},
            "/consumer-groups": {"get": protected(GET, "/consumer-groups", groups)},
            "/consumer-groups/{group}/offsets": {"post": protected(POST, "/consumer-groups/{group}/offsets", reset)},
            "/topics/{topic}/messages": {"get": protected(GET, "/topics/{topic}/messages", browse), "post": protected(POST, "/topics/{topic}/messages", produce)},
            "/topics/{topic}/messages/{partition}/{offset}/reproduce": {"post": protected(POST, "/topics/{topic}/messages/{partition}/{offset}/reproduce", reproduce)},
            "/dead-letters": {"get": protected(GET, "/dead-letters", letters)},
            "/dead-letters/{id}": {"get": protected(GET, "/dead-letters/{id}", letter)},
            "/dead-letters/redrive": {"post": protected(POST, "/dead-letters/redrive", redrive)},
            "/dead-letters/discard": {"post": protected(POST, "/dead-letters/discard", discard)}
        }
    })
}
