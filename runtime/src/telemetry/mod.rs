//! Traces to an OpenTelemetry collector over OTLP/HTTP, from `[telemetry]` and the standard
//! `OTEL_*` variables.
//!
//! ```toml
//! [telemetry]
//! enabled = true
//! endpoint = "http://127.0.0.1:4318"   # the collector; spans go to <endpoint>/v1/traces
//! sample_ratio = 0.1                   # of new traces; a caller's decision is followed
//! headers = { "x-api-key" = "..." }
//! ```
//!
//! Off by default: with it off no span is exported and no exporter exists; the W3C trace context
//! travels on every hop either way. It is on when `enabled = true`, or when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (unless
//! `enabled = false` or `OTEL_SDK_DISABLED=true`). A standard variable that is set wins over the
//! file, as `BASIDIA_*` variables do: `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`,
//! `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` (`http/protobuf` only), `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
//!
//! The process's metrics (the series of `/metrics`) are exported as well, to
//! `<endpoint>/v1/metrics` every `metrics_interval` (60 s; `OTEL_METRIC_EXPORT_INTERVAL`) and
//! once more at stop, as cumulative sums, gauges and histograms; `metrics = false` or
//! `OTEL_METRICS_EXPORTER=none` leaves them out, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` sends
//! them elsewhere.
//!
//! Spans follow the OpenTelemetry semantic conventions: an RPC server span per worker and a
//! client span per call (`rpc.system.name`, `rpc.method` as `service/method`), `send` and
//! `process` messaging spans for events, `{method} {route}` HTTP server spans; a failure is the
//! span's error status with its remote error type as `error.type`; a retried or dead-lettered
//! event shows as an event on its `process` span. Spans that handlers open with `tracing`
//! become children of their worker's span.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::human_duration;

/// The `[telemetry]` section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Whether traces are exported; unset means "when an `OTEL_EXPORTER_OTLP_*ENDPOINT`
    /// variable is set".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318` when unset); spans are posted
    /// to `<endpoint>/v1/traces`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The `service.name` of the process's spans: by default the one service it hosts, or the
    /// program's name when it hosts several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The fraction of new traces that are sampled, from 0 to 1 (1 when unset). A trace begun
    /// by a caller keeps the caller's decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    /// Headers sent with every export (an API key, say); never logged or shown.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How long one export may take.
    #[serde(with = "human_duration")]
    pub timeout: Duration,
    /// Whether the process's metrics (those of `/metrics`) are exported too, to
    /// `<endpoint>/v1/metrics`, whenever traces are.
    pub metrics: bool,
    /// How often the metrics are exported (and once more at stop).
    #[serde(with = "human_duration")]
    pub metrics_interval: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: None,
            endpoint: None,
            service_name: None,
            sample_ratio: None,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            metrics: true,
            metrics_interval: Duration::from_secs(60),
        }
    }
}

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A setting has a value that cannot be used.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The setting (`telemetry.sample_ratio`, `OTEL_TRACES_SAMPLER`, ...).
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Export was asked for of a program built without it.
    #[error("traces are to be exported, but this program was built without the `otlp` feature")]
    NotBuilt,
    /// The exporter could not be built.
    #[cfg(feature = "otlp")]
    #[error("cannot build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

fn invalid(setting: &str, reason: impl Into<String>) -> TelemetryError {
    TelemetryError::Invalid {
        setting: setting.to_string(),
        reason: reason.into(),
    }
}

/// Which new traces are sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every trace.
    Always,
    /// None.
    Never,
    /// This fraction of trace ids.
    Ratio(f64),
}

/// Export as resolved from the configuration and the environment.
#[derive(Clone, PartialEq)]
pub struct Exporting {
    /// The URL spans are posted to.
    pub traces_url: String,
    /// Headers sent with every export of spans.
    pub headers: BTreeMap<String, String>,
    /// Headers sent with every export of metrics.
    pub metrics_headers: BTreeMap<String, String>,
    /// How long one export may take.
    pub timeout: Duration,
    /// `service.name`, if configured.
    pub service_name: Option<String>,
    /// Which new traces are sampled.
    pub sampling: Sampling,
    /// Whether a caller's sampling decision is followed (the `parentbased_*` samplers, and
    /// Basidia's default).
    pub parent_based: bool,
    /// The URL metrics are posted to, if they are exported.
    pub metrics_url: Option<String>,
    /// How often they are.
    pub metrics_interval: Duration,
}

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318";
const TRACES_PATH: &str = "/v1/traces";
const METRICS_PATH: &str = "/v1/metrics";

