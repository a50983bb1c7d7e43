//! Traces: a span for every event published and every call of a subscription's handler, linked
//! through the W3C Trace Context that events carry in their metadata (`traceparent`,
//! `tracestate`; on Kafka also as the CloudEvents extensions `ce_traceparent`, `ce_tracestate`).
//!
//! The spans are `tracing` spans of target [`TARGET`]. `tracing-opentelemetry`'s layer makes
//! them OpenTelemetry spans, and an exporter sends them on: the `eventbus` binary exports them
//! over OTLP when an endpoint is configured. Nothing here runs until [`enable`] is called: until
//! then publishing and handling make no span, format nothing and allocate nothing for traces (one
//! relaxed atomic load per publish and per handler call).
//!
//! - `publish` (kind producer), one per event published: a child of the event's `traceparent`
//!   when it has a valid one, else of the current span (a handler that publishes continues the
//!   trace of what it handles). The event then carries the `publish` span's own context, as
//!   OpenTelemetry's messaging conventions inject it, so its handlers are children of it.
//! - `handle` (kind consumer), one per call of a subscription's handler: a child of the context in
//!   the event's `traceparent`; its status is an error when the handler fails.
//!
//! Attributes are ids, types, topic and group names and places, never an event's data or any
//! other metadata: those may hold personal data.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use serde_json::Value;
use tracing::field::Empty;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::bus::{BusError, GroupId, HandlerError, Message, Partition, Published};
use crate::envelope::EventSchema;
use crate::topics::TopicName;

/// The `tracing` target of every span that is exported: an exporting layer filters on it, so
/// that log lines and other crates' spans stay out of the traces.
pub const TARGET: &str = "eventbus::trace";
/// The metadata key (and CloudEvents extension) of the W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The metadata key (and CloudEvents extension) of the W3C `tracestate`.
pub const TRACESTATE: &str = "tracestate";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the spans on for the rest of the process. Call it once a subscriber with
/// `tracing-opentelemetry`'s layer is the global default.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are made.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span a W3C `traceparent` names, as a remote parent, with its `tracestate` (dropped if it
/// is not a valid one); `None` if the `traceparent` is not valid.
pub fn parse_traceparent(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let is_hex =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let mut parts = traceparent.split('-');
    let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four parts; a later version may add more, and `ff` is invalid.
    let valid = is_hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && is_hex(trace_id, 32)
        && is_hex(span_id, 16)
        && is_hex(flags, 2);
    if !valid {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok().filter(|id| *id != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span_id).ok().filter(|id| *id != SpanId::INVALID)?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8());
    let state = tracestate.and_then(|state| state.parse::<TraceState>().ok()).unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// The W3C `traceparent` of a span: `00-<trace id>-<span id>-<flags>`.
pub fn traceparent(span: &SpanContext) -> String {
    format!("00-{:032x}-{:016x}-{:02x}", span.trace_id(), span.span_id(), span.trace_flags().to_u8())
}

/// The `traceparent` of the current span, if tracing is [`enabled`] and the span is exported:
/// what an event recorded now for later publishing (an outbox) carries to continue the trace.
pub fn current() -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = Span::current().context();
    let span = context.span();
    let span = span.span_context();
    span.is_valid().then(|| traceparent(span))
}

/// The context an event's metadata names, if it has a valid `traceparent`.
fn carried(event: &EventSchema) -> Option<Context> {
    let traceparent = event.metadata.get(TRACEPARENT)?.as_str()?;
    let tracestate = event.metadata.get(TRACESTATE).and_then(Value::as_str);
    parse_traceparent(traceparent, tracestate).map(|parent| Context::new().with_remote_span_context(parent))
}

/// The `publish` span of an event about to be appended to `partition` of `topic`; the event
/// then carries the span's context in its metadata (when the span is exported). Only called
/// while tracing is [`enabled`].
pub(crate) fn publish(topic: &TopicName, partition: Partition, event: &mut EventSchema) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "publish",
        otel.kind = "producer",
        otel.status_code = Empty,
        messaging.system = "eventbus",
        messaging.operation = "publish",
        messaging.destination.name = topic.as_str(),
        messaging.destination.partition.id = partition.0,
        messaging.kafka.offset = Empty,
        cloudevents.event_id = event.event_id.as_ref().map(tracing::field::display),
        cloudevents.event_type = event.event_type.as_str(),
    );
    if let Some(parent) = carried(event) {
        // Fails only for a span no layer exports, which has no context to pass on either.
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    if own.is_valid() {
        event.metadata.insert(TRACEPARENT.to_owned(), traceparent(&own).into());
        match own.trace_state().header() {
            state if state.is_empty() => {
                if event.metadata.contains_key(TRACESTATE) {
                    event.metadata.remove(TRACESTATE);
                }
            }
            state => drop(event.metadata.insert(TRACESTATE.to_owned(), state.into())),
        }
    }
    span
}

/// Ends the `publish` spans of a batch with what the append did: each event's offset, or an
/// error status for all when it failed.
pub(crate) fn published(spans: Vec<Span>, appended: &Result<Vec<Published>, BusError>) {
    match appended {
        Ok(published) => {
            for (span, published) in spans.iter().zip(published) {
                if let Some(offset) = published.offset {
                    span.record("messaging.kafka.offset", offset.0);
                }
            }
        }
        Err(_) => {
            for span in &spans {
                span.record("otel.status_code", "ERROR");
            }
        }
    }
}

/// Runs one call of `group`'s handler on `message` in a `handle` span, when tracing is
/// [`enabled`]: a child of the event's `traceparent`, with an error status if the handler fails.
pub(crate) async fn handling<F>(group: &GroupId, message: &Message, handler: F) -> Result<(), HandlerError>
where
    F: Future<Output = Result<(), HandlerError>>,
{
    if !enabled() {
        return handler.await;
    }
    let event = &message.event;
    let span = tracing::info_span!(
        target: TARGET,
        "handle",
        otel.kind = "consumer",
        otel.status_code = Empty,
        error.type = Empty,
        messaging.system = "eventbus",
        messaging.operation = "process",
        messaging.consumer.group.name = group.as_str(),
        messaging.destination.name = message.topic.as_str(),
        messaging.destination.partition.id = message.partition.0,
        messaging.kafka.offset = message.offset.0,
        cloudevents.event_id = event.event_id.as_ref().map(tracing::field::display),
        cloudevents.event_type = event.event_type.as_str(),
    );
    if let Some(parent) = carried(event) {
        let _ = span.set_parent(parent);
    }
    let result = handler.instrument(span.clone()).await;
    if let Err(error) = &result {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", if error.is_permanent() { "permanent" } else { "transient" });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_read_and_written_back_the_same() {
        // Given a sampled W3C traceparent with a tracestate
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        // When it is parsed
        let parent = parse_traceparent(text, Some("vendor=opaque")).expect("a valid traceparent");
        // Then its ids, flags and state are kept, it is remote, and it writes back the same text
        assert_eq!(parent.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_eq!(parent.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert!(parent.is_sampled() && parent.is_remote());
        assert_eq!(parent.trace_state().header(), "vendor=opaque");
        assert_eq!(traceparent(&parent), text);
    }

    #[test]
    fn an_invalid_traceparent_names_no_parent() {
        // Given traceparents that break the W3C format in each of its parts
        let invalid = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ];
        // When they are parsed, then none names a parent
        for text in invalid {
            assert!(parse_traceparent(text, None).is_none(), "{text}");
        }
        // And a later version with more parts is read for the parts it shares with 00
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz", None).is_some());
    }
}
