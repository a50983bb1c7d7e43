//! Every endpoint through the router (`oneshot`), error paths included, on a memory bus with
//! core banking running over a SQLite event store.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use eventbus::{BusConfig, EventBus, MemoryBus};
use http_body_util::BodyExt;
use nexum::clock::SystemClock;
use nexum::service::{CoreBanking, ServiceConfig};
use nexum::store::{SqliteStore, SqliteSync};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{ApiConfig, ApiState, MAX_BODY_BYTES, router};

pub(super) const TOKEN: &str = "test-token-0123456789";

pub(super) struct Api {
    _dir: tempfile::TempDir,
    pub(super) router: Router,
    pub(super) service: CoreBanking,
    pub(super) bus: Arc<dyn EventBus>,
}

pub(super) async fn api_with(config: ApiConfig) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::memory(BusConfig::default()).await.unwrap());
    bus.start().await.unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bank.db"), SqliteSync::Normal).unwrap());
    let service =
        CoreBanking::start(bus.clone(), store, Arc::new(SystemClock), ServiceConfig::default()).await.unwrap();
    let state = ApiState::new(bus.clone(), service.view(), config, None).await.unwrap();
    Api { _dir: dir, router: router(state), service, bus }
}

async fn api() -> Api {
    api_with(ApiConfig { token: Some(TOKEN.into()), dev_mode: true, ..ApiConfig::default() }).await
}

