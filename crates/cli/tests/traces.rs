//! Traces over OTLP: `eventbus serve` with `[telemetry] otlp_endpoint` exports its spans to a
//! small OTLP/HTTP receiver on loopback, and a command posted with a `traceparent` header is one
//! trace from the caller on: publish → handle → command.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message as _;

const TOKEN: &str = "traces-test-token";
/// The caller's span, as the W3C `traceparent` of its request.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// A span as the receiver got it: ids in hex, attributes as text.
#[derive(Clone, Debug)]
struct Received {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    /// The span's events: each name, then its attributes' values.
    events: Vec<String>,
    service: Option<String>,
}

/// The spans received so far; at most `MAX_SPANS` are kept.
type Spans = Arc<Mutex<Vec<Received>>>;
const MAX_SPANS: usize = 100_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(Any::StringValue(text)) => text.clone(),
        Some(Any::IntValue(n)) => n.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(x)) => x.to_string(),
        other => format!("{other:?}"),
    }
}

/// `POST /v1/traces`: an OTLP/HTTP export request in protobuf.
async fn export(State(spans): State<Spans>, body: Bytes) -> impl IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
    let mut kept = spans.lock().unwrap();
    for resource in request.resource_spans {
        let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
        let service = attributes.iter().find(|kv| kv.key == "service.name").map(|kv| text(kv.value.as_ref()));
        for span in resource.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            if kept.len() < MAX_SPANS {
                kept.push(Received {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span.attributes.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect(),
                    events: span
                        .events
                        .iter()
                        .flat_map(|event| {
                            let values = event.attributes.iter().map(|kv| text(kv.value.as_ref()));
                            std::iter::once(event.name.clone()).chain(values)
                        })
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    ([(CONTENT_TYPE, "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
}

/// An OTLP/HTTP receiver on a free loopback port, in a runtime of its own; returns its address.
fn start_receiver(spans: Spans) -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = Router::new().route("/v1/traces", post(export)).with_state(spans);
    runtime.spawn(async move { axum::serve(listener, app).await });
    (runtime, address)
}

/// `POST path` with the token, a JSON body and a `traceparent` header; the status.
fn post_traced(address: &str, path: &str, traceparent: &str, body: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\ntraceparent: {traceparent}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split(' ').nth(1).and_then(|status| status.parse().ok()).unwrap_or(0)
}

/// The chain publish → handle → command → publish (by the outbox relay, of the `customer_created`
/// the command recorded) in the caller's trace, once all four are received.
fn chain(spans: &[Received]) -> Option<(Received, Received, Received, Received)> {
    // Every group that follows the command topic handles the command; the command handler's
    // handling is the one with a `command` span under it.
    let children = |name: &'static str, parent: String| {
        spans.iter().filter(move |s| s.name == name && s.trace_id == TRACE_ID && s.parent_span_id == parent)
    };
    let publish = children("publish", CALLER_SPAN_ID.to_owned()).next()?;
    let (handle, command) = children("handle", publish.span_id.clone())
        .find_map(|handle| Some((handle, children("command", handle.span_id.clone()).next()?)))?;
    let recorded = children("publish", command.span_id.clone())
        .find(|s| s.attributes.get("cloudevents.event_type").map(String::as_str) == Some("customer_created"))?;
    Some((publish.clone(), handle.clone(), command.clone(), recorded.clone()))
}

#[test]
fn a_command_posted_with_a_traceparent_is_exported_as_one_trace_of_publish_handle_and_command() {
    // Given an OTLP receiver, and `eventbus serve` on the embedded backend whose config file
    // points `[telemetry] otlp_endpoint` at it
    let spans = Spans::default();
    let (_receiver, otlp) = start_receiver(Arc::clone(&spans));
    let env = Env::new();
    let config =
        write_file(&env, "eventbus.toml", format!("[telemetry]\notlp_endpoint = \"http://{otlp}\"\n").as_bytes());
    let mut cmd = env.cmd(&["--config", &config]);
    cmd.env("EVENTBUS_API_TOKEN", TOKEN).env_remove("OTEL_EXPORTER_OTLP_ENDPOINT").env_remove("OTEL_SERVICE_NAME");
    let (serve, _log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);

    // When a caller posts a command with the traceparent of its span, and waits for the outcome
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");
    let create = r#"{"action": "create", "customer_id": "cust_traced", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com", "phone": "+442079460958"}"#;
    assert_eq!(post_traced(&address, "/commands/customers?wait=true", &traceparent, create), 200);

    // Then, within a bounded wait, the receiver gets a `publish` span that is a child of the
    // caller's span, a `handle` span that is a child of it, a `command` span that is a child of
    // that, and the `publish` span of an event the command recorded under it, all in the
    // caller's trace
    let started = Instant::now();
    let (publish, handle, command, recorded) = loop {
        if let Some(found) = chain(&spans.lock().unwrap()) {
            break found;
        }
        let received: Vec<String> = spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| format!("{} {} {} <- {}", s.name, s.trace_id, s.span_id, s.parent_span_id))
            .collect();
        assert!(started.elapsed() < Duration::from_secs(30), "no publish → handle → command chain in {received:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // And each says what it was about, as `eventbus`
    assert_eq!(publish.attributes["messaging.destination.name"], "nexum.commands.customers");
    assert_eq!(publish.attributes["cloudevents.event_type"], "customer_command");
    assert_eq!(handle.attributes["messaging.consumer.group.name"], "nexum-command-handler");
    assert_eq!(handle.attributes["messaging.destination.name"], "nexum.commands.customers");
    assert_eq!(command.attributes["command.type"], "customer_command");
    assert_eq!(command.attributes["command.action"], "create");
    assert_eq!(command.attributes["command.outcome"], "executed");
    assert_eq!(command.attributes["command.id"], publish.attributes["cloudevents.event_id"]);
    assert_eq!(command.service.as_deref(), Some("eventbus"));
    assert_eq!(recorded.attributes["messaging.destination.name"], "nexum.customers.created");

    // And no span received carries the customer's personal data, in its attributes or events
    for span in spans.lock().unwrap().iter() {
        for value in span.attributes.values().chain(&span.events) {
            for personal in ["Jane", "Smith", "jane@example.com", "442079460958"] {
                assert!(!value.contains(personal), "{personal} in span {span:?}");
            }
        }
    }

    // When serve is stopped, it stops with success (its last spans flushed on the way)
    terminate(&serve.0);
    let mut serve = serve;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
}
