//! The OpenTelemetry pipeline: an OTLP/HTTP exporter behind a batch processor, a
//! `tracing-opentelemetry` layer over the spans Basidia and its users open, and the span hook
//! that links, names and types Basidia's spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use basidia_core::telemetry::{SpanEnd, SpanHook, SpanRole, SpanStart};
use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::Layer;

use super::metrics::{MetricsExport, Target};
use super::{Exporting, Sampling, TelemetryError};
use crate::logging::BoxedLayer;

/// The provider of the process's exported spans, once its layer is installed.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The metrics export, until the process stops it.
static METRICS: Mutex<Option<MetricsExport>> = Mutex::new(None);

/// Spans of these crates are never exported: client libraries' internals, and the exporter's
/// own HTTP requests (which would otherwise be spans to export, without end).
const QUIET_TARGETS: &str = "info,lapin=off,amq_protocol=off,async_nats=off,hyper=off,\
    hyper_util=off,h2=off,reqwest=off,tower=off,tower_http=off,rustls=off,opentelemetry=off,\
    opentelemetry_sdk=off,opentelemetry_http=off,opentelemetry_otlp=off";

/// A pipeline built but not yet serving: its layer goes into the subscriber, then
/// [`Pipeline::activate`] starts it (or dropping it shuts the exporter down).
pub(super) struct Pipeline {
    provider: Option<SdkTracerProvider>,
    metrics: Option<Target>,
    parent_based: bool,
}

