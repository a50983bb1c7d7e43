//! Roles of API tokens through the router (`oneshot`): what a viewer, an operator and an admin
//! may call, how a refusal names the role needed, and personal data masked for viewers.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::tests::{Api, TOKEN, api_with, assert_error};
use super::tokens::{NamedToken, Role, TokenHash};
use super::{ApiConfig, Caller};

const VIEWER: &str = "viewer-token-of-vera-0123";
const OPERATOR: &str = "operator-token-of-otto-0123";
const ADMIN: &str = "admin-token-of-ada-0123";

/// The token of each role.
fn token_of(role: Role) -> &'static str {
    match role {
        Role::Viewer => VIEWER,
        Role::Operator => OPERATOR,
        Role::Admin => ADMIN,
    }
}

/// An API with the plain token and a named token of each role: `vera` (viewer), `otto`
/// (operator) and `ada` (admin).
async fn api_with_roles() -> Api {
    let named = |name: &str, role, token| NamedToken { name: name.into(), role, sha256: TokenHash::of(token) };
    let tokens = vec![
        named("vera", Role::Viewer, VIEWER),
        named("otto", Role::Operator, OPERATOR),
        named("ada", Role::Admin, ADMIN),
    ];
    api_with(ApiConfig { token: Some(TOKEN.into()), tokens, dev_mode: true, ..ApiConfig::default() }).await
}

/// Asserts a refusal for a role too low: a JSON 403 `forbidden` that names the role needed, in
/// its message and in `required_role`.
fn assert_needs(status: StatusCode, body: &Value, role: Role) {
    assert_error(status, body, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(body["error"]["required_role"], role.as_str(), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("needs the {role} role")), "{message}");
}

fn deposit() -> Value {
    json!({"action": "deposit", "account_id": "acc_roles", "amount": "10.00", "currency": "USD"})
}

const READS: &[&str] = &[
    "/kafka/status",
    "/kafka/events",
    "/accounts",
    "/compliance/alerts",
    "/topics",
    "/consumer-groups",
    "/commands/cmd_00000000000000000000000000",
];

