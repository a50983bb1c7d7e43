//! Traces: with tracing on (an OpenTelemetry layer installed and `eventbus::trace::enable`),
//! every event published gets a `publish` span and carries its context in its `traceparent`,
//! and every handling of a record is a `handle` span, a child of that context. The spans are
//! collected by the SDK's in-memory exporter. Its own test binary: the subscriber and the switch
//! are global to the process.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eventbus::trace::{TARGET, parse_traceparent};
use eventbus::{
    BusConfig, EventBus, EventSchema, GroupId, HandlerError, MemoryBus, Message, Offset, Partition, RecordValue,
    RetryPolicy, Subscription, TopicName, handler_fn,
};
use opentelemetry::trace::{SpanContext, SpanId, Status, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{Map, Value};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

/// The spans exported so far by this process, once tracing is on.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("eventbus-test"))
            .with_filter(Targets::new().with_target(TARGET, Level::INFO));
        tracing::subscriber::set_global_default(Registry::default().with(layer)).expect("the only subscriber");
        eventbus::trace::enable();
        exporter
    })
}

/// The exported spans named `name` of trace `trace_id`.
fn spans(name: &str, trace_id: TraceId) -> Vec<SpanData> {
    let all = exporter().get_finished_spans().expect("the exporter's spans");
    all.into_iter().filter(|span| span.name == name && span.span_context.trace_id() == trace_id).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

/// A started memory bus with a topic of its own, of one partition.
async fn bus() -> (MemoryBus, TopicName) {
    let bus = MemoryBus::memory(BusConfig::default()).await.unwrap();
    let topic = TopicName::new(&format!("test.traces.{}", eventbus::EventId::new())).unwrap();
    bus.create_topic(&topic, 1).await.unwrap();
    bus.start().await.unwrap();
    (bus, topic)
}

fn deposit() -> EventSchema {
    let mut data = Map::new();
    data.insert("amount".into(), "10.00".into());
    EventSchema::new("transaction_created", "transaction", "acc_1", data)
}

/// The `traceparent` of the event stored at `offset` of partition 0 of `topic`, parsed.
async fn stored_context(bus: &MemoryBus, topic: &TopicName, offset: Offset) -> SpanContext {
    let record = bus.read(topic, Partition(0), offset, 1).await.unwrap().remove(0);
    let RecordValue::Event(event) = record.value else { panic!("an event was stored") };
    let traceparent = event.metadata.get("traceparent").and_then(Value::as_str).expect("a traceparent");
    parse_traceparent(traceparent, None).expect("a valid traceparent")
}

#[tokio::test]
async fn an_event_published_without_a_traceparent_carries_the_context_of_its_publish_span() {
    // Given tracing on, and an event with no traceparent
    exporter();
    let (bus, topic) = bus().await;
    // When it is published
    let published = bus.publish(&topic, deposit(), None).await.unwrap();
    // Then the stored event carries a valid traceparent, and it names the exported `publish`
    // span, a root with the topic, partition, offset and event type as attributes
    let carried = stored_context(&bus, &topic, published.offset.unwrap()).await;
    let publish = spans("publish", carried.trace_id());
    assert_eq!(publish.len(), 1, "{publish:?}");
    let publish = &publish[0];
    assert_eq!(publish.span_context.span_id(), carried.span_id());
    assert_eq!(publish.parent_span_id, SpanId::INVALID);
    assert_eq!(attribute(publish, "messaging.destination.name").as_deref(), Some(topic.as_str()));
    assert_eq!(attribute(publish, "messaging.destination.partition.id").as_deref(), Some("0"));
    assert_eq!(attribute(publish, "messaging.kafka.offset"), Some(published.offset.unwrap().0.to_string()));
    assert_eq!(attribute(publish, "cloudevents.event_type").as_deref(), Some("transaction_created"));
    bus.stop().await.unwrap();
}

#[tokio::test]
async fn an_event_published_with_a_traceparent_makes_its_publish_span_a_child_of_it() {
    // Given tracing on, and an event that carries the traceparent of a caller's span
    exporter();
    let (bus, topic) = bus().await;
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let event = deposit().with_metadata("traceparent", caller);
    // When it is published
    let published = bus.publish(&topic, event, None).await.unwrap();
    // Then the `publish` span is in the caller's trace, a child of the caller's span, and the
    // stored event carries the `publish` span's context in that trace
    let caller = parse_traceparent(caller, None).unwrap();
    let publish = spans("publish", caller.trace_id());
    assert_eq!(publish.len(), 1, "{publish:?}");
    assert_eq!(publish[0].parent_span_id, caller.span_id());
    assert!(publish[0].parent_span_is_remote);
    let carried = stored_context(&bus, &topic, published.offset.unwrap()).await;
    assert_eq!(carried.trace_id(), caller.trace_id());
    assert_eq!(carried.span_id(), publish[0].span_context.span_id());
    bus.stop().await.unwrap();
}

#[tokio::test]
async fn each_handling_is_a_handle_span_under_the_publish_span_with_an_error_when_the_handler_fails() {
    // Given tracing on, and a subscription whose handler rejects every event, without retries
    exporter();
    let (bus, topic) = bus().await;
    let group = GroupId::new(format!("traces-{}", eventbus::EventId::new())).unwrap();
    let (handled, mut done) = tokio::sync::mpsc::channel::<()>(1);
    let handler = handler_fn(move |_: Message| {
        let handled = handled.clone();
        async move {
            let _ = handled.send(()).await;
            Err(HandlerError::permanent("refused"))
        }
    });
    let retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
    bus.subscribe(Subscription::new(topic.clone(), group.clone()).with_retry(retry), Arc::clone(&handler))
        .await
        .unwrap();
    // When an event is published and handled
    let published = bus.publish(&topic, deposit(), None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), done.recv()).await.expect("handled in time");
    let carried = stored_context(&bus, &topic, published.offset.unwrap()).await;
    let mut handle = Vec::new();
    for _ in 0..200 {
        handle = spans("handle", carried.trace_id());
        if !handle.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Then one `handle` span was exported in the event's trace, a child of its `publish` span,
    // with the group and place, and an error status
    assert_eq!(handle.len(), 1, "{handle:?}");
    let handle = &handle[0];
    assert_eq!(handle.parent_span_id, carried.span_id());
    assert_eq!(attribute(handle, "messaging.consumer.group.name").as_deref(), Some(group.as_str()));
    assert_eq!(attribute(handle, "messaging.kafka.offset"), Some(published.offset.unwrap().0.to_string()));
    assert!(matches!(handle.status, Status::Error { .. }), "{:?}", handle.status);
    assert_eq!(attribute(handle, "error.type").as_deref(), Some("permanent"));
    bus.stop().await.unwrap();
}
