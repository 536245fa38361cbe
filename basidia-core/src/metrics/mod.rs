//! The process's metrics, in Prometheus' text format: what every entrypoint handled and how
//! long it took, workers in flight against `max_workers`, client calls, events published,
//! retried and dead-lettered, and HTTP requests (recorded by the HTTP edge).
//!
//! Names are in base units (seconds), counters end in `_total`, and every label comes from a
//! bounded set: services, entrypoints and routes a program declares, targets and event types its
//! code names (at most [`MAX_SERIES`] of each, the rest counted under `other`), and outcomes
//! from a fixed list. A request naming a method nobody declared counts in one series per
//! service, whatever the name, so peers cannot create series.
//!
//! Recording costs a few atomic operations: the series of a service's entrypoints are made when
//! it starts, and those of targets and event types once, on their first use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::error::ErrorKind;

/// The most series of one kind keyed by names from code (call targets, event types, routes);
/// past it, new names count under `other`.
pub const MAX_SERIES: usize = 1_000;

/// Upper bounds of the duration histograms' buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The outcome label of a result: `success`, or the error's kind.
pub fn outcome(error: Option<ErrorKind>) -> &'static str {
    match error {
        None => "success",
        Some(ErrorKind::UnknownService) => "unknown_service",
        Some(ErrorKind::MethodNotFound) => "method_not_found",
        Some(ErrorKind::MalformedRequest) => "malformed_request",
        Some(ErrorKind::IncorrectSignature) => "incorrect_signature",
        Some(ErrorKind::Timeout) => "timeout",
        Some(ErrorKind::ConnectionLost) => "connection_lost",
        Some(ErrorKind::Handler) => "handler_error",
        Some(_) => "error",
    }
}

const OUTCOMES: [&str; 10] = [
    "success",
    "unknown_service",
    "method_not_found",
    "malformed_request",
    "incorrect_signature",
    "timeout",
    "connection_lost",
    "handler_error",
    "error",
    "unauthorized",
];

fn outcome_index(outcome: &str) -> usize {
    OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(8)
}

/// A duration histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Counts by outcome, with durations.
#[derive(Default)]
pub struct Outcomes {
    counts: [AtomicU64; OUTCOMES.len()],
    /// How long each took.
    pub duration: Histogram,
}

