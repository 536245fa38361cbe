//! OTLP metrics: the series `/metrics` serves, posted as an OTLP/HTTP protobuf request to the
//! collector every interval and once more at stop, from a thread of their own (the HTTP client
//! blocks). Counters are cumulative monotonic sums from the process's start, durations
//! cumulative histograms with the registry's bucket bounds, the rest gauges.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use basidia_core::metrics::{HistogramValues, SeriesKind, SeriesWriter};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

/// The thread exporting the metrics; [`MetricsExport::stop`] exports once more and ends it.
pub(super) struct MetricsExport {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// Where and how to export.
pub(super) struct Target {
    pub(super) url: String,
    pub(super) headers: BTreeMap<String, String>,
    pub(super) timeout: Duration,
    pub(super) interval: Duration,
    /// The resource's attributes (`service.name`, ...).
    pub(super) resource: Vec<(&'static str, String)>,
}

impl MetricsExport {
    /// Starts exporting to `target`; `None` if the thread or its HTTP client cannot be made (said
    /// in a log line: the services run on without metrics export).
    pub(super) fn start(target: Target) -> Option<MetricsExport> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("basidia-otlp-metrics".into())
            .spawn(move || run(&target, &stopped))
            .map_err(|e| tracing::warn!("metrics are not exported: cannot start a thread: {e}"))
            .ok()?;
        Some(MetricsExport { stop, thread })
    }

    /// Exports once more, then ends the thread (waiting for that export, which its timeout
    /// bounds).
    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn run(target: &Target, stopped: &mpsc::Receiver<()>) {
    let client = match reqwest::blocking::Client::builder()
        .timeout(target.timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("metrics are not exported: no HTTP client: {e}");
            return;
        }
    };
    let start_ns = now_ns();
    let mut failing = false;
    loop {
        let last = match stopped.recv_timeout(target.interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        let body = request(target, start_ns).encode_to_vec();
        let mut post = client
            .post(&target.url)
            .header("content-type", "application/x-protobuf");
        for (k, v) in &target.headers {
            post = post.header(k, v);
        }
        let outcome = post.body(body).send().map_err(|e| e.without_url());
        // Said once when exports start failing and once when they work again, not every time.
        match outcome.as_ref().map(|r| r.status()) {
            Ok(status) if status.is_success() => {
                if failing {
                    tracing::info!("metrics export works again");
                }
                failing = false;
            }
            other => {
                if !failing {
                    let why = match other {
                        Ok(status) => format!("the collector answered {status}"),
                        Err(e) => e.to_string(),
                    };
                    let url = basidia_core::redact_url(&target.url);
                    tracing::warn!(%url, "metrics export failed: {why}");
                }
                failing = true;
            }
        }
        if last {
            return;
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// The request carrying every series now.
fn request(target: &Target, start_ns: u64) -> ExportMetricsServiceRequest {
    let mut writer = Otlp {
        start_ns,
        now_ns: now_ns(),
        metrics: Vec::new(),
    };
    basidia_core::metrics::registry().write_series(&mut writer);
    let resource = Resource {
        attributes: target.resource.iter().map(|(k, v)| string(k, v)).collect(),
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "basidia".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope),
                metrics: writer.metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Builds the OTLP metrics from the registry's series.
struct Otlp {
    start_ns: u64,
    now_ns: u64,
    metrics: Vec<Metric>,
}

impl SeriesWriter for Otlp {
    fn family(&mut self, name: &str, kind: SeriesKind, help: &str) {
        let cumulative = AggregationTemporality::Cumulative as i32;
        let data = match kind {
            SeriesKind::Counter => metric::Data::Sum(Sum {
                aggregation_temporality: cumulative,
                is_monotonic: true,
                ..Default::default()
            }),
            SeriesKind::Gauge => metric::Data::Gauge(Gauge::default()),
            SeriesKind::Histogram => metric::Data::Histogram(Histogram {
                aggregation_temporality: cumulative,
                ..Default::default()
            }),
        };
        self.metrics.push(Metric {
            name: name.to_string(),
            description: help.to_string(),
            unit: if kind == SeriesKind::Histogram {
                "s".into()
            } else {
                String::new()
            },
            data: Some(data),
            ..Default::default()
        });
    }

    fn value(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let point = NumberDataPoint {
            attributes: labels.iter().map(|(k, v)| string(k, v)).collect(),
            start_time_unix_nano: self.start_ns,
            time_unix_nano: self.now_ns,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        };
        match self.current(name) {
            Some(metric::Data::Sum(sum)) => sum.data_points.push(point),
            Some(metric::Data::Gauge(gauge)) => gauge.data_points.push(point),
            _ => {}
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], values: &HistogramValues) {
        let point = HistogramDataPoint {
            attributes: labels.iter().map(|(k, v)| string(k, v)).collect(),
            start_time_unix_nano: self.start_ns,
            time_unix_nano: self.now_ns,
            count: values.count,
            sum: Some(values.sum),
            bucket_counts: values.counts.clone(),
            explicit_bounds: values.bounds.to_vec(),
            ..Default::default()
        };
        if let Some(metric::Data::Histogram(h)) = self.current(name) {
            h.data_points.push(point);
        }
    }
}

impl Otlp {
    /// The data of the metric being written, if it is `name`.
    fn current(&mut self, name: &str) -> Option<&mut metric::Data> {
        self.metrics
            .last_mut()
            .filter(|m| m.name == name)
            .and_then(|m| m.data.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_series_become_otlp_metrics() {
        let registry = basidia_core::metrics::registry();
        let m = registry.service("otlp_service", &[("work".into(), "rpc")], 3);
        let work = m.entrypoint("work").unwrap();
        work.handled.record("success", Duration::from_millis(2));
        work.handled.record("timeout", Duration::from_secs(20));
        let target = Target {
            url: "http://127.0.0.1:9/v1/metrics".into(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            resource: vec![("service.name", "otlp_service".into())],
        };
        let request = request(&target, 1);
        let scope = &request.resource_metrics[0].scope_metrics[0];
        let find = |name: &str| scope.metrics.iter().find(|m| m.name == name).unwrap();
        let ours = |attrs: &[KeyValue]| {
            attrs
                .iter()
                .any(|a| a == &string("service", "otlp_service"))
        };
        let Some(metric::Data::Sum(handled)) = &find("basidia_entrypoint_handled_total").data
        else {
            panic!("a sum");
        };
        assert!(handled.is_monotonic);
        let points: Vec<_> = handled
            .data_points
            .iter()
            .filter(|p| ours(&p.attributes))
            .collect();
        assert_eq!(points.len(), 2, "one point per outcome");
        assert!(points
            .iter()
            .all(|p| p.value == Some(number_data_point::Value::AsDouble(1.0))));
        let Some(metric::Data::Histogram(took)) = &find("basidia_entrypoint_duration_seconds").data
        else {
            panic!("a histogram");
        };
        let point = took
            .data_points
            .iter()
            .find(|p| ours(&p.attributes))
            .unwrap();
        assert_eq!(point.count, 2);
        assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
        assert_eq!(point.bucket_counts.iter().sum::<u64>(), 2);
        assert_eq!(
            *point.bucket_counts.last().unwrap(),
            1,
            "20 s is past every bound"
        );
        let Some(metric::Data::Gauge(max)) = &find("basidia_workers_max").data else {
            panic!("a gauge");
        };
        let max = max
            .data_points
            .iter()
            .find(|p| ours(&p.attributes))
            .unwrap();
        assert_eq!(max.value, Some(number_data_point::Value::AsDouble(3.0)));
        assert_eq!(point.start_time_unix_nano, 1);
    }
}
