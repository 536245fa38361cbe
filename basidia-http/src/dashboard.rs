//! `/dashboard`: a page showing what the process can see of the fleet (the services and their
//! instances, readiness) and of its own work (each entrypoint's rate, errors and p50/p99
//! latency, the latest errors), refreshing itself every two seconds from `/dashboard/data`.
//!
//! The page is one file with its script and styles in it: it loads nothing from elsewhere, so
//! it works where the process has no way out.

use std::sync::Arc;
use std::time::Instant;

use axum::http::header;
use axum::routing::get;
use axum::{Json, Router};
use basidia_core::SharedBroker;
use serde_json::{json, Value};

use crate::health::Health;

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// How long listing the instances may take before the page shows none.
const LIST_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a listing of the instances is shown again rather than asked for anew: on AMQP a
/// listing asks every hosting process, and any number of pages may be open.
const LIST_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// What the dashboard reads: the broker (its instances), and readiness when health is served.
#[derive(Clone)]
pub struct Dashboard {
    broker: SharedBroker,
    health: Option<Health>,
    started: Instant,
    /// The latest listing of the instances, and when it was made; one listing at a time.
    listed: Arc<tokio::sync::Mutex<Option<(Instant, Value)>>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("broker", &self.broker.kind())
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard of the fleet on `broker`, with this process's figures.
    pub fn new(broker: SharedBroker) -> Self {
        Dashboard {
            broker,
            health: None,
            started: Instant::now(),
            listed: Arc::default(),
        }
    }

    /// Shows readiness as `health` reports it.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Everything the page shows, as JSON.
    pub async fn data(&self) -> Value {
        let ready = match &self.health {
            Some(h) => h.report().await.1,
            None => json!({"status": if self.broker.is_connected() { "UP" } else { "DOWN" }}),
        };
        let instances = self.instances().await;
        let registry = basidia_core::metrics::registry();
        json!({
            "process": {
                "pid": std::process::id(),
                "host": basidia_core::broker::host_name(),
                "uptime_s": self.started.elapsed().as_secs(),
                "broker": self.broker.kind(),
                "now_ms": basidia_core::context::now_epoch_ms(),
            },
            "ready": ready,
            "instances": instances,
            "services": registry.snapshot(),
            "recent_errors": registry.recent_errors(),
        })
    }
}

impl Dashboard {
    /// The instances the broker lists, as JSON: listed anew at most every [`LIST_FRESH`].
    async fn instances(&self) -> Value {
        let mut listed = self.listed.lock().await;
        if let Some((at, list)) = listed.as_ref() {
            if at.elapsed() < LIST_FRESH {
                return list.clone();
            }
        }
        let list = match tokio::time::timeout(LIST_LIMIT, self.broker.instances()).await {
            Ok(Ok(Some(list))) => json!(list),
            Ok(Ok(None)) => Value::Null,
            Ok(Err(e)) => json!({"error": e.to_string()}),
            Err(_) => json!({"error": format!("no answer within {LIST_LIMIT:?}")}),
        };
        *listed = Some((Instant::now(), list.clone()));
        list
    }
}

/// `/dashboard` and `/dashboard/data`.
pub(crate) fn routes(dashboard: Dashboard) -> Router {
    let dashboard = Arc::new(dashboard);
    Router::new()
        .route(
            "/dashboard",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    PAGE,
                )
            }),
        )
        .route(
            "/dashboard/data",
            get(move || {
                let dashboard = Arc::clone(&dashboard);
                async move {
                    (
                        [(header::CACHE_CONTROL, "no-store")],
                        Json(dashboard.data().await),
                    )
                }
            }),
        )
}