impl Outcomes {
    /// Records one result.
    pub fn record(&self, outcome: &str, took: Duration) {
        self.counts[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(took);
    }
}

/// One entrypoint's series.
#[derive(Default)]
pub struct EntrypointMetrics {
    /// Handled, by outcome, and how long each took.
    pub handled: Outcomes,
    /// Events put back for a retry.
    pub retried: AtomicU64,
    /// Events dead-lettered.
    pub dead_lettered: AtomicU64,
}

/// One service's series.
pub struct ServiceMetrics {
    name: String,
    entrypoints: HashMap<String, (&'static str, Arc<EntrypointMetrics>)>,
    /// Workers running now.
    pub in_flight: AtomicI64,
    max_workers: AtomicU64,
    /// Requests naming a method the service does not have, whatever the name.
    pub unknown_methods: AtomicU64,
}

impl ServiceMetrics {
    /// The series of `entrypoint`, if the service declares it.
    pub fn entrypoint(&self, entrypoint: &str) -> Option<&EntrypointMetrics> {
        self.entrypoints.get(entrypoint).map(|(_, m)| &**m)
    }
}

/// Series keyed by two names from code, at most [`MAX_SERIES`] of them; looked up without
/// allocating.
struct Keyed<T> {
    map: RwLock<HashMap<String, HashMap<String, Arc<T>>>>,
}

impl<T: Default> Keyed<T> {
    fn new() -> Self {
        Keyed {
            map: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, a: &str, b: &str) -> Arc<T> {
        if let Ok(map) = self.map.read() {
            if let Some(m) = map.get(a).and_then(|inner| inner.get(b)) {
                return Arc::clone(m);
            }
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let len: usize = map.values().map(HashMap::len).sum();
        let (a, b) = if len >= MAX_SERIES && map.get(a).and_then(|i| i.get(b)).is_none() {
            ("other", "other")
        } else {
            (a, b)
        };
        Arc::clone(
            map.entry(a.to_string())
                .or_default()
                .entry(b.to_string())
                .or_default(),
        )
    }

    fn sorted(&self) -> Vec<((String, String), Arc<T>)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = map
            .iter()
            .flat_map(|(a, inner)| {
                inner
                    .iter()
                    .map(move |(b, v)| ((a.clone(), b.clone()), Arc::clone(v)))
            })
            .collect();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        all
    }
}

/// HTTP requests of one method and route.
#[derive(Default)]
pub struct RouteMetrics {
    statuses: RwLock<HashMap<u16, AtomicU64>>,
    /// How long each took.
    pub duration: Histogram,
}

impl RouteMetrics {
    /// Records one answered request.
    pub fn record(&self, status: u16, took: Duration) {
        let counted = self
            .statuses
            .read()
            .ok()
            .and_then(|s| s.get(&status).map(|n| n.fetch_add(1, Ordering::Relaxed)))
            .is_some();
        if !counted {
            let mut s = self.statuses.write().unwrap_or_else(|e| e.into_inner());
            s.entry(status).or_default().fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe(took);
    }
}

/// Every series of the process.
pub struct Registry {
    services: RwLock<Vec<Arc<ServiceMetrics>>>,
    calls: Keyed<Outcomes>,
    published: Keyed<Outcomes>,
    http: Keyed<RouteMetrics>,
    gauges: RwLock<Vec<Gauge>>,
    recent_errors: std::sync::Mutex<std::collections::VecDeque<RecentError>>,
    /// Connections re-established after a loss, by broker kind.
    reconnects: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// A gauge's name, labels and how to read it.
type Gauge = (
    String,
    Vec<(String, String)>,
    Arc<dyn Fn() -> f64 + Send + Sync>,
);

/// The process's registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

impl Registry {
    fn new() -> Self {
        Registry {
            services: RwLock::new(Vec::new()),
            calls: Keyed::new(),
            published: Keyed::new(),
            http: Keyed::new(),
            gauges: RwLock::new(Vec::new()),
            recent_errors: std::sync::Mutex::new(std::collections::VecDeque::new()),
            reconnects: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// The series of service `name` with `entrypoints` (name and kind label each): those it had
    /// if it ran in this process before, with entrypoints it did not have then added.
    pub fn service(
        &self,
        name: &str,
        entrypoints: &[(String, &'static str)],
        max_workers: usize,
    ) -> Arc<ServiceMetrics> {
        let mut services = self.services.write().unwrap_or_else(|e| e.into_inner());
        let old = services.iter().position(|s| s.name == name);
        let mut map = old
            .map(|i| services[i].entrypoints.clone())
            .unwrap_or_default();
        for (e, kind) in entrypoints {
            map.entry(e.clone())
                .or_insert_with(|| (*kind, Arc::default()));
        }
        let metrics = Arc::new(ServiceMetrics {
            name: name.to_string(),
            entrypoints: map,
            in_flight: AtomicI64::new(0),
            max_workers: AtomicU64::new(max_workers as u64),
            unknown_methods: AtomicU64::new(
                old.map_or(0, |i| services[i].unknown_methods.load(Ordering::Relaxed)),
            ),
        });
        match old {
            Some(i) => services[i] = Arc::clone(&metrics),
            None => services.push(Arc::clone(&metrics)),
        }
        metrics
    }

    /// The series of client calls to `service.method`.
    pub fn calls(&self, service: &str, method: &str) -> Arc<Outcomes> {
        self.calls.get(service, method)
    }

    /// The series of events of `event_type` published as `source`.
    pub fn published(&self, source: &str, event_type: &str) -> Arc<Outcomes> {
        self.published.get(source, event_type)
    }

    /// The series of HTTP `method` requests to `route` (its template, or `unmatched`).
    pub fn http(&self, method: &str, route: &str) -> Arc<RouteMetrics> {
        self.http.get(method, route)
    }

    /// Counts a broker connection of `kind` (`amqp`, `nats`) re-established after a loss.
    pub fn note_reconnect(&self, kind: &'static str) {
        let mut reconnects = self.reconnects.lock().unwrap_or_else(|e| e.into_inner());
        *reconnects.entry(kind).or_default() += 1;
    }

    /// A gauge read when the metrics are rendered: `name` with `labels` (name and value each),
    /// replacing one of the same name and labels.
    pub fn gauge(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut gauges = self.gauges.write().unwrap_or_else(|e| e.into_inner());
        gauges.retain(|(n, l, _)| !(n == name && *l == labels));
        gauges.push((name.to_string(), labels, Arc::new(read)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_and_stay_bounded() {
        let r = Registry::new();
        let s = r.service("shop", &[("buy".into(), "rpc")], 4);
        let buy = s.entrypoint("buy").unwrap();
        buy.handled.record("success", Duration::from_millis(3));
        buy.handled
            .record("handler_error", Duration::from_millis(30));
        assert!(s.entrypoint("nope").is_none());
        for i in 0..(MAX_SERIES + 50) {
            r.calls("svc", &format!("m{i}"))
                .record("success", Duration::ZERO);
        }
        let text = r.render();
        assert!(text.contains(
            "basidia_entrypoint_handled_total{service=\"shop\",entrypoint=\"buy\",kind=\"rpc\",outcome=\"success\"} 1"
        ), "{text}");
        assert!(text.contains(
            "basidia_entrypoint_duration_seconds_bucket{service=\"shop\",entrypoint=\"buy\",kind=\"rpc\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "basidia_entrypoint_duration_seconds_count{service=\"shop\",entrypoint=\"buy\",kind=\"rpc\"} 2"
        ));
        assert!(text.contains("basidia_workers_max{service=\"shop\"} 4"));
        assert!(text.contains(
            "basidia_client_calls_total{service=\"other\",method=\"other\",outcome=\"success\"} 50"
        ));
        assert_eq!(r.calls.sorted().len(), MAX_SERIES + 1);
        assert_eq!(text::escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        // The service started again keeps its counts.
        let again = r.service("shop", &[("buy".into(), "rpc")], 8);
        assert!(std::ptr::eq(
            again.entrypoint("buy").unwrap(),
            s.entrypoint("buy").unwrap()
        ));
    }
}

mod series;
mod snapshot;
mod text;
pub use series::{HistogramValues, SeriesKind, SeriesWriter};
pub use snapshot::{EntrypointSnapshot, RecentError, ServiceSnapshot, RECENT_ERRORS};