impl Api {
    pub(super) async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string());
        self.raw(method, uri, token, body.as_deref().map(str::as_bytes).unwrap_or_default(), &[]).await
    }

    async fn raw(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let (status, _, json) = self.exchange(method, uri, token, body, headers).await;
        (status, json)
    }

    /// A request and the whole answer: status, headers and JSON body.
    pub(super) async fn exchange(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.router.clone().oneshot(request.body(Body::from(body.to_vec())).unwrap()).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, headers, json)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, Some(TOKEN), None).await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, uri, Some(TOKEN), Some(body)).await
    }

    /// A customer with a checking account, made through the API, waiting for each outcome.
    pub(super) async fn customer_with_account(&self, customer: &str, account: &str) {
        let (status, answer) = self
            .post(
                "/commands/customers?wait=true",
                json!({"action": "create", "customer_id": customer, "first_name": "Ada", "last_name": "Lovelace",
                       "email": "ada@example.com"}),
            )
            .await;
        assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("accepted")), "{answer}");
        let (status, answer) = self
            .post(
                "/commands/customers?wait=true",
                json!({"action": "open_account", "customer_id": customer, "account_type": "checking",
                       "currency": "USD", "account_id": account}),
            )
            .await;
        assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("accepted")), "{answer}");
    }

    /// `GET /metrics` without a token (it is public, like most scrape targets), in the
    /// Prometheus text format.
    pub(super) async fn metrics(&self) -> String {
        let request = Request::get("/metrics").body(Body::empty()).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    /// Polls `uri` until it answers 200, at most 10 s.
    pub(super) async fn eventually(&self, uri: &str, check: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let (status, body) = self.get(uri).await;
            if status == StatusCode::OK && check(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{uri} never answered as expected");
    }
}

/// Asserts the one error shape.
pub(super) fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["status"], expected.as_u16(), "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn health_ready_and_openapi_need_no_token() {
    let api = api().await;
    let (status, body) = api.call(Method::GET, "/health", None, None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    // Ready once the command handler has joined its group, which its consumer does on its own
    // task: moments after the start, longer on a loaded machine.
    let mut answer = api.call(Method::GET, "/ready", None, None).await;
    for _ in 0..100 {
        if answer.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = api.call(Method::GET, "/ready", None, None).await;
    }
    let (status, body) = answer;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")), "{body}");
    let (status, body) = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["openapi"], "3.1.0");
    for path in [
        "/kafka/status",
        "/commands/{kind}",
        "/accounts/{id}",
        "/consumer-groups",
        "/consumer-groups/{group}/offsets",
        "/topics/{topic}/messages",
        "/topics/{topic}/messages/{partition}/{offset}/reproduce",
        "/dead-letters",
        "/dead-letters/{id}",
    ] {
        assert!(body["paths"].get(path).is_some(), "{path} is documented");
    }
    // The document says which routes need no token, and what the bodies look like.
    for path in ["/health", "/ready", "/metrics", "/openapi.json", "/"] {
        assert_eq!(body["paths"][path]["get"]["security"], json!([]), "{path} is public");
    }
    assert!(body["paths"]["/kafka/status"]["get"].get("security").is_none(), "the global bearer rule applies");
    for (path, method) in [("/commands/{kind}", "post"), ("/kafka/config", "post"), ("/kafka/publish-test", "post")] {
        let schema = &body["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(schema["type"], "object", "{path} has a request schema");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn ready_is_503_and_says_why_when_the_data_directory_cannot_be_written() {
    // Given a service whose data directory is not a directory it can write to
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let config = ApiConfig { token: Some(TOKEN.into()), data_dir: Some(not_a_dir), ..ApiConfig::default() };
    let api = api_with(config).await;

    // When readiness is asked for, then it is refused with the reason
    let (status, body) = api.call(Method::GET, "/ready", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["disk_writable"], false);
    // (the command handler may not have joined yet either: that is a second problem, in any order)
    let problems = body["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p.as_str().unwrap().contains("cannot write")), "{body}");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn protected_endpoints_answer_401_without_a_token_and_403_with_a_wrong_one() {
    let api = api().await;
    for (method, uri) in [
        (Method::GET, "/kafka/status"),
        (Method::POST, "/kafka/publish-test"),
        (Method::POST, "/commands/transactions"),
        (Method::GET, "/accounts/acc_1"),
        (Method::GET, "/customers/cust_1"),
        (Method::GET, "/loans/loan_1"),
        (Method::GET, "/compliance/alerts"),
        (Method::GET, "/topics"),
        (Method::GET, "/consumer-groups"),
    ] {
        let (status, body) = api.call(method.clone(), uri, None, Some(json!({}))).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, body) = api.call(method, uri, Some("wrong"), Some(json!({}))).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_configured_token_protected_endpoints_refuse_everyone() {
    let api = api_with(ApiConfig { token: None, dev_mode: false, ..ApiConfig::default() }).await;
    let (status, body) = api.call(Method::GET, "/topics", Some("anything"), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert!(body["error"]["message"].as_str().unwrap().contains("EVENTBUS_API_TOKEN"));
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn kafka_status_has_the_seeds_shape() {
    let api = api().await;
    let (status, body) = api.get("/kafka/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "running");
    assert_eq!(body["type"], "InMemoryEventBus");
    assert!(body["total_events"].is_u64());
    assert!(body["events_by_topic"].is_object());
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn publish_test_publishes_in_dev_mode_only() {
    let api = api().await;
    let test = json!({"topic": "nexum.test.events", "event_type": "test_event", "entity_type": "test",
                      "entity_id": "test_123", "data": {"message": "Hello Kafka"}});
    let (status, body) = api.post("/kafka/publish-test", test.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "published");
    let (_, status_body) = api.get("/kafka/status").await;
    assert_eq!(status_body["events_by_topic"]["nexum.test.events"], 1);
    let (status, body) = api
        .post(
            "/kafka/publish-test",
            json!({"topic": "Bad Topic!", "event_type": "x",
        "entity_type": "t", "entity_id": "1"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_topic");
    api.service.shutdown().await.unwrap();

    let production = api_with(ApiConfig { token: Some(TOKEN.into()), dev_mode: false, ..ApiConfig::default() }).await;
    let (status, body) = production.post("/kafka/publish-test", test).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "dev_mode_only");
    production.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_command_waits_for_its_outcome_and_the_read_models_follow() {
    let api = api().await;
    api.customer_with_account("cust_api", "acc_api").await;

    let (status, answer) = api
        .post(
            "/commands/transactions?wait=true",
            json!({"action": "deposit", "account_id": "acc_api", "amount": "250.00", "currency": "USD"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(answer["event_types"], json!(["transaction_created", "transaction_posted"]));

    let account = api.eventually("/accounts/acc_api", |a| a["balance"] == "250.00").await;
    assert_eq!(account["currency"], "USD");
    let customer = api.eventually("/customers/cust_api", |c| c["account_ids"] == json!(["acc_api"])).await;
    assert_eq!(customer["customer_id"], "cust_api");

    let (status, answer) = api
        .post(
            "/commands/transactions?wait=true",
            json!({"action": "withdraw", "account_id": "acc_api", "amount": "9000.00", "currency": "USD"}),
        )
        .await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("failed")), "{answer}");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_command_answers_with_its_code_and_reason() {
    let api = api().await;
    let (status, answer) = api
        .post(
            "/commands/transactions?wait=true",
            json!({"action": "deposit", "account_id": "acc_nowhere", "amount": "1.00", "currency": "USD"}),
        )
        .await;
    assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "unknown_account");
    assert!(answer["error"]["message"].as_str().unwrap().contains("acc_nowhere"), "{answer}");
    let id = answer["error"]["command_id"].as_str().unwrap();

    // The outcome stays readable by the command's id: 200, with the status, code and reason.
    let (status, outcome) = api.get(&format!("/commands/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        (outcome["status"].as_str(), outcome["error_code"].as_str()),
        (Some("rejected"), Some("unknown_account"))
    );
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_outcome_of_an_unknown_or_malformed_command_id_is_a_clear_error() {
    let api = api().await;
    let (status, body) = api.get("/commands/cmd_never_sent").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_command");
    let (status, body) = api.get("/commands/cmd%20bad").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_id");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_commands_are_400_before_they_reach_the_bus() {
    let api = api().await;
    let cases = [
        (json!({"action": "deposit", "account_id": "acc_1", "amount": 5, "currency": "USD"}), "malformed"),
        (json!({"action": "teleport"}), "unknown_action"),
        (json!({"account_id": "acc_1"}), "missing_action"),
    ];
    for (body, code) in cases {
        let (status, answer) = api.post("/commands/transactions", body).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, code);
    }
    let (status, answer) = api.raw(Method::POST, "/commands/transactions", Some(TOKEN), b"{not json", &[]).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_json");
    // A field named twice is ambiguous: a deposit to one reader, a withdrawal to another
    let twice =
        br#"{"action": "deposit", "account_id": "acc_1", "amount": "5.00", "currency": "USD", "action": "withdraw"}"#;
    let (status, answer) = api.raw(Method::POST, "/commands/transactions", Some(TOKEN), twice, &[]).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_json");
    assert!(answer["error"]["message"].as_str().unwrap().contains("names the field `action` twice"), "{answer}");
    let (status, answer) = api.post("/commands/payments", json!({"action": "deposit"})).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "unknown_command_topic");
    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, answer) = api.raw(Method::POST, "/commands/transactions", Some(TOKEN), &huge, &[]).await;
    assert_error(status, &answer, StatusCode::PAYLOAD_TOO_LARGE, "invalid_body");
    let (_, status_body) = api.get("/kafka/status").await;
    assert!(status_body["events_by_topic"].get("nexum.commands.transactions").is_none(), "{status_body}");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn values_wrong_whatever_the_banks_state_are_a_422_before_the_bus() {
    let api = api().await;
    let deposit = |amount: &str, currency: &str| json!({"action": "deposit", "account_id": "acc_1", "amount": amount, "currency": currency});
    let thirty_digits = "9".repeat(30);
    let mut cases = vec![];
    for amount in
        ["-5", "0", "0.00", "1e400", "NaN", "1.001", thirty_digits.as_str(), "+5.00", " 5.00", "1000000000001"]
    {
        cases.push(("/commands/transactions", deposit(amount, "USD"), "amount"));
    }
    cases.push(("/commands/transactions", deposit("5.00", "XYZ"), "currency"));
    let customer = |first: &str, email: &str| json!({"action": "create", "customer_id": "cust_v", "first_name": first, "last_name": "Smith", "email": email});
    let long_name = "J".repeat(101);
    cases.push(("/commands/customers", customer("", "jane@example.com"), "first_name"));
    cases.push(("/commands/customers", customer(&long_name, "jane@example.com"), "first_name"));
    cases.push(("/commands/customers", customer("Jane", "not-an-email"), "email"));
    cases.push((
        "/commands/customers",
        json!({"action": "open_account", "customer_id": "cust_v", "account_type": "checking", "currency": "EURO"}),
        "currency",
    ));
    for (uri, body, field) in cases {
        let (status, answer) = api.post(uri, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["status"], 422, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(field) || message.contains("amount"), "{field}: {message}");
    }
    // Nothing reached the bus
    let (_, status_body) = api.get("/kafka/status").await;
    assert!(status_body["events_by_topic"].get("nexum.commands.transactions").is_none(), "{status_body}");
    assert!(status_body["events_by_topic"].get("nexum.commands.customers").is_none(), "{status_body}");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_command_one_command() {
    let api = api().await;
    api.customer_with_account("cust_idem", "acc_idem").await;
    let deposit = json!({"action": "deposit", "account_id": "acc_idem", "amount": "10.00", "currency": "USD"});
    let body = deposit.to_string();
    let key = [("idempotency-key", "retry-42")];

    let (_, first) =
        api.raw(Method::POST, "/commands/transactions?wait=true", Some(TOKEN), body.as_bytes(), &key).await;
    let (_, second) = api.raw(Method::POST, "/commands/transactions", Some(TOKEN), body.as_bytes(), &key).await;

    assert_eq!(first["command_id"], second["command_id"]);
    assert_eq!(first["status"], "accepted");
    // Let the repeat be handled, then check that the money moved once.
    let probe = json!({"action": "deposit", "account_id": "acc_idem", "amount": "1.00", "currency": "USD"});
    let (_, answer) = api.post("/commands/transactions?wait=true", probe).await;
    assert_eq!(answer["status"], "accepted");
    api.eventually("/accounts/acc_idem", |a| a["balance"] == "11.00").await;
    let (status, answer) = api
        .raw(Method::POST, "/commands/transactions", Some(TOKEN), body.as_bytes(), &[("idempotency-key", "bad key")])
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_header");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_command_with_x_deliver_at_is_scheduled_and_carried_out_at_that_time() {
    // Given an account
    let api = api().await;
    api.customer_with_account("cust_later", "acc_later").await;
    let deposit = json!({"action": "deposit", "account_id": "acc_later", "amount": "5.00", "currency": "USD"});
    let due = (chrono::Utc::now() + chrono::Duration::milliseconds(1_500))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);

    // When a deposit is posted for 1.5 s from now, even asking to wait for it
    let body = deposit.to_string();
    let (status, answer) = api
        .raw(Method::POST, "/commands/transactions?wait=true", Some(TOKEN), body.as_bytes(), &[("x-deliver-at", &due)])
        .await;

    // Then it answers 202 scheduled with the time, at once
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!((answer["status"].as_str(), answer["deliver_at"].as_str()), (Some("scheduled"), Some(due.as_str())));
    // and it is not carried out before the time
    let id = answer["command_id"].as_str().unwrap().to_owned();
    let (status, _) = api.get(&format!("/commands/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/accounts/acc_later").await.1["balance"], "0");
    // and the metrics count it as pending
    assert!(api.metrics().await.contains("\neventbus_scheduled_pending 1\n"));
    // but after it, its outcome appears, the money is there and nothing is pending
    let outcome = api.eventually(&format!("/commands/{id}"), |o| o["status"] == "accepted").await;
    assert_eq!(outcome["status"], "accepted");
    api.eventually("/accounts/acc_later", |a| a["balance"] == "5.00").await;
    assert!(api.metrics().await.contains("\neventbus_scheduled_pending 0\n"));
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_x_deliver_at_is_a_400_that_says_why() {
    let api = api().await;
    let deposit = json!({"action": "deposit", "account_id": "acc_1", "amount": "5.00", "currency": "USD"}).to_string();
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let far = (chrono::Utc::now() + chrono::Duration::days(3 * 365)).to_rfc3339();
    for (deliver_at, reason) in [
        ("tomorrow", "invalid deliver_at `tomorrow`"),
        (past.as_str(), "is in the past"),
        (far.as_str(), "at most 400 days from now"),
    ] {
        // When a command is posted with it
        let headers = [("x-deliver-at", deliver_at)];
        let (status, answer) =
            api.raw(Method::POST, "/commands/transactions", Some(TOKEN), deposit.as_bytes(), &headers).await;
        // Then it is a 400 in the one error shape, with the reason
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_deliver_at");
        assert!(answer["error"]["message"].as_str().unwrap().contains(reason), "{answer}");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_retry_of_a_command_that_ran_answers_at_once_with_the_stored_outcome() {
    // Given a deposit carried out under an idempotency key
    let api = api().await;
    api.customer_with_account("cust_replay", "acc_replay").await;
    let body =
        json!({"action": "deposit", "account_id": "acc_replay", "amount": "10.00", "currency": "USD"}).to_string();
    let key = [("idempotency-key", "replay-1")];
    let (status, first) =
        api.raw(Method::POST, "/commands/transactions?wait=true", Some(TOKEN), body.as_bytes(), &key).await;
    assert_eq!((status, first["status"].as_str()), (StatusCode::OK, Some("accepted")), "{first}");

    // When it is sent again, waiting up to 30 s for the outcome
    let started = std::time::Instant::now();
    let (status, headers, again) = api
        .exchange(Method::POST, "/commands/transactions?wait=true&timeout_ms=30000", Some(TOKEN), body.as_bytes(), &key)
        .await;

    // Then the stored outcome comes back at once, marked as replayed, and the money moved once
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(again, first);
    let (_, account) = api.get("/accounts/acc_replay").await;
    assert_eq!(account["balance"], "10.00", "{account}");

    // When the same key comes with another body, then it is a 422, and nothing moves
    let other =
        json!({"action": "deposit", "account_id": "acc_replay", "amount": "99.00", "currency": "USD"}).to_string();
    let (status, answer) = api.raw(Method::POST, "/commands/transactions", Some(TOKEN), other.as_bytes(), &key).await;
    assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_requests_with_one_new_key_both_get_the_outcome_of_one_command() {
    // Given an account
    let api = api().await;
    api.customer_with_account("cust_race", "acc_race").await;
    let body = json!({"action": "deposit", "account_id": "acc_race", "amount": "7.00", "currency": "USD"}).to_string();
    let key = [("idempotency-key", "race-1")];

    // When two requests with one new key arrive together, both waiting for the outcome
    let uri = "/commands/transactions?wait=true&timeout_ms=10000";
    let (first, second) = tokio::join!(
        api.raw(Method::POST, uri, Some(TOKEN), body.as_bytes(), &key),
        api.raw(Method::POST, uri, Some(TOKEN), body.as_bytes(), &key),
    );

    // Then both get the outcome of one command, and the money moved once
    for (status, answer) in [&first, &second] {
        assert_eq!((*status, answer["status"].as_str()), (StatusCode::OK, Some("accepted")), "{answer}");
    }
    assert_eq!(first.1["command_id"], second.1["command_id"]);
    assert_eq!(first.1["event_ids"], second.1["event_ids"]);
    let probe = json!({"action": "deposit", "account_id": "acc_race", "amount": "1.00", "currency": "USD"});
    let (_, answer) = api.post("/commands/transactions?wait=true", probe).await;
    assert_eq!(answer["status"], "accepted");
    api.eventually("/accounts/acc_race", |a| a["balance"] == "8.00").await;
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_error_has_the_one_json_shape_even_the_frameworks_own() {
    let api = api().await;
    let long = format!("/accounts?limit={}", "9".repeat(super::error::MAX_URI_BYTES));
    let cases: [(Method, &str, StatusCode, &str); 8] = [
        (Method::GET, "/accounts?limit=abc", StatusCode::BAD_REQUEST, "invalid_request"),
        (Method::GET, "/accounts?colour=blue", StatusCode::BAD_REQUEST, "invalid_request"),
        (Method::POST, "/commands/transactions?wait=true&timeout_ms=-1", StatusCode::BAD_REQUEST, "invalid_request"),
        (Method::GET, "/accounts/%FF%FE", StatusCode::BAD_REQUEST, "invalid_request"),
        (Method::DELETE, "/accounts/acc_1", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (Method::GET, "/kafka/config", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (Method::GET, &long, StatusCode::URI_TOO_LONG, "uri_too_long"),
        (Method::PUT, "/health", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    let deposit = json!({"action": "deposit", "account_id": "acc_1", "amount": "1.00", "currency": "USD"}).to_string();
    for (method, uri, status, code) in cases {
        let (got, headers, body) = api.exchange(method.clone(), uri, Some(TOKEN), deposit.as_bytes(), &[]).await;
        assert_error(got, &body, status, code);
        assert_eq!(headers["content-type"], "application/json", "{method} {uri}");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(headers.contains_key("allow"), "405 for {method} {uri} names the methods");
        }
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_body_that_is_not_json_by_its_content_type_is_a_415() {
    let api = api().await;
    let deposit = json!({"action": "deposit", "account_id": "acc_1", "amount": "1.00", "currency": "USD"}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
        "application/json; charset=utf-16",
        "application/json; Charset=\"latin1\"",
    ] {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/commands/transactions")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", content_type)
            .body(Body::from(deposit.clone()))
            .unwrap();
        let response = api.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_error(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    let (status, _) = api
        .raw(
            Method::POST,
            "/commands/transactions",
            Some(TOKEN),
            deposit.as_bytes(),
            &[("content-type", "application/json; charset=UTF-8")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let quoted = [("content-type", "application/json;charset=\"utf-8\"")];
    let (status, _) = api.raw(Method::POST, "/commands/transactions", Some(TOKEN), deposit.as_bytes(), &quoted).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn read_models_answer_404_for_unknown_ids_and_400_for_malformed_ones() {
    let api = api().await;
    for (uri, code) in [
        ("/accounts/acc_unknown", "unknown_account"),
        ("/customers/cust_unknown", "unknown_customer"),
        ("/loans/loan_unknown", "unknown_loan"),
    ] {
        let (status, body) = api.get(uri).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, code);
    }
    let (status, body) = api.get("/accounts/acc%20bad").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_id");
    let (status, body) = api.get("/compliance/alerts?limit=0").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_limit");
    let (status, body) = api.get("/no/such/path").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn compliance_alerts_loans_topics_and_groups_are_listed() {
    let api = api().await;
    api.customer_with_account("cust_big", "acc_big").await;
    let (_, answer) = api
        .post(
            "/commands/customers?wait=true",
            json!({"action": "kyc", "customer_id": "cust_big", "kyc_status": "verified", "kyc_tier": "tier_3"}),
        )
        .await;
    assert_eq!(answer["status"], "accepted");
    let (_, answer) = api
        .post(
            "/commands/transactions?wait=true",
            json!({"action": "deposit", "account_id": "acc_big", "amount": "15000.00", "currency": "USD"}),
        )
        .await;
    assert_eq!(answer["status"], "accepted", "{answer}");
    let (_, answer) = api
        .post(
            "/commands/loans?wait=true",
            json!({"action": "originate", "loan_id": "loan_api", "customer_id": "cust_big", "principal": "5000.00",
                   "currency": "USD", "interest_rate": "5.5", "term_months": 12}),
        )
        .await;
    assert_eq!(answer["status"], "accepted", "{answer}");

    let alerts = api.eventually("/compliance/alerts", |a| a["showing"] == 1).await;
    assert_eq!(alerts["alerts"][0]["amount"], "15000.00");
    let loan = api.eventually("/loans/loan_api", |l| l["outstanding_principal"] == "5000.00").await;
    assert_eq!(loan["loan_id"], "loan_api");
    let (status, topics) = api.get("/topics").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = topics["topics"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"nexum.commands.transactions") && names.contains(&"nexum.transactions.posted.dlq"));
    let (status, groups) = api.get("/consumer-groups").await;
    assert_eq!(status, StatusCode::OK);
    let handler = groups["groups"].as_array().unwrap().iter().find(|g| g["group"] == "nexum-command-handler").unwrap();
    assert_eq!(handler["topics"].as_array().unwrap().len(), 3);
    assert!(handler["topics"][0]["partitions"][0]["lag"].is_u64());
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn recent_events_are_listed_newest_first_on_any_backend_in_the_seeds_shape() {
    let api = api().await;
    api.customer_with_account("cust_recent", "acc_recent").await;

    let body = api.eventually("/kafka/events?topic=nexum.accounts.created&limit=10", |b| b["showing"] == 1).await;
    assert_eq!(body["total"], 1);
    let event = &body["events"][0];
    assert_eq!(event["topic"], "nexum.accounts.created");
    assert_eq!(event["event"]["entity_id"], "acc_recent");
    assert!(event["offset"].is_u64() && event["partition"].is_u64());
    let all = api.eventually("/kafka/events?limit=500", |b| b["showing"].as_u64() >= Some(4)).await;
    let times: Vec<&str> = all["events"].as_array().unwrap().iter().map(|e| e["timestamp"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    for (uri, code) in [("/kafka/events?limit=0", "invalid_limit"), ("/kafka/events?topic=a,b", "invalid_topic")] {
        let (status, body) = api.get(uri).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
    }
    let (status, accounts) = api.get("/accounts?limit=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(accounts["accounts"][0]["account_id"], "acc_recent");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_recent_events_kept_per_topic_are_bounded_by_the_config() {
    // Given an API that keeps 2 recent events per topic
    let api = api_with(ApiConfig { token: Some(TOKEN.into()), tail_per_topic: 2, ..ApiConfig::default() }).await;
    // When three accounts are opened
    for n in 1..=3 {
        api.customer_with_account(&format!("cust_bound{n}"), &format!("acc_bound{n}")).await;
    }
    api.eventually("/accounts/acc_bound3", |a| a["account_id"] == "acc_bound3").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Then it shows the last two of the topic, newest first, even when asked for more
    let (status, body) = api.get("/kafka/events?topic=nexum.accounts.created&limit=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["showing"], 2, "{body}");
    assert_eq!(body["events"][0]["event"]["entity_id"], "acc_bound3");
    assert_eq!(body["events"][1]["event"]["entity_id"], "acc_bound2");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_live_stream_sends_new_events_of_the_topics_asked_for() {
    let api = api().await;
    // The test topic exists once something was published to it.
    let first = json!({"topic": "nexum.test.events", "event_type": "test_event", "entity_type": "test",
                       "entity_id": "live_0", "data": {"message": "Hello"}});
    assert_eq!(api.post("/kafka/publish-test", first).await.0, StatusCode::CREATED);
    let request = Request::get("/events/stream?topic=nexum.test.events")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();

    // An event of another topic, then one of the topic asked for
    api.customer_with_account("cust_live", "acc_live").await;
    let test = json!({"topic": "nexum.test.events", "event_type": "test_event", "entity_type": "test",
                      "entity_id": "live_1", "data": {"message": "Hello"}});
    assert_eq!(api.post("/kafka/publish-test", test).await.0, StatusCode::CREATED);

    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("live_1") {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await.expect("an event within 10 s");
        let frame = frame.expect("the stream stays open").unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains("event: event"), "{text}");
    assert!(!text.contains("acc_live"), "only the topic asked for: {text}");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_live_stream_or_recent_events_of_an_unknown_topic_is_a_404() {
    let api = api().await;
    for uri in [
        "/events/stream?topic=no.such.topic",
        "/events/stream?topic=nexum.test.events,no.such.topic",
        "/kafka/events?topic=no.such.topic",
    ] {
        let (status, body) = api.get(uri).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_topic");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lone_instance_takes_both_roles_and_ready_and_metrics_say_so() {
    // Given a service alone on its store
    let api = api().await;

    // When its relay and its timer have looked at their leases
    let started = std::time::Instant::now();
    let body = loop {
        let (status, body) = api.call(Method::GET, "/ready", None, None).await;
        // (Not ready only until the command handler joined its group.)
        let joining = body["problems"].to_string().contains("command handler has not joined");
        assert!(status == StatusCode::OK || joining, "{body}");
        if status == StatusCode::OK
            && body["roles"]["outbox-relay"] == true
            && body["roles"]["collections-timer"] == true
        {
            assert_eq!(body["checks"]["handling_commands"], true, "{body}");
            break body;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the roles were not taken: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };

    // Then /ready names the instance, and /metrics has a gauge per role
    assert!(body["instance"].as_str().is_some_and(|name| !name.is_empty()), "{body}");
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let instance = body["instance"].as_str().unwrap();
    for role in ["outbox-relay", "collections-timer"] {
        assert!(text.contains(&format!(r#"nexum_role{{role="{role}",instance="{instance}"}} 1"#)), "{role}:\n{text}");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_are_in_the_prometheus_format_and_count_what_happened() {
    let api = api().await;
    api.customer_with_account("cust_metrics", "acc_metrics").await;
    let (status, _) = api.get("/accounts/acc_unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let text = api.metrics().await;

    for family in [
        "eventbus_up",
        "eventbus_topic_events",
        "eventbus_dead_letters",
        "eventbus_consumer_group_offset",
        "eventbus_consumer_group_lag",
        "nexum_outbox_backlog",
        "eventbus_http_request_duration_seconds",
        "eventbus_event_delivery_seconds",
        "nexum_command_outcome_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing:\n{text}");
    }
    assert!(text.contains(r#"eventbus_topic_events{topic="nexum.customers.created"} 1"#), "{text}");
    assert!(
        text.contains(r#"eventbus_http_responses_total{method="GET",route="/accounts/{id}",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains("nexum_command_outcome_seconds_count 2"), "{text}");
    // Every sample line is `name{labels} value` with a number for the value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bus_switch_is_checked_before_anything_changes() {
    let api = api().await;
    let cases = [
        (json!({"bus_type": "carrier-pigeon"}), StatusCode::BAD_REQUEST, "invalid_bus_type"),
        (json!({"bus_type": "kafka"}), StatusCode::BAD_REQUEST, "invalid_bootstrap_servers"),
        (
            json!({"bus_type": "kafka", "bootstrap_servers": "a b"}),
            StatusCode::BAD_REQUEST,
            "invalid_bootstrap_servers",
        ),
        (json!({"bus_type": "memory", "extra": 1}), StatusCode::BAD_REQUEST, "invalid_json"),
        // This router was built without a serve loop behind it.
        (json!({"bus_type": "memory"}), StatusCode::CONFLICT, "switch_unavailable"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = api.post("/kafka/config", body).await;
        assert_error(got, &answer, status, code);
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn outside_development_mode_a_switch_to_a_bus_that_loses_commands_is_refused() {
    // Given an API in production mode
    let api = api_with(ApiConfig { token: Some(TOKEN.into()), dev_mode: false, ..ApiConfig::default() }).await;

    // When a switch to the memory or the log bus is asked for
    for bus_type in ["memory", "log", "LogEventBus"] {
        let (status, body) = api.post("/kafka/config", json!({"bus_type": bus_type})).await;

        // Then it is refused, saying why
        assert_error(status, &body, StatusCode::CONFLICT, "not_durable");
        assert!(body["error"]["message"].as_str().unwrap().contains("--dev"), "{body}");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn cross_origin_requests_get_no_cors_permission() {
    let api = api().await;
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/commands/transactions")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(preflight).await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
    let simple = Request::get("/health").header("origin", "https://evil.example").body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(simple).await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
    api.service.shutdown().await.unwrap();
}
/// A GET without a token, answered in full: status, headers and body.
async fn get_without_token(api: &Api, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The headers every dashboard answer carries.
fn assert_locked_down(uri: &str, headers: &axum::http::HeaderMap) {
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'"), "{uri}: {policy}");
    assert!(policy.contains("script-src 'self'"), "{uri}: {policy}");
    assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"), "{uri}: {policy}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{uri}");
}

#[tokio::test]
async fn the_dashboard_page_needs_no_token_and_allows_no_inline_script() {
    let api = api().await;
    let (status, headers, html) = get_without_token(&api, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_locked_down("/", &headers);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains(r#"<script src="/assets/app.js" defer></script>"#));
    assert_eq!(html.matches("<script").count(), 1, "one script, from a file");
    assert!(!html.contains(" style=") && !html.contains("<style"), "no inline style");
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from elsewhere");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_dashboard_asset_has_its_content_type_and_an_unknown_one_is_a_json_404() {
    let api = api().await;
    for (uri, content_type) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = get_without_token(&api, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers["content-type"], content_type, "{uri}");
        assert_locked_down(uri, &headers);
        assert!(!body.is_empty(), "{uri}");
    }
    // Every asset the page names is served.
    let (_, _, html) = get_without_token(&api, "/").await;
    for reference in html.split("\"/assets/").skip(1) {
        let uri = format!("/assets/{}", &reference[..reference.find('"').unwrap()]);
        assert_eq!(get_without_token(&api, &uri).await.0, StatusCode::OK, "{uri}");
    }
    for uri in ["/assets/nope.js", "/assets/..%2Fmod.rs", "/assets/index.html"] {
        let (status, body) = api.call(Method::GET, uri, None, None).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_asset");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn commands_are_refused_with_429_and_retry_after_when_the_handler_is_too_far_behind() {
    // Given an API whose commands nobody carries out, that refuses more than 3 waiting
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::memory(BusConfig::default()).await.unwrap());
    bus.start().await.unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bank.db"), SqliteSync::Normal).unwrap());
    let bank = Arc::new(nexum::Bank::new(store.clone()));
    let projections = Arc::new(nexum::Projections::rebuild(&*store).await.unwrap());
    let config = ApiConfig { token: Some(TOKEN.into()), max_command_lag: 3, ..ApiConfig::default() };
    let view = nexum::service::ServiceView { bank, projections, roles: Vec::new(), instance: "test".into() };
    let state = ApiState::new(bus, view, config, None).await.unwrap();
    let router = router(state);
    let deposit = json!({"action": "deposit", "account_id": "acc_1", "amount": "1.00", "currency": "USD"});
    let post = || {
        Request::builder()
            .method(Method::POST)
            .uri("/commands/transactions")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from(deposit.to_string()))
            .unwrap()
    };
    // When five commands are accepted and the lag is measured
    for _ in 0..5 {
        assert_eq!(router.clone().oneshot(post()).await.unwrap().status(), StatusCode::ACCEPTED);
    }
    tokio::time::sleep(super::backpressure::EVERY * 3).await;
    // Then the next is refused with 429, a Retry-After and the usual error shape
    let response = router.clone().oneshot(post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(body["error"]["status"], 429);
    // And the lag is in the metrics
    let metrics = router.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(metrics.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("nexum_command_lag 5"), "{text}");
    assert!(text.contains("nexum_command_lag_limit 3"), "{text}");
}

/// Waits (up to 10 s) until `GET uri` answers a body for which `done` holds; returns it.
async fn poll(api: &Api, uri: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let (status, body) = api.call(Method::GET, uri, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if done(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{uri} did not reach the state waited for");
}

#[tokio::test]
async fn an_operator_finds_dead_letters_redrives_the_head_and_the_parked_records_follow() {
    // Given a sequenced subscription whose handler fails on acc_1's first event until fixed
    let api = api().await;
    let topic = eventbus::TopicName::new("ops.work").unwrap();
    api.bus.create_topic(&topic, 1).await.unwrap();
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let (broken, handled) = (Arc::clone(&broken), Arc::clone(&handled));
        eventbus::handler_fn(move |message: eventbus::Message| {
            let (broken, handled) = (Arc::clone(&broken), Arc::clone(&handled));
            async move {
                let seq = message.event.data["seq"].as_u64().unwrap();
                if seq == 0 && broken.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(eventbus::HandlerError::msg("the ledger is down"));
                }
                handled.lock().unwrap().push(seq);
                Ok(())
            }
        })
    };
    let group = eventbus::GroupId::new("ops-worker").unwrap();
    let retry = eventbus::RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
    };
    let subscription = eventbus::Subscription::new(topic.clone(), group).with_retry(retry).sequenced();
    api.bus.subscribe(subscription, handler).await.unwrap();
    for seq in 0..3u64 {
        let data = json!({"seq": seq, "account_id": "acc_1"}).as_object().unwrap().clone();
        let event = eventbus::EventSchema::new("work_requested", "account", "acc_1", data);
        api.bus.publish(&topic, event, None).await.unwrap();
    }

    // When the operator lists the open letters of the topic
    let listed = poll(&api, "/dead-letters?topic=ops.work", |body| body["matching"] == 3).await;

    // Then the failed head comes first with its error, and the later records are parked behind it
    let letters = listed["letters"].as_array().unwrap();
    assert_eq!(letters[0]["state"], "failed");
    assert_eq!(letters[0]["error"], "the ledger is down");
    assert_eq!(letters[0]["group"], "ops-worker");
    let head = letters[0]["id"].as_str().unwrap().to_owned();
    assert!(letters[1..].iter().all(|l| l["state"] == "parked" && l["behind"] == head.as_str()), "{listed}");
    let (status, one) = api.call(Method::GET, &format!("/dead-letters/{head}"), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["original"]["data"]["seq"], 0);
    assert_eq!(one["history"][0]["event"], "dead_lettered");
    let failed = poll(&api, "/dead-letters?error=LEDGER&state=failed", |body| body["matching"] == 1).await;
    assert_eq!(failed["letters"][0]["id"], head.as_str());

    // When the cause is fixed and the head is redriven
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, answer) =
        api.call(Method::POST, "/dead-letters/redrive", Some(TOKEN), Some(json!({"ids": [head.clone()]}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["requested"], 1);

    // Then the three events are handled in order, and every letter is resolved, the request
    // recorded with who asked
    poll(&api, "/dead-letters?topic=ops.work&state=resolved", |body| body["matching"] == 3).await;
    assert_eq!(*handled.lock().unwrap(), [0, 1, 2]);
    let (_, one) = api.call(Method::GET, &format!("/dead-letters/{head}"), Some(TOKEN), None).await;
    assert_eq!(one["state"], "resolved");
    assert_eq!(one["outcome"], "redriven");
    let request = one["history"].as_array().unwrap().iter().find(|h| h["event"] == "dead_letter_redrive_requested");
    assert!(request.is_some_and(|r| r["actor"].is_string() && r["address"].is_string()), "{one}");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn dead_letter_requests_that_cannot_be_carried_out_are_answered_with_the_reason() {
    let api = api().await;
    for (method, uri, body, status, code) in [
        (Method::GET, "/dead-letters/no-such-letter", None, StatusCode::NOT_FOUND, "unknown_dead_letter"),
        (Method::GET, "/dead-letters?since=yesterday", None, StatusCode::BAD_REQUEST, "invalid_filter"),
        (Method::GET, "/dead-letters?state=stuck", None, StatusCode::BAD_REQUEST, "invalid_filter"),
        (Method::GET, "/dead-letters?limit=0", None, StatusCode::BAD_REQUEST, "invalid_limit"),
        (Method::POST, "/dead-letters/redrive", Some(json!({})), StatusCode::BAD_REQUEST, "invalid_selection"),
        (
            Method::POST,
            "/dead-letters/redrive",
            Some(json!({"ids": ["x"]})),
            StatusCode::NOT_FOUND,
            "unknown_dead_letter",
        ),
        (
            Method::POST,
            "/dead-letters/discard",
            Some(json!({"ids": ["x"], "filter": {}})),
            StatusCode::BAD_REQUEST,
            "invalid_selection",
        ),
        (
            Method::POST,
            "/dead-letters/discard",
            Some(json!({"filter": {"topic": "nexum.commands.transactions"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing_to_do",
        ),
    ] {
        let (got, answer) = api.call(method, uri, Some(TOKEN), body).await;
        assert_error(got, &answer, status, code);
    }
    api.service.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- console

impl Api {
    /// A GET and its answer as text, with its headers.
    async fn text(&self, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut request =
            Request::builder().method(Method::GET).uri(uri).header("authorization", format!("Bearer {TOKEN}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// A topic of `partitions` partitions holding, in order, `events` (key, event type, account)
    /// and then a value that is not an event, keyed `junk`.
    async fn console_topic(&self, name: &str, partitions: u32, events: &[(&str, &str, &str)]) -> eventbus::TopicName {
        let topic = eventbus::TopicName::new(name).unwrap();
        self.bus.create_topic(&topic, partitions).await.unwrap();
        for (n, (key, event_type, account)) in events.iter().enumerate() {
            self.bus.publish(&topic, console_event(event_type, account, n), Some(key)).await.unwrap();
        }
        self.bus.publish_bytes(&topic, Some("junk"), axum::body::Bytes::from_static(b"not json {")).await.unwrap();
        topic
    }

    /// Every message of a browse, following its cursor until it ends (at most 100 pages).
    async fn browse_all(&self, uri: &str) -> Vec<Value> {
        let mut messages = Vec::new();
        let mut next = String::new();
        for _ in 0..100 {
            let (status, page) = self.get(&format!("{uri}{next}")).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            messages.extend(page["messages"].as_array().unwrap().iter().cloned());
            match page["next"].as_object() {
                None => return messages,
                Some(cursor) => {
                    next = format!("&from_partition={}&from_offset={}", cursor["partition"], cursor["offset"])
                }
            }
        }
        panic!("{uri} never ended");
    }
}

fn console_event(event_type: &str, account: &str, n: usize) -> eventbus::EventSchema {
    let data = json!({"account_id": account, "amount": format!("{n}.00"), "n": n});
    let Value::Object(data) = data else { unreachable!() };
    eventbus::EventSchema::new(event_type, "transaction", format!("txn_{n}"), data)
}

fn places(messages: &[Value]) -> Vec<(u64, u64)> {
    messages.iter().map(|m| (m["partition"].as_u64().unwrap(), m["offset"].as_u64().unwrap())).collect()
}

const BROWSED: &[(&str, &str, &str)] = &[
    ("acc_1", "deposit_made", "acc_1"),
    ("acc_2", "deposit_made", "acc_2"),
    ("acc_1", "withdrawal_made", "acc_1"),
    ("acc_3", "deposit_made", "acc_3"),
    ("acc_2", "withdrawal_made", "acc_2"),
];

#[tokio::test]
async fn messages_are_browsed_by_key_event_type_field_time_partition_and_offset() {
    // Given a 1-partition topic with five events and a value that is not an event
    let api = api().await;
    let topic = api.console_topic("console.browse", 1, BROWSED).await;
    let uri = |query: &str| format!("/topics/{topic}/messages?{query}");

    // When it is browsed without filters, then every record is there, newest first
    let (status, page) = api.get(&uri("")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (page["order"].as_str(), page["scanned"].as_u64(), &page["next"]),
        (Some("newest"), Some(6), &Value::Null)
    );
    let offsets: Vec<u64> = places(page["messages"].as_array().unwrap()).iter().map(|p| p.1).collect();
    assert_eq!(offsets, vec![5, 4, 3, 2, 1, 0]);
    // And the value that is not an event is shown as its text, with the reason
    let junk = &page["messages"][0];
    assert_eq!((junk["key"].as_str(), &junk["event"]), (Some("junk"), &Value::Null));
    assert_eq!(junk["invalid"]["raw"], "not json {");
    assert!(junk["invalid"]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{junk}");

    // When filtered by key, event type or a data field, then only those match
    let (_, page) = api.get(&uri("key=acc_1&order=oldest")).await;
    assert_eq!(places(page["messages"].as_array().unwrap()), vec![(0, 0), (0, 2)]);
    let (_, page) = api.get(&uri("event_type=withdrawal_made&order=oldest")).await;
    assert_eq!(places(page["messages"].as_array().unwrap()), vec![(0, 2), (0, 4)]);
    let (_, page) = api.get(&uri("where=data.account_id%3Dacc_2&order=oldest")).await;
    assert_eq!(places(page["messages"].as_array().unwrap()), vec![(0, 1), (0, 4)]);
    assert_eq!(page["messages"][0]["event"]["data"]["account_id"], "acc_2");
    let (_, page) = api.get(&uri("where=data.n%3D3")).await;
    assert_eq!(places(page["messages"].as_array().unwrap()), vec![(0, 3)], "numbers compare as their JSON text");
    let (_, page) = api.get(&uri("where=event_type%3Ddeposit_made&key=acc_3")).await;
    assert_eq!(places(page["messages"].as_array().unwrap()), vec![(0, 3)], "filters combine");

    // When browsed from an offset, then the scan starts there, in the order asked for
    let (_, page) = api.get(&uri("partition=0&from_offset=2&order=oldest")).await;
    assert_eq!(places(page["messages"].as_array().unwrap()), vec![(0, 2), (0, 3), (0, 4), (0, 5)]);
    let (_, page) = api.get(&uri("partition=0&from_offset=2")).await;
    assert_eq!(places(page["messages"].as_array().unwrap()), vec![(0, 2), (0, 1), (0, 0)]);

    // When filtered by time, then since is inclusive and until exclusive
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    api.bus.publish(&topic, console_event("deposit_made", "acc_9", 9), Some("acc_9")).await.unwrap();
    let since = format!("since={}", urlencode(&cut.to_rfc3339()));
    let (_, page) = api.get(&uri(&since)).await;
    assert_eq!(places(page["messages"].as_array().unwrap()), vec![(0, 6)]);
    let until = format!("until={}&order=oldest", urlencode(&cut.to_rfc3339()));
    let (_, page) = api.get(&uri(&until)).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 6);
    let (_, page) = api.get(&uri(&format!("since={}", urlencode(&later.to_rfc3339())))).await;
    assert_eq!(page["messages"], json!([]));
    api.service.shutdown().await.unwrap();
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn a_browse_goes_on_from_its_cursor_across_partitions_in_either_order() {
    // Given a 3-partition topic with twenty events
    let api = api().await;
    let events: Vec<(String, String)> = (0..20).map(|n| (format!("acc_{n}"), format!("acc_{n}"))).collect();
    let events: Vec<(&str, &str, &str)> =
        events.iter().map(|(k, a)| (k.as_str(), "deposit_made", a.as_str())).collect();
    let topic = api.console_topic("console.cursor", 3, &events).await;

    for order in ["oldest", "newest"] {
        // When it is read two messages a page, following the cursor
        let messages = api.browse_all(&format!("/topics/{topic}/messages?limit=2&order={order}")).await;
        // Then every record comes once, partition after partition, each in the order asked for
        let seen = places(&messages);
        assert_eq!(seen.len(), 21, "{order}: {seen:?}");
        let mut sorted = seen.clone();
        sorted.sort_by_key(|(p, o)| (*p, if order == "oldest" { *o as i64 } else { -(*o as i64) }));
        assert_eq!(seen, sorted, "{order}");
    }
    // And a filtered browse pages through the matches only
    let matched = api.browse_all(&format!("/topics/{topic}/messages?limit=1&where=data.account_id%3Dacc_7")).await;
    assert_eq!(matched.len(), 1);
    assert_eq!(matched[0]["key"], "acc_7");
    // And the cursor of a full page points at the next record to look at
    let (_, page) = api.get(&format!("/topics/{topic}/messages?partition=0&limit=1&order=oldest")).await;
    assert_eq!(page["next"], json!({"partition": 0, "offset": 1}));
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_browse_exports_as_json_lines_by_format_or_accept_header() {
    let api = api().await;
    let topic = api.console_topic("console.export", 1, BROWSED).await;
    for (query, headers) in
        [("format=jsonl&key=acc_2", vec![]), ("key=acc_2", vec![("accept", "application/x-ndjson")])]
    {
        // When the browse is asked for as JSON lines
        let (status, headers, text) = api.text(&format!("/topics/{topic}/messages?{query}"), &headers).await;
        // Then each matching message is one JSON line, sent as an attachment
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(headers["content-type"], "application/x-ndjson");
        assert_eq!(headers["content-disposition"], "attachment; filename=\"console.export.jsonl\"");
        assert_eq!(headers["x-eventbus-scanned"], "6");
        assert!(headers.get("x-eventbus-next").is_none());
        let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(places(&lines), vec![(0, 4), (0, 1)]);
        assert!(lines.iter().all(|m| m["key"] == "acc_2" && m["event"]["data"]["account_id"] == "acc_2"));
    }
    // And a partial export says where to go on
    let (_, headers, text) =
        api.text(&format!("/topics/{topic}/messages?format=jsonl&limit=2&order=oldest"), &[]).await;
    assert_eq!(text.lines().count(), 2);
    assert_eq!(headers["x-eventbus-next"], "0:2");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_browse_with_a_filter_that_does_not_parse_is_a_400_that_names_it() {
    let api = api().await;
    let topic = api.console_topic("console.bad", 2, BROWSED).await;
    for (query, code, named) in [
        ("where=data.x", "invalid_where", "="),
        ("where=data..x%3D1", "invalid_where", "empty segment"),
        ("since=yesterday", "invalid_time", "since"),
        ("until=2026-13-01T00:00:00Z", "invalid_time", "until"),
        ("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "invalid_time", "before"),
        ("partition=2", "unknown_partition", "no partition 2"),
        ("partition=x", "invalid_partition", "partition"),
        ("from_offset=-1", "invalid_offset", "from_offset"),
        ("limit=0", "invalid_limit", "limit"),
        ("limit=1001", "invalid_limit", "limit"),
        ("order=sideways", "invalid_order", "order"),
        ("format=xml", "invalid_format", "format"),
        ("key=", "invalid_filter", "key"),
        ("partition=0&from_partition=1", "invalid_cursor", "from_partition"),
    ] {
        let (status, body) = api.get(&format!("/topics/{topic}/messages?{query}")).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
        assert!(body["error"]["message"].as_str().unwrap().contains(named), "{query}: {body}");
    }
    let (status, body) = api.get("/topics/console.nothing/messages").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_topic");
    let (status, body) = api.get(&format!("/topics/{topic}/messages?colour=red")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_is_produced_and_reproduced_with_a_new_id_or_the_same_one() {
    // Given a topic
    let api = api().await;
    let topic = eventbus::TopicName::new("console.produce").unwrap();
    api.bus.create_topic(&topic, 2).await.unwrap();
    let other = eventbus::TopicName::new("console.other").unwrap();
    api.bus.create_topic(&other, 1).await.unwrap();

    // When an event is produced to it with a key
    let event = json!({"event_type": "deposit_made", "entity_type": "transaction", "entity_id": "txn_p",
                       "data": {"account_id": "acc_p", "amount": "1.00"}});
    let (status, produced) =
        api.post(&format!("/topics/{topic}/messages"), json!({"key": "acc_p", "event": event})).await;
    assert_eq!(status, StatusCode::CREATED, "{produced}");
    let (partition, offset) = (produced["partition"].as_u64().unwrap(), produced["offset"].as_u64().unwrap());
    let id = produced["event_id"].as_str().unwrap().to_owned();

    // Then it can be browsed, with its key and a filled-in id
    let (_, page) = api.get(&format!("/topics/{topic}/messages?key=acc_p")).await;
    let shown = &page["messages"][0];
    assert_eq!(places(page["messages"].as_array().unwrap()), vec![(partition, offset)]);
    assert_eq!(
        (shown["event"]["event_id"].as_str(), shown["event"]["data"]["account_id"].as_str()),
        (Some(&*id), Some("acc_p"))
    );

    // When it is re-produced, then it is a new message with a new id, the same key and data, and
    // metadata naming the original
    let reproduce = format!("/topics/{topic}/messages/{partition}/{offset}/reproduce");
    let (status, again) = api.call(Method::POST, &reproduce, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_ne!(again["event_id"].as_str(), Some(&*id));
    assert_eq!((again["partition"].as_u64(), again["offset"].as_u64()), (Some(partition), Some(offset + 1)));
    assert_eq!(again["reproduced_from"]["event_id"].as_str(), Some(&*id));
    let (_, page) = api.get(&format!("/topics/{topic}/messages?key=acc_p")).await;
    let copy = &page["messages"][0];
    assert_eq!(copy["event"]["event_id"], again["event_id"]);
    assert_eq!(copy["event"]["data"], shown["event"]["data"]);
    assert_eq!(copy["event"]["metadata"]["reproduced_from"]["offset"], offset);

    // When it is re-produced keeping its id, to another topic, then the id is the original's
    let (status, kept) = api.post(&reproduce, json!({"keep_event_id": true, "topic": other})).await;
    assert_eq!(status, StatusCode::CREATED, "{kept}");
    assert_eq!(
        (kept["event_id"].as_str(), kept["topic"].as_str(), kept["kept_event_id"].as_bool()),
        (Some(&*id), Some("console.other"), Some(true))
    );
    let (_, page) = api.get(&format!("/topics/{other}/messages?key=acc_p")).await;
    assert_eq!(page["messages"][0]["event"]["event_id"].as_str(), Some(&*id));

    // And what cannot be produced or re-produced is refused, saying why
    let (status, body) = api.post(&format!("/topics/{topic}/messages"), json!({"event": {"data": {}}})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_event");
    let (status, body) = api.post(&format!("/topics/{topic}/messages"), json!({"key": "", "event": event})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_key");
    let (status, body) = api.post("/topics/console.none/messages", json!({"event": event})).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_topic");
    let (status, body) = api.post(&format!("/topics/{topic}/messages/{partition}/99/reproduce"), json!({})).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_message");
    let (status, body) = api.post(&format!("/topics/{topic}/messages/7/0/reproduce"), json!({})).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_message");
    let (status, body) = api.post(&format!("/topics/{topic}/messages/x/0/reproduce"), json!({})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_partition");
    let junk = api.console_topic("console.junk", 1, &[]).await;
    let (status, body) = api.post(&format!("/topics/{junk}/messages/0/0/reproduce"), json!({})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "not_an_event");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_group_is_listed_with_its_lag_after_consuming_part_of_a_topic() {
    // Given a group that handled the first three of five events of a key and holds the fourth
    let api = api().await;
    let topic = eventbus::TopicName::new("console.lag").unwrap();
    api.bus.create_topic(&topic, 1).await.unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = Arc::clone(&gate);
    let handler = eventbus::handler_fn(move |message| {
        let held = Arc::clone(&held);
        async move {
            if message.event.data["n"].as_u64() >= Some(3) {
                let _permit = held.acquire().await;
            }
            Ok(())
        }
    });
    let group = eventbus::GroupId::new("console-partial").unwrap();
    api.bus.subscribe(eventbus::Subscription::new(topic.clone(), group.clone()), handler).await.unwrap();
    for n in 0..5 {
        api.bus.publish(&topic, console_event("deposit_made", "acc_1", n), Some("acc_1")).await.unwrap();
    }

    // When the groups are listed, then it is there with its committed offset and a lag of 2
    let partial =
        |groups: &Value| groups["groups"].as_array().unwrap().iter().find(|g| g["group"] == "console-partial").cloned();
    let groups = api.eventually("/consumer-groups", |g| partial(g).is_some_and(|g| g["lag"] == 2)).await;
    let row = partial(&groups).unwrap();
    assert_eq!(row["topics"][0]["topic"], "console.lag");
    assert_eq!(
        row["topics"][0]["partitions"][0],
        json!({"partition": 0, "offset": 3, "finished": [], "lag": 2, "latest": 5})
    );
    assert_eq!((row["consuming_here"].as_bool(), row["service"].as_bool()), (Some(true), Some(false)));
    // And the service's own groups are listed as before, with the totals
    let handler = groups["groups"].as_array().unwrap().iter().find(|g| g["group"] == "nexum-command-handler").unwrap();
    assert_eq!((handler["service"].as_bool(), handler["topics"].as_array().unwrap().len()), (Some(true), 3));
    let sum: u64 = groups["groups"].as_array().unwrap().iter().map(|g| g["lag"].as_u64().unwrap()).sum();
    assert_eq!(groups["total_lag"].as_u64(), Some(sum));
    assert_eq!(groups["count"].as_u64(), Some(groups["groups"].as_array().unwrap().len() as u64));

    // When the held events are let through, then the lag goes to 0
    gate.add_permits(10);
    api.eventually("/consumer-groups", |g| partial(g).is_some_and(|g| g["lag"] == 0)).await;
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reset_of_one_partition_moves_only_that_partition() {
    // Given a group with no consumer, at the end of both partitions of a topic
    let api = api().await;
    let events: Vec<(String, String)> = (0..10).map(|n| (format!("acc_{n}"), format!("acc_{n}"))).collect();
    let events: Vec<(&str, &str, &str)> =
        events.iter().map(|(k, a)| (k.as_str(), "deposit_made", a.as_str())).collect();
    let topic = api.console_topic("console.reset", 2, &events).await;
    let uri = "/consumer-groups/console-offline/offsets";
    let (status, all) = api.post(uri, json!({"topic": topic, "to": "latest"})).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["lag"], 0);
    let ends: Vec<u64> = all["partitions"].as_array().unwrap().iter().map(|p| p["offset"].as_u64().unwrap()).collect();

    // When partition 1 alone is reset to offset 1
    let (status, reset) = api.post(uri, json!({"topic": topic, "partition": 1, "to": "offset:1"})).await;
    assert_eq!(status, StatusCode::OK, "{reset}");

    // Then partition 1 is at 1 with the rest to read again, and partition 0 did not move
    let offsets: Vec<(u64, u64)> = reset["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["offset"].as_u64().unwrap(), p["lag"].as_u64().unwrap()))
        .collect();
    assert_eq!(offsets, vec![(ends[0], 0), (1, ends[1] - 1)]);
    assert_eq!((reset["partition"].as_u64(), reset["lag"].as_u64()), (Some(1), Some(ends[1] - 1)));
    let groups = api.eventually("/consumer-groups", |_| true).await;
    let listed = groups["groups"].as_array().unwrap().iter().find(|g| g["group"] == "console-offline").unwrap();
    assert_eq!((listed["lag"].as_u64(), listed["consuming_here"].as_bool()), (Some(ends[1] - 1), Some(false)));

    // And a reset to a time moves to the first message at or after it
    let (_, reset) = api.post(uri, json!({"topic": topic, "partition": 0, "to": "time:2000-01-01T00:00:00Z"})).await;
    assert_eq!(reset["partitions"][0]["offset"], 0);
    // And what does not make sense is refused, saying why
    for (body, status, code) in [
        (json!({"topic": topic, "partition": 2, "to": "earliest"}), StatusCode::BAD_REQUEST, "unknown_partition"),
        (json!({"topic": topic, "to": "yesterday"}), StatusCode::BAD_REQUEST, "invalid_position"),
        (json!({"topic": topic, "to": "committed"}), StatusCode::BAD_REQUEST, "invalid_position"),
        (json!({"topic": "console.none", "to": "earliest"}), StatusCode::NOT_FOUND, "unknown_topic"),
        (json!({"topic": topic, "partition": -1, "to": "earliest"}), StatusCode::BAD_REQUEST, "invalid_json"),
    ] {
        let (answer, found) = api.post(uri, body.clone()).await;
        assert_error(answer, &found, status, code);
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reset_of_a_group_that_consumes_in_this_process_is_a_409() {
    // Given the service's command handler, which consumes in this process
    let api = api().await;
    // When its offsets are reset, then it is refused, and nothing moved
    let before = api
        .bus
        .group_offsets(
            &eventbus::GroupId::new("nexum-command-handler").unwrap(),
            &"nexum.commands.transactions".parse().unwrap(),
        )
        .await
        .unwrap();
    let body = json!({"topic": "nexum.commands.transactions", "partition": 0, "to": "earliest"});
    let (status, answer) = api.post("/consumer-groups/nexum-command-handler/offsets", body).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "group_active");
    assert!(answer["error"]["message"].as_str().unwrap().contains("stop"), "{answer}");
    let after = api
        .bus
        .group_offsets(
            &eventbus::GroupId::new("nexum-command-handler").unwrap(),
            &"nexum.commands.transactions".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(before, after);
    api.service.shutdown().await.unwrap();
}
