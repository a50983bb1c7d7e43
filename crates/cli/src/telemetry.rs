//! Logs and traces: the `tracing` subscriber of the process. Logs go to stderr, filtered by
//! `EVENTBUS_LOG`. When an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`, else
//! `[telemetry] otlp_endpoint`), the spans of [`eventbus::trace`] (`publish`, `handle`,
//! `command`) are also exported over OTLP/HTTP with protobuf, and nothing else: no log line and
//! no other crate's span becomes part of a trace.
//!
//! Spans wait in the SDK's batch span processor: a bounded queue of [`MAX_QUEUE`] spans, sent by
//! its own thread in batches of up to [`MAX_BATCH`] at least every [`EXPORT_EVERY`]; when the
//! queue is full (the collector is down or slow), new spans are dropped, never waited for. The
//! queue is flushed when the command ends ([`Telemetry::shutdown`]), within [`FLUSH_TIMEOUT`].

use std::time::Duration;

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetrySection;

/// The most spans waiting to be exported; more are dropped.
pub const MAX_QUEUE: usize = 2048;
/// The most spans in one export request.
pub const MAX_BATCH: usize = 512;
/// How long a span waits at most before its batch is sent.
pub const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// How long one export request may take.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the flush at the end may take.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The standard variable of the OTLP endpoint, over `[telemetry] otlp_endpoint`.
const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable of the service name, over `[telemetry] service_name`.
const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";

/// The exporter of the process, if traces are on; flushed by [`shutdown`](Self::shutdown).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the subscriber of the process: logs to stderr, and spans to the OTLP endpoint if
    /// one is configured. Fails on an endpoint that is not an `http://` URL.
    pub fn init(config: &TelemetrySection) -> anyhow::Result<Self> {
        let filter = EnvFilter::try_from_env("EVENTBUS_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter);
        let provider = match traces_url(config)? {
            Some(url) => Some(provider(&url, &service_name(config))?),
            None => None,
        };
        let spans = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("eventbus"))
                .with_filter(Targets::new().with_target(eventbus::trace::TARGET, Level::INFO))
        });
        tracing_subscriber::registry().with(logs).with(spans).init();
        if provider.is_some() {
            eventbus::trace::enable();
        }
        Ok(Self { provider })
    }

    /// Sends the spans still queued and stops the exporter, within [`FLUSH_TIMEOUT`]. Blocks:
    /// call it outside the async runtime.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            tracing::warn!(%error, "Spans still queued may not have been exported");
        }
    }
}

/// Where spans go: `OTEL_EXPORTER_OTLP_ENDPOINT`, else `[telemetry] otlp_endpoint`, with
/// `/v1/traces` as OTLP/HTTP has it; `None` when neither is set.
fn traces_url(config: &TelemetrySection) -> anyhow::Result<Option<String>> {
    let endpoint = std::env::var(ENDPOINT_VAR)
        .ok()
        .filter(|endpoint| !endpoint.is_empty())
        .or_else(|| config.otlp_endpoint.clone().filter(|endpoint| !endpoint.is_empty()));
    let Some(endpoint) = endpoint else { return Ok(None) };
    anyhow::ensure!(
        endpoint.starts_with("http://"),
        "the OTLP endpoint `{endpoint}` is not an http:// URL: traces go over OTLP/HTTP without TLS, \
         to a collector beside the service"
    );
    Ok(Some(format!("{}/v1/traces", endpoint.trim_end_matches('/'))))
}

/// `OTEL_SERVICE_NAME`, else `[telemetry] service_name`.
fn service_name(config: &TelemetrySection) -> String {
    std::env::var(SERVICE_NAME_VAR).ok().filter(|name| !name.is_empty()).unwrap_or_else(|| config.service_name.clone())
}

/// A tracer provider that exports to `url` through a bounded batch span processor.
fn provider(url: &str, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("cannot export traces to {url}"))?;
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(MAX_QUEUE)
        .with_max_export_batch_size(MAX_BATCH)
        .with_scheduled_delay(EXPORT_EVERY)
        .build();
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batches).build();
    let resource = Resource::builder().with_service_name(service_name.to_owned()).build();
    Ok(SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_endpoint_gets_the_traces_path_and_must_be_http() {
        // Given no endpoint in the environment (the test runner sets none)
        if std::env::var_os(ENDPOINT_VAR).is_some() {
            return;
        }
        let section = |endpoint: Option<&str>| TelemetrySection {
            otlp_endpoint: endpoint.map(str::to_owned),
            ..TelemetrySection::default()
        };
        // When the file names an endpoint, with or without a trailing slash, then spans go to
        // its /v1/traces
        let url = traces_url(&section(Some("http://127.0.0.1:4318/"))).unwrap();
        assert_eq!(url.as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        // And with none, nothing is exported
        assert_eq!(traces_url(&section(None)).unwrap(), None);
        assert_eq!(traces_url(&section(Some(""))).unwrap(), None);
        // And an https:// or bare endpoint is refused, by name
        for endpoint in ["https://collector:4318", "127.0.0.1:4318"] {
            let error = traces_url(&section(Some(endpoint))).unwrap_err();
            assert!(error.to_string().contains(endpoint), "{error}");
        }
    }
}
