//! The registry's figures as values, for pages and tools that show them (the dashboard) rather
//! than have them scraped.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Histogram, Registry, BUCKETS, OUTCOMES};
use crate::error::RemoteError;

/// How many of the latest worker failures the registry keeps.
pub const RECENT_ERRORS: usize = 50;

/// The longest error message kept, in bytes; a longer one is cut.
const MESSAGE_LIMIT: usize = 500;

/// A worker that failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentError {
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The service.
    pub service: String,
    /// The entrypoint.
    pub entrypoint: String,
    /// The worker's call id.
    pub call_id: String,
    /// The error's type.
    pub exc_type: String,
    /// Its message, cut at 500 bytes.
    pub message: String,
}

/// One service's figures now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSnapshot {
    /// The service.
    pub service: String,
    /// Workers running now.
    pub in_flight: i64,
    /// Its `max_workers`.
    pub max_workers: u64,
    /// Requests for methods it does not have.
    pub unknown_methods: u64,
    /// Its entrypoints, by name.
    pub entrypoints: Vec<EntrypointSnapshot>,
}

/// One entrypoint's figures since the process started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntrypointSnapshot {
    /// The entrypoint.
    pub entrypoint: String,
    /// `rpc`, `event`, `timer` or `http`.
    pub kind: &'static str,
    /// Runs ended, whatever their outcome.
    pub handled: u64,
    /// Runs that ended in an error.
    pub errors: u64,
    /// Events put back for a retry.
    pub retried: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// The median duration in seconds, estimated from the histogram; `None` before any run.
    pub p50_seconds: Option<f64>,
    /// The 99th percentile duration in seconds, estimated likewise.
    pub p99_seconds: Option<f64>,
}

impl Registry {
    /// Notes a worker's failure among the [`RECENT_ERRORS`] latest. Called for failures only,
    /// so that a worker that succeeds costs nothing here.
    pub fn note_error(&self, service: &str, entrypoint: &str, call_id: &str, error: &RemoteError) {
        let mut message = error.value.clone();
        if message.len() > MESSAGE_LIMIT {
            let mut cut = MESSAGE_LIMIT;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let noted = RecentError {
            at_ms: crate::context::now_epoch_ms(),
            service: service.to_string(),
            entrypoint: entrypoint.to_string(),
            call_id: call_id.to_string(),
            exc_type: error.exc_type.clone(),
            message,
        };
        let mut recent = self.recent_errors.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(noted);
    }

    /// The latest failures, newest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        let recent = self.recent_errors.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().cloned().collect()
    }

    /// Every service's figures, by service name.
    pub fn snapshot(&self) -> Vec<ServiceSnapshot> {
        let services = self.services.read().map(|s| s.clone()).unwrap_or_default();
        let mut out: Vec<ServiceSnapshot> = services
            .iter()
            .map(|s| {
                let mut entrypoints: Vec<EntrypointSnapshot> = s
                    .entrypoints
                    .iter()
                    .map(|(name, (kind, m))| {
                        // Each count read once: workers ending meanwhile must not make the
                        // errors more than the runs.
                        let counts: Vec<u64> = m
                            .handled
                            .counts
                            .iter()
                            .map(|c| c.load(Ordering::Relaxed))
                            .collect();
                        let handled: u64 = counts.iter().sum();
                        let success = counts[0];
                        EntrypointSnapshot {
                            entrypoint: name.clone(),
                            kind,
                            handled,
                            errors: handled.saturating_sub(success),
                            retried: m.retried.load(Ordering::Relaxed),
                            dead_lettered: m.dead_lettered.load(Ordering::Relaxed),
                            p50_seconds: m.handled.duration.quantile(0.5),
                            p99_seconds: m.handled.duration.quantile(0.99),
                        }
                    })
                    .collect();
                entrypoints.sort_by(|a, b| a.entrypoint.cmp(&b.entrypoint));
                ServiceSnapshot {
                    service: s.name.clone(),
                    in_flight: s.in_flight.load(Ordering::Relaxed),
                    max_workers: s.max_workers.load(Ordering::Relaxed),
                    unknown_methods: s.unknown_methods.load(Ordering::Relaxed),
                    entrypoints,
                }
            })
            .collect();
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out
    }
}

// The first outcome is success: `errors` above counts the rest.
const _: () = assert!(matches!(OUTCOMES[0].as_bytes(), b"success"));

impl Histogram {
    /// The `q` quantile (0 to 1) of the durations observed, in seconds, interpolated within its
    /// bucket as Prometheus' `histogram_quantile` does; past the last bucket, its bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            let in_bucket = self.buckets[i].load(Ordering::Relaxed);
            if in_bucket > 0 && (below + in_bucket) as f64 >= rank {
                let within = (rank - below as f64) / in_bucket as f64;
                return Some(lower + (bound - lower) * within.clamp(0.0, 1.0));
            }
            below += in_bucket;
            lower = *bound;
        }
        BUCKETS.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..98 {
            h.observe(Duration::from_micros(700));
        }
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(60));
        let p50 = h.quantile(0.5).unwrap();
        assert!((0.0005..=0.001).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((0.025..=0.05).contains(&p99), "{p99}");
        assert_eq!(
            h.quantile(1.0),
            Some(10.0),
            "beyond the last bucket, its bound"
        );
    }

    #[test]
    fn a_service_shows_its_runs_and_errors() {
        let registry = super::super::registry();
        let m = registry.service(
            "snap_service",
            &[("work".into(), "rpc"), ("on_event".into(), "event")],
            7,
        );
        let work = m.entrypoint("work").unwrap();
        work.handled.record("success", Duration::from_millis(2));
        work.handled
            .record("handler_error", Duration::from_millis(3));
        m.entrypoint("on_event")
            .unwrap()
            .retried
            .fetch_add(2, Ordering::Relaxed);
        let snap = registry.snapshot();
        let s = snap.iter().find(|s| s.service == "snap_service").unwrap();
        assert_eq!(s.max_workers, 7);
        let names: Vec<_> = s
            .entrypoints
            .iter()
            .map(|e| e.entrypoint.as_str())
            .collect();
        assert_eq!(names, ["on_event", "work"]);
        let w = &s.entrypoints[1];
        assert_eq!((w.kind, w.handled, w.errors), ("rpc", 2, 1));
        assert!(w.p50_seconds.is_some());
        assert_eq!(s.entrypoints[0].retried, 2);
        assert_eq!(s.entrypoints[0].p50_seconds, None);
    }

    #[test]
    fn the_latest_errors_are_kept_newest_first_and_cut() {
        let registry = super::super::registry();
        for i in 0..RECENT_ERRORS + 5 {
            let e = RemoteError::new(crate::ErrorKind::Timeout, format!("slow {i}"));
            registry.note_error("svc", "work", &format!("svc.work.{i}"), &e);
        }
        let long = RemoteError::new(crate::ErrorKind::Other, "é".repeat(400));
        registry.note_error("svc", "work", "svc.work.long", &long);
        let recent = registry.recent_errors();
        assert_eq!(recent.len(), RECENT_ERRORS);
        assert_eq!(recent[0].call_id, "svc.work.long");
        assert!(recent[0].message.len() <= MESSAGE_LIMIT + '…'.len_utf8());
        assert_eq!(recent[1].message, format!("slow {}", RECENT_ERRORS + 4));
        assert_eq!(recent[1].exc_type, "Timeout");
    }
}