/// What `config` and the environment (`env` reads a variable) ask for: `None` when traces are
/// not exported.
pub fn resolve(
    config: &TelemetryConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Exporting>, TelemetryError> {
    // An empty variable counts as unset, as the OpenTelemetry specification says.
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let signal_url = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let base_url = env("OTEL_EXPORTER_OTLP_ENDPOINT");
    let wanted = config
        .enabled
        .unwrap_or(signal_url.is_some() || base_url.is_some());
    if !wanted {
        return Ok(None);
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = env(var) {
            if p.trim() != "http/protobuf" {
                return Err(invalid(
                    var,
                    format!("{p:?}: Basidia exports over OTLP/HTTP with protobuf (http/protobuf)"),
                ));
            }
            break;
        }
    }
    let base = match (&base_url, &config.endpoint) {
        (Some(base), _) => ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
        (None, Some(base)) => ("telemetry.endpoint", base.as_str()),
        (None, None) => ("telemetry.endpoint", DEFAULT_ENDPOINT),
    };
    let (setting, traces_url) = match signal_url {
        Some(url) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url),
        None => (base.0, join(base.1, TRACES_PATH)),
    };
    check_url(setting, &traces_url)?;
    let metrics_off = !config.metrics
        || env("OTEL_METRICS_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    let metrics_url = match env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
        _ if metrics_off => None,
        Some(url) => Some(("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", url)),
        None => Some((base.0, join(base.1, METRICS_PATH))),
    };
    if let Some((setting, url)) = &metrics_url {
        check_url(setting, url)?;
    }
    let mut metrics_interval = config.metrics_interval;
    if let Some(ms) = env("OTEL_METRIC_EXPORT_INTERVAL") {
        let ms: u64 = ms.trim().parse().map_err(|_| {
            invalid(
                "OTEL_METRIC_EXPORT_INTERVAL",
                format!("{ms:?} is not a number of milliseconds"),
            )
        })?;
        metrics_interval = Duration::from_millis(ms);
    }
    if metrics_interval < Duration::from_millis(100) {
        return Err(invalid(
            "telemetry.metrics_interval",
            "export metrics at most every 100 ms",
        ));
    }
    // The general headers go to both signals; a signal's own, only to its endpoint (which may
    // be another host).
    let mut shared = config.headers.clone();
    if let Some(list) = env("OTEL_EXPORTER_OTLP_HEADERS") {
        shared.extend(parse_headers("OTEL_EXPORTER_OTLP_HEADERS", &list)?);
    }
    let (mut headers, mut metrics_headers) = (shared.clone(), shared);
    if let Some(list) = env("OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
        headers.extend(parse_headers("OTEL_EXPORTER_OTLP_TRACES_HEADERS", &list)?);
    }
    if let Some(list) = env("OTEL_EXPORTER_OTLP_METRICS_HEADERS") {
        metrics_headers.extend(parse_headers("OTEL_EXPORTER_OTLP_METRICS_HEADERS", &list)?);
    }
    let mut timeout = config.timeout;
    for var in [
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    ] {
        if let Some(ms) = env(var) {
            let ms: u64 = ms
                .trim()
                .parse()
                .map_err(|_| invalid(var, format!("{ms:?} is not a number of milliseconds")))?;
            timeout = Duration::from_millis(ms);
        }
    }
    if timeout.is_zero() {
        return Err(invalid("telemetry.timeout", "an export needs some time"));
    }
    let (sampling, parent_based) = match env("OTEL_TRACES_SAMPLER") {
        Some(name) => sampler_from_env(&name, env("OTEL_TRACES_SAMPLER_ARG").as_deref())?,
        None => match config.sample_ratio {
            None => (Sampling::Always, true),
            Some(r) => (ratio("telemetry.sample_ratio", r)?, true),
        },
    };
    Ok(Some(Exporting {
        traces_url,
        headers,
        metrics_headers,
        timeout,
        service_name: env("OTEL_SERVICE_NAME").or_else(|| config.service_name.clone()),
        sampling,
        parent_based,
        metrics_url: metrics_url.map(|(_, url)| url),
        metrics_interval,
    }))
}

/// `<base><path>`: `<base>/v1/traces`, say.
fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim().trim_end_matches('/'))
}