impl Pipeline {
    /// Keeps the exporter for the process's life and installs the span hook.
    pub(super) fn activate(mut self) {
        if let Some(provider) = self.provider.take() {
            if PROVIDER.set(provider).is_ok() {
                let hook = OtelHook {
                    parent_based: self.parent_based,
                };
                basidia_core::telemetry::install(Arc::new(hook));
                if let Some(export) = self.metrics.take().and_then(MetricsExport::start) {
                    *METRICS.lock().unwrap_or_else(|e| e.into_inner()) = Some(export);
                }
            }
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The exporter `exporting` describes, with `default_name` as `service.name` unless one is
/// configured, and the layer that feeds it.
pub(super) fn pipeline(
    exporting: &Exporting,
    default_name: &str,
) -> Result<(BoxedLayer, Pipeline), TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(exporting.traces_url.clone())
        .with_timeout(exporting.timeout)
        .with_headers(HashMap::from_iter(exporting.headers.clone()))
        .build()
        .map_err(TelemetryError::Exporter)?;
    let root = match exporting.sampling {
        Sampling::Always => Sampler::AlwaysOn,
        Sampling::Never => Sampler::AlwaysOff,
        Sampling::Ratio(r) => Sampler::TraceIdRatioBased(r),
    };
    let sampler = if exporting.parent_based {
        Sampler::ParentBased(Box::new(root))
    } else {
        root
    };
    let name = exporting
        .service_name
        .clone()
        .unwrap_or_else(|| default_name.to_string());
    let host = basidia_core::broker::host_name();
    let resource = Resource::builder()
        .with_service_name(name.clone())
        .with_attributes([
            KeyValue::new("process.pid", i64::from(std::process::id())),
            KeyValue::new("host.name", host.clone()),
            KeyValue::new("telemetry.distro.name", "basidia"),
            KeyValue::new("telemetry.distro.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    let metrics = exporting.metrics_url.clone().map(|url| Target {
        url,
        headers: exporting.metrics_headers.clone(),
        timeout: exporting.timeout,
        interval: exporting.metrics_interval,
        resource: vec![
            ("service.name", name),
            ("process.pid", std::process::id().to_string()),
            ("host.name", host),
        ],
    });
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("basidia");
    // Nor what runs in a worker whose caller decided against a trace (with a parent-based
    // sampler): the SDK would build those spans only to drop them.
    // Asked at every span and event (a dynamic filter), not once per call site.
    let filter = tracing_subscriber::EnvFilter::new(QUIET_TARGETS).and(
        tracing_subscriber::filter::dynamic_filter_fn(|_, _| {
            !basidia_core::telemetry::suppressed()
        }),
    );
    // What costs on every poll of an instrumented future (making each span's context the
    // current OpenTelemetry one, timing busy and idle) or on every span (its source location
    // and target as attributes) is left out: Basidia's spans carry what the conventions ask
    // for, and parents come from the spans' nesting, not the current context.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(filter)
        .boxed();
    Ok((
        layer,
        Pipeline {
            provider: Some(provider),
            metrics,
            parent_based: exporting.parent_based,
        },
    ))
}

/// Exports the spans still buffered and the metrics once more, and stops both exporters; each
/// waits at most its export timeout. Does nothing when nothing is exported.
pub(super) async fn flush() {
    let metrics = METRICS.lock().unwrap_or_else(|e| e.into_inner()).take();
    let provider = PROVIDER.get().cloned();
    if metrics.is_none() && provider.is_none() {
        return;
    }
    // The exporters' HTTP clients block: off the async threads.
    let done = tokio::task::spawn_blocking(move || {
        if let Some(m) = metrics {
            m.stop();
        }
        provider.map(|p| p.shutdown())
    })
    .await;
    if let Ok(Some(Err(e))) = done {
        tracing::warn!("traces not all exported at stop: {e}");
    }
}

/// Links, names and types Basidia's spans for OpenTelemetry.
struct OtelHook {
    /// Whether the sampler follows a caller's decision.
    parent_based: bool,
}

impl SpanHook for OtelHook {
    fn start(&self, span: &tracing::Span, start: &SpanStart<'_>) -> Option<String> {
        if span.is_disabled() || basidia_core::telemetry::suppressed() {
            return None;
        }
        if let Some(parent) = start.parent.and_then(|p| remote(p, start.tracestate)) {
            let cx = opentelemetry::Context::new().with_remote_span_context(parent);
            // Only fails for a span this layer does not see, which `context` reports below.
            let _ = span.set_parent(cx);
        }
        let (name, kind) = name_and_kind(start);
        span.record("otel.name", name.as_str());
        span.record("otel.kind", kind);
        let cx = span.context();
        let own = cx.span().span_context().clone();
        // Attributes only for spans that are exported: most are not, at a low sampling ratio.
        if own.is_sampled() {
            describe(span, start);
        }
        own.is_valid().then(|| {
            format!(
                "00-{:032x}-{:016x}-{:02x}",
                own.trace_id(),
                own.span_id(),
                own.trace_flags().to_u8()
            )
        })
    }

    fn follows_unsampled_parents(&self) -> bool {
        self.parent_based
    }

    fn end(&self, span: &tracing::Span, end: &SpanEnd<'_>) {
        // An HTTP server span is an error for a 5xx only: a 4xx is the client's doing.
        let failed = match end.http_status {
            Some(status) => {
                span.set_attribute("http.response.status_code", i64::from(status));
                status >= 500
            }
            None => end.error.is_some(),
        };
        if failed {
            let status = end.http_status.map(|s| s.to_string()).unwrap_or_default();
            let (kind, message) = end.error.unwrap_or((status.as_str(), ""));
            span.set_attribute("error.type", kind.to_string());
            span.set_status(Status::error(message.to_string()));
        }
    }
}

/// The remote span a `traceparent` (already checked to be of version 00) and `tracestate` name.
fn remote(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut parts = traceparent.split('-').skip(1);
    let trace_id = TraceId::from_hex(parts.next()?).ok()?;
    let span_id = SpanId::from_hex(parts.next()?).ok()?;
    let flags = u8::from_str_radix(parts.next()?, 16).ok()?;
    // A state that does not parse is dropped, as the W3C specification says, not the parent.
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let remote = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, state);
    remote.is_valid().then_some(remote)
}

/// `messaging.system` for a broker kind.
fn messaging_system(broker: &str) -> &str {
    match broker {
        "amqp" => "rabbitmq",
        other => other,
    }
}

/// The span's name and kind (`server`, `client`, ...) by the semantic conventions.
fn name_and_kind(start: &SpanStart<'_>) -> (String, &'static str) {
    match start.role {
        SpanRole::RpcServer { service, method } => (format!("{service}/{method}"), "server"),
        SpanRole::RpcClient { service, method } => (format!("{service}/{method}"), "client"),
        SpanRole::Publish { source, event_type } => {
            (format!("send {source}.{event_type}"), "producer")
        }
        SpanRole::Process {
            source, event_type, ..
        } => (format!("process {source}.{event_type}"), "consumer"),
        SpanRole::Http { method, route, .. } => (format!("{method} {route}"), "server"),
        SpanRole::Timer { service, timer } => (format!("{service}/{timer}"), "internal"),
        _ => (String::from("basidia"), "internal"),
    }
}

/// Sets the attributes the semantic conventions give the span's role.
fn describe(span: &tracing::Span, start: &SpanStart<'_>) {
    let attr = |key: &'static str, value: String| span.set_attribute(key, value);
    match start.role {
        SpanRole::RpcServer { service, method } | SpanRole::RpcClient { service, method } => {
            attr("rpc.system.name", "basidia".into());
            attr("rpc.method", format!("{service}/{method}"));
            attr("basidia.broker", start.broker.to_string());
        }
        SpanRole::Publish { source, event_type } => {
            let destination = format!("{source}.{event_type}");
            messaging(span, start.broker, &destination, "send", event_type);
        }
        SpanRole::Process {
            source,
            event_type,
            service,
            handler,
        } => {
            let destination = format!("{source}.{event_type}");
            messaging(span, start.broker, &destination, "process", event_type);
            attr(
                "messaging.consumer.group.name",
                format!("{service}.{handler}"),
            );
        }
        SpanRole::Http {
            method,
            route,
            service,
        } => {
            attr("http.request.method", method.to_string());
            attr("http.route", route.to_string());
            attr("basidia.service", service.to_string());
        }
        SpanRole::Timer { service, timer } => {
            attr("basidia.service", service.to_string());
            attr("basidia.timer", timer.to_string());
        }
        _ => {}
    }
}

fn messaging(span: &tracing::Span, broker: &str, destination: &str, op: &str, event_type: &str) {
    span.set_attribute("messaging.system", messaging_system(broker).to_string());
    span.set_attribute("messaging.destination.name", destination.to_string());
    span.set_attribute("messaging.operation.type", op.to_string());
    span.set_attribute("messaging.operation.name", op.to_string());
    if broker == "amqp" {
        span.set_attribute(
            "messaging.rabbitmq.destination.routing_key",
            event_type.to_string(),
        );
    }
}