#[tokio::test]
async fn a_viewer_reads_but_is_refused_commands_and_bus_changes_with_the_role_named() {
    // Given an API with a viewer token
    let api = api_with_roles().await;

    // When the viewer reads, then every read answers (the unknown command id is a 404, not a 403)
    for uri in READS {
        let (status, body) = api.call(Method::GET, uri, Some(VIEWER), None).await;
        assert_ne!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
        assert!(status == StatusCode::OK || uri.starts_with("/commands/"), "{uri}: {status} {body}");
    }

    // When the viewer submits a command or publishes a test event, then a 403 names the operator role
    let (status, body) = api.call(Method::POST, "/commands/transactions", Some(VIEWER), Some(deposit())).await;
    assert_needs(status, &body, Role::Operator);
    assert!(body["error"]["message"].as_str().unwrap().contains("token `vera` has viewer"), "{body}");
    let test = json!({"topic": "nexum.test.events", "event_type": "test_event", "entity_type": "t", "entity_id": "1"});
    let (status, body) = api.call(Method::POST, "/kafka/publish-test", Some(VIEWER), Some(test)).await;
    assert_needs(status, &body, Role::Operator);

    // When the viewer tries to switch the bus, then a 403 names the admin role
    let (status, body) = api.call(Method::POST, "/kafka/config", Some(VIEWER), Some(json!({"bus_type": "log"}))).await;
    assert_needs(status, &body, Role::Admin);
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_operator_submits_commands_but_cannot_change_the_bus() {
    // Given an API with an operator token
    let api = api_with_roles().await;

    // When the operator creates a customer and publishes a test event, then both are done
    let create = json!({"action": "create", "customer_id": "cust_op", "first_name": "Otto", "last_name": "Op",
                        "email": "otto@example.com"});
    let (status, body) = api.call(Method::POST, "/commands/customers?wait=true", Some(OPERATOR), Some(create)).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("accepted")), "{body}");
    let test = json!({"topic": "nexum.test.events", "event_type": "test_event", "entity_type": "t", "entity_id": "1"});
    let (status, body) = api.call(Method::POST, "/kafka/publish-test", Some(OPERATOR), Some(test)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // When the operator tries to switch the bus, then a 403 names the admin role
    let (status, body) =
        api.call(Method::POST, "/kafka/config", Some(OPERATOR), Some(json!({"bus_type": "log"}))).await;
    assert_needs(status, &body, Role::Admin);
    assert!(body["error"]["message"].as_str().unwrap().contains("token `otto` has operator"), "{body}");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_admin_named_or_plain_may_do_everything() {
    // Given an API with a named admin token and the plain token
    let api = api_with_roles().await;
    for token in [ADMIN, TOKEN] {
        // When the admin reads, submits a command and switches the bus
        for uri in READS.iter().filter(|uri| !uri.starts_with("/commands/")) {
            assert_eq!(api.call(Method::GET, uri, Some(token), None).await.0, StatusCode::OK, "{uri}");
        }
        let (status, body) = api.call(Method::POST, "/commands/transactions", Some(token), Some(deposit())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        // Then nothing is refused for its role (this test server cannot switch its bus: a 409)
        let (status, body) =
            api.call(Method::POST, "/kafka/config", Some(token), Some(json!({"bus_type": "log"}))).await;
        assert_error(status, &body, StatusCode::CONFLICT, "switch_unavailable");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unknown_token_is_a_403_and_no_token_a_401_whatever_the_route() {
    let api = api_with_roles().await;
    for (method, uri) in
        [(Method::GET, "/topics"), (Method::POST, "/commands/transactions"), (Method::POST, "/kafka/config")]
    {
        // When a request comes with a token nobody has, then it is forbidden, with no role named
        let (status, body) = api.call(method.clone(), uri, Some("not-a-token"), Some(deposit())).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
        assert!(body["error"].get("required_role").is_none(), "{body}");
        // When it comes without a token, then it is unauthorized, with the challenge
        let (status, headers, body) = api.exchange(method, uri, None, b"{}", &[]).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"eventbus\"");
    }
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_viewer_sees_a_customer_masked_and_an_operator_in_clear() {
    // Given a customer Ada Lovelace, ada@example.com
    let api = api_with_roles().await;
    api.customer_with_account("cust_mask", "acc_mask").await;
    api.eventually("/customers/cust_mask", |body| body["first_name"] == "Ada").await;

    // When an operator reads the customer, then the name and email are in clear
    let (status, clear) = api.call(Method::GET, "/customers/cust_mask", Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::OK, "{clear}");
    assert_eq!((clear["first_name"].as_str(), clear["email"].as_str()), (Some("Ada"), Some("ada@example.com")));

    // When a viewer reads it, then they are masked, and the rest is as the operator sees it
    let (status, masked) = api.call(Method::GET, "/customers/cust_mask", Some(VIEWER), None).await;
    assert_eq!(status, StatusCode::OK, "{masked}");
    assert_eq!(masked["first_name"], "A***");
    assert_eq!(masked["last_name"], "L***");
    assert_eq!(masked["email"], "a***@example.com");
    assert_eq!((&masked["customer_id"], &masked["account_ids"]), (&clear["customer_id"], &clear["account_ids"]));

    // And the recent events the dashboard shows are masked for a viewer too
    let uri = "/kafka/events?topic=nexum.customers.created";
    let events = api.eventually(uri, |body| body["showing"] == 1).await;
    assert!(events.to_string().contains("Lovelace"), "the admin sees it in clear: {events}");
    let (_, events) = api.call(Method::GET, uri, Some(VIEWER), None).await;
    assert_eq!(events["showing"], 1, "{events}");
    let text = events.to_string();
    assert!(!text.contains("Lovelace") && !text.contains("ada@"), "{text}");
    let (_, events) = api.call(Method::GET, uri, Some(OPERATOR), None).await;
    assert!(events.to_string().contains("Lovelace"), "{events}");

    // And so are the console's browse and its JSON-lines export, which an operator gets in clear
    let browse = "/topics/nexum.customers.created/messages";
    let (_, page) = api.call(Method::GET, browse, Some(VIEWER), None).await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");
    assert!(!page.to_string().contains("Lovelace") && !page.to_string().contains("ada@"), "{page}");
    let export = format!("{browse}?format=jsonl");
    let (_, _, lines) = api.exchange(Method::GET, &export, Some(VIEWER), b"", &[]).await;
    let (_, _, clear_lines) = api.exchange(Method::GET, &export, Some(OPERATOR), b"", &[]).await;
    assert!(!lines.to_string().contains("Lovelace") && lines.to_string().contains("L***"), "{lines}");
    assert!(clear_lines.to_string().contains("Lovelace"), "{clear_lines}");

    // And topic names, which are no personal data, are not masked
    let (_, topics) = api.call(Method::GET, "/topics", Some(VIEWER), None).await;
    assert!(topics["topics"].as_array().unwrap().iter().any(|t| t["name"] == "nexum.customers.created"), "{topics}");
    api.service.shutdown().await.unwrap();
}

/// The SSE text of `/events/stream?topic=nexum.customers.created` for `token`, until it holds
/// `until`.
async fn stream_text(api: &Api, token: &str, until: &str) -> String {
    let request = Request::get("/events/stream?topic=nexum.customers.created")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains(until) {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await.expect("an event within 10 s");
        if let Ok(data) = frame.expect("the stream stays open").unwrap().into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text
}

#[tokio::test]
async fn the_live_stream_masks_each_event_for_a_viewer() {
    // Given a viewer and an operator following new customers live
    let api = api_with_roles().await;
    api.customer_with_account("cust_first", "acc_first").await; // the topic exists from now on
    let viewer = stream_text(&api, VIEWER, "cust_live");
    let operator = stream_text(&api, OPERATOR, "cust_live");

    // When a customer is created
    let create = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        api.customer_with_account("cust_live", "acc_live").await;
    };
    let (viewer, operator, ()) = tokio::join!(viewer, operator, create);

    // Then the viewer's event has the name and email masked, the operator's has them in clear
    assert!(viewer.contains("A***") && viewer.contains("a***@example.com"), "{viewer}");
    assert!(!viewer.contains("Lovelace") && !viewer.contains("ada@"), "{viewer}");
    assert!(operator.contains("Lovelace") && operator.contains("ada@example.com"), "{operator}");
    api.service.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_operation_of_the_openapi_document_refuses_the_role_below_the_one_it_states() {
    // Given the document, and an API with a token of each role
    let api = api_with_roles().await;
    let (_, document) = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(document["paths"]["/kafka/config"]["post"]["x-required-role"], "admin");
    assert_eq!(document["paths"]["/commands/{kind}"]["post"]["x-required-role"], "operator");
    assert_eq!(document["paths"]["/commands/{kind}"]["get"]["x-required-role"], "viewer");

    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let Some(role) = operation["x-required-role"].as_str() else {
                assert_eq!(operation["security"], json!([]), "{method} {path} is public or states its role");
                continue;
            };
            let role: Role = serde_json::from_value(json!(role)).unwrap();
            let description = operation["responses"]["403"]["description"].as_str().unwrap();
            assert!(description.contains(&format!("below {role}")), "{method} {path}: {description}");
            // When it is called with the role just below the one stated, then it is refused for that role
            let Some(below) = Role::ALL.into_iter().rev().find(|other| *other < role) else { continue };
            let uri = path.replace("{kind}", "transactions").replace("{id}", "x_1");
            let method: Method = method.to_uppercase().parse().unwrap();
            let (status, body) = api.call(method, &uri, Some(token_of(below)), Some(json!({}))).await;
            assert_needs(status, &body, role);
            checked += 1;
        }
    }
    // Every POST: commands, publish-test, the bus config, produce, re-produce, offset reset,
    // redrive and discard
    assert_eq!(checked, 8);
    api.service.shutdown().await.unwrap();
}

#[test]
fn a_caller_says_who_it_is_with_its_role() {
    let caller = Caller { name: "alice".into(), role: Role::Operator, address: None };
    assert_eq!(caller.who(), "alice (operator)");
    assert!(caller.sees_personal_data());
    assert!(!Caller { role: Role::Viewer, ..caller }.sees_personal_data());
}