fn check_url(setting: &str, given: &str) -> Result<(), TelemetryError> {
    // Named in messages with its credentials masked.
    let shown = basidia_core::redact_url(given);
    let url = shown.as_str();
    let rest = given.strip_prefix("http://").ok_or_else(|| {
        let reason = if url.starts_with("https://") {
            format!(
                "{url:?}: the exporter speaks plain HTTP; send to a collector on the host or in \
                 its pod (an OpenTelemetry Collector or agent) and let it forward over TLS"
            )
        } else {
            format!("{url:?} is not an http:// URL")
        };
        invalid(setting, reason)
    })?;
    if rest.is_empty() || rest.starts_with('/') || given.contains(char::is_whitespace) {
        return Err(invalid(setting, format!("{url:?} names no host")));
    }
    Ok(())
}

/// `key1=value1,key2=value2`, values percent-decoded (the specification's format).
fn parse_headers(var: &str, list: &str) -> Result<Vec<(String, String)>, TelemetryError> {
    list.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| invalid(var, "expected key=value pairs separated by commas"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(invalid(var, "a header has no name"));
            }
            Ok((key.to_string(), percent_decode(value.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ratio(setting: &str, r: f64) -> Result<Sampling, TelemetryError> {
    if !(0.0..=1.0).contains(&r) {
        return Err(invalid(setting, format!("{r} is not between 0 and 1")));
    }
    Ok(Sampling::Ratio(r))
}

fn sampler_from_env(name: &str, arg: Option<&str>) -> Result<(Sampling, bool), TelemetryError> {
    let ratio_arg = || -> Result<Sampling, TelemetryError> {
        match arg {
            None => Ok(Sampling::Always),
            Some(a) => {
                let r: f64 = a.trim().parse().map_err(|_| {
                    invalid("OTEL_TRACES_SAMPLER_ARG", format!("{a:?} is not a number"))
                })?;
                ratio("OTEL_TRACES_SAMPLER_ARG", r)
            }
        }
    };
    Ok(match name.trim() {
        "always_on" => (Sampling::Always, false),
        "always_off" => (Sampling::Never, false),
        "traceidratio" => (ratio_arg()?, false),
        "parentbased_always_on" => (Sampling::Always, true),
        "parentbased_always_off" => (Sampling::Never, true),
        "parentbased_traceidratio" => (ratio_arg()?, true),
        other => {
            return Err(invalid(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "{other:?}: expected always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                ),
            ))
        }
    })
}

/// Installs the process's log subscriber as `log` says, with the trace exporter beside it when
/// `telemetry` or the `OTEL_*` variables ask for one; `default_name` is the spans'
/// `service.name` unless one is configured. Does nothing if a subscriber is installed already.
pub fn install(
    quiet: bool,
    log: &crate::logging::LogConfig,
    telemetry: &TelemetryConfig,
    default_name: &str,
) -> Result<(), TelemetryError> {
    let Some(exporting) = resolve(telemetry, |v| std::env::var(v).ok())? else {
        crate::logging::init_with(quiet, log);
        return Ok(());
    };
    #[cfg(feature = "otlp")]
    {
        let (layer, pipeline) = export::pipeline(&exporting, default_name)?;
        if crate::logging::install(quiet, log, Some(layer)) {
            pipeline.activate();
            let endpoint = basidia_core::redact_url(&exporting.traces_url);
            tracing::info!(%endpoint, "exporting traces");
        }
        Ok(())
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = (exporting, default_name);
        Err(TelemetryError::NotBuilt)
    }
}

/// Exports the spans still buffered and stops the exporter, within the export timeout; does
/// nothing when traces are not exported. Hosts call it as they stop.
pub async fn flush() {
    #[cfg(feature = "otlp")]
    export::flush().await;
}

/// Headers by name, their values masked: they carry collector credentials.
fn masked(headers: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    headers
        .keys()
        .map(|k| (k.as_str(), crate::config::MASK))
        .collect()
}

impl std::fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("enabled", &self.enabled)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(basidia_core::redact_url),
            )
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("headers", &masked(&self.headers))
            .field("timeout", &self.timeout)
            .field("metrics", &self.metrics)
            .field("metrics_interval", &self.metrics_interval)
            .finish()
    }
}

impl std::fmt::Debug for Exporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporting")
            .field("traces_url", &basidia_core::redact_url(&self.traces_url))
            .field("headers", &masked(&self.headers))
            .field("metrics_headers", &masked(&self.metrics_headers))
            .field("timeout", &self.timeout)
            .field("service_name", &self.service_name)
            .field("sampling", &self.sampling)
            .field("parent_based", &self.parent_based)
            .field(
                "metrics_url",
                &self.metrics_url.as_deref().map(basidia_core::redact_url),
            )
            .field("metrics_interval", &self.metrics_interval)
            .finish()
    }
}

#[cfg(feature = "otlp")]
mod export;
#[cfg(feature = "otlp")]
mod metrics;

#[cfg(test)]
mod tests;
