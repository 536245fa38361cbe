//! Every series of the registry, walked in a fixed order and handed to a [`SeriesWriter`]: the
//! Prometheus text of `/metrics` is one writer, an OTLP export another, so both show the same
//! series under the same names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{EntrypointMetrics, Histogram, Outcomes, Registry, BUCKETS, OUTCOMES};

/// What a series counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// Only goes up, from zero when the process started.
    Counter,
    /// A value now.
    Gauge,
    /// A distribution of durations, in seconds.
    Histogram,
}

/// One histogram's figures since the process started.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValues {
    /// The buckets' upper bounds, in seconds.
    pub bounds: &'static [f64],
    /// How many fell in each bucket (not cumulative), with one more for past the last bound.
    pub counts: Vec<u64>,
    /// How many in all.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

/// Receives the registry's series.
pub trait SeriesWriter {
    /// A metric starts: its name, kind and what it counts. Its series follow.
    fn family(&mut self, name: &str, kind: SeriesKind, help: &str);
    /// A counter's or gauge's value, with its labels.
    fn value(&mut self, name: &str, labels: &[(&str, &str)], value: f64);
    /// A histogram, with its labels.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], values: &HistogramValues);
}

impl Histogram {
    /// The figures so far.
    pub fn values(&self) -> HistogramValues {
        let mut counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        // Read apart from the buckets while workers end: never fewer than they hold.
        let within: u64 = counts.iter().sum();
        let count = self.count.load(Ordering::Relaxed).max(within);
        counts.push(count - within);
        HistogramValues {
            bounds: &BUCKETS,
            counts,
            count,
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl Outcomes {
    fn write_counts(&self, w: &mut dyn SeriesWriter, name: &str, labels: &[(&str, &str)]) {
        for (i, o) in OUTCOMES.iter().enumerate() {
            let n = self.counts[i].load(Ordering::Relaxed);
            if n > 0 {
                let mut with = labels.to_vec();
                with.push(("outcome", o));
                w.value(name, &with, n as f64);
            }
        }
    }
}

impl Registry {
    /// Hands every series to `w`, metric by metric, series in a stable order.
    pub fn write_series(&self, w: &mut dyn SeriesWriter) {
        let services = self.services.read().map(|s| s.clone()).unwrap_or_default();
        let mut entrypoints: Vec<(&str, &'static str, &str, Arc<EntrypointMetrics>)> = Vec::new();
        for s in &services {
            for (e, (kind, m)) in &s.entrypoints {
                entrypoints.push((e, kind, &s.name, Arc::clone(m)));
            }
        }
        entrypoints.sort_by(|a, b| (a.2, a.0).cmp(&(b.2, b.0)));
        let handled = "basidia_entrypoint_handled_total";
        w.family(
            handled,
            SeriesKind::Counter,
            "Workers run, by entrypoint and outcome.",
        );
        for (e, kind, s, m) in &entrypoints {
            let labels = [("service", *s), ("entrypoint", *e), ("kind", *kind)];
            m.handled.write_counts(w, handled, &labels);
        }
        let took = "basidia_entrypoint_duration_seconds";
        w.family(
            took,
            SeriesKind::Histogram,
            "How long workers took, by entrypoint.",
        );
        for (e, kind, s, m) in &entrypoints {
            let labels = [("service", *s), ("entrypoint", *e), ("kind", *kind)];
            w.histogram(took, &labels, &m.handled.duration.values());
        }
        for (name, help, pick) in [
            (
                "basidia_events_retried_total",
                "Events put back for a retry, by handler.",
                (|m: &EntrypointMetrics| &m.retried) as fn(&EntrypointMetrics) -> &AtomicU64,
            ),
            (
                "basidia_events_dead_lettered_total",
                "Events dead-lettered, by handler.",
                |m: &EntrypointMetrics| &m.dead_lettered,
            ),
        ] {
            w.family(name, SeriesKind::Counter, help);
            for (e, kind, s, m) in entrypoints.iter().filter(|x| x.1 == "event") {
                let labels = [("service", *s), ("entrypoint", *e), ("kind", *kind)];
                w.value(name, &labels, pick(m).load(Ordering::Relaxed) as f64);
            }
        }
        for (name, kind, help) in [
            (
                "basidia_workers_in_flight",
                SeriesKind::Gauge,
                "Workers running now, by service.",
            ),
            (
                "basidia_workers_max",
                SeriesKind::Gauge,
                "The max_workers bound, by service.",
            ),
            (
                "basidia_unknown_method_requests_total",
                SeriesKind::Counter,
                "Requests naming a method the service does not have.",
            ),
        ] {
            w.family(name, kind, help);
            for s in &services {
                let value = match name {
                    "basidia_workers_in_flight" => {
                        s.in_flight.load(Ordering::Relaxed).max(0) as u64
                    }
                    "basidia_workers_max" => s.max_workers.load(Ordering::Relaxed),
                    _ => s.unknown_methods.load(Ordering::Relaxed),
                };
                w.value(name, &[("service", &s.name)], value as f64);
            }
        }
        for (keyed, total, hist, first, second, what) in [
            (
                &self.calls,
                "basidia_client_calls_total",
                "basidia_client_call_duration_seconds",
                "service",
                "method",
                "Calls made",
            ),
            (
                &self.published,
                "basidia_events_published_total",
                "basidia_events_published_duration_seconds",
                "source",
                "event_type",
                "Events published",
            ),
        ] {
            let all = keyed.sorted();
            w.family(total, SeriesKind::Counter, &format!("{what}, by outcome."));
            for ((a, b), m) in &all {
                m.write_counts(w, total, &[(first, a), (second, b)]);
            }
            let help = format!("{what}: how long each took.");
            w.family(hist, SeriesKind::Histogram, &help);
            for ((a, b), m) in &all {
                w.histogram(hist, &[(first, a), (second, b)], &m.duration.values());
            }
        }
        let routes = self.http.sorted();
        let requests = "basidia_http_requests_total";
        w.family(
            requests,
            SeriesKind::Counter,
            "HTTP requests, by method, route and status.",
        );
        for ((method, route), m) in &routes {
            let statuses = m.statuses.read().map(|s| {
                let mut v: Vec<(u16, u64)> = s
                    .iter()
                    .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
                    .collect();
                v.sort_unstable();
                v
            });
            for (status, n) in statuses.unwrap_or_default() {
                let status = status.to_string();
                let labels = [
                    ("method", method.as_str()),
                    ("route", route),
                    ("status", &status),
                ];
                w.value(requests, &labels, n as f64);
            }
        }
        let took = "basidia_http_request_duration_seconds";
        w.family(
            took,
            SeriesKind::Histogram,
            "How long HTTP requests took, by method and route.",
        );
        for ((method, route), m) in &routes {
            let labels = [("method", method.as_str()), ("route", route.as_str())];
            w.histogram(took, &labels, &m.duration.values());
        }
        let reconnects = "basidia_broker_reconnects_total";
        w.family(
            reconnects,
            SeriesKind::Counter,
            "Broker connections re-established after a loss, by broker.",
        );
        let counted = self
            .reconnects
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        for (kind, n) in counted {
            w.value(reconnects, &[("broker", kind)], n as f64);
        }
        let gauges = self.gauges.read().map(|g| g.clone()).unwrap_or_default();
        let mut named: Vec<&str> = gauges.iter().map(|(n, _, _)| n.as_str()).collect();
        named.dedup();
        for name in named {
            let help = if name == "basidia_broker_connected" {
                "1 while the broker connection is up, else 0."
            } else {
                "A gauge of the program's."
            };
            w.family(name, SeriesKind::Gauge, help);
            for (_, labels, read) in gauges.iter().filter(|(n, _, _)| n == name) {
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                w.value(name, &pairs, read());
            }
        }
    }
}
