//! `/health/live` and `/health/ready`: a JSON tree of components, each `UP` or `DOWN`, in the
//! spirit of Spring Boot's actuator; 200 when all are up, 503 otherwise.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use basidia_core::{ServiceProbe, SharedBroker};
use serde_json::{json, Map, Value};

/// How long one user check may take before it counts as down.
const CHECK_LIMIT: Duration = Duration::from_secs(2);

/// A check of something a service needs (a database, a downstream API), reported under its name
/// by `/health/ready`.
#[async_trait::async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// The component's name in the report.
    fn name(&self) -> &str;

    /// `Ok` when it is usable, else why not (shown in the report: keep secrets out of it).
    async fn check(&self) -> Result<(), String>;
}

/// What readiness looks at: the broker connection, every service's consumers, and user checks.
#[derive(Clone)]
pub struct Health {
    broker: SharedBroker,
    services: Vec<ServiceProbe>,
    checks: Vec<Arc<dyn HealthCheck>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("services", &self.services.len())
            .field("checks", &self.checks.len())
            .finish_non_exhaustive()
    }
}

impl Health {
    /// Readiness of `services` on `broker`.
    pub fn new(broker: SharedBroker, services: Vec<ServiceProbe>) -> Self {
        Health {
            broker,
            services,
            checks: Vec::new(),
        }
    }

    /// The broker it watches.
    pub fn broker(&self) -> &SharedBroker {
        &self.broker
    }

    /// Adds a user check.
    pub fn with_check(mut self, check: impl HealthCheck) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// The readiness report, and whether everything in it is up.
    pub async fn report(&self) -> (bool, Value) {
        let mut components = Map::new();
        let mut all_up = true;
        let broker_up = self.broker.is_connected();
        all_up &= broker_up;
        components.insert(
            "broker".into(),
            json!({"status": status(broker_up), "details": {"kind": self.broker.kind()}}),
        );
        let mut services = Map::new();
        let mut services_up = true;
        for s in &self.services {
            let up = s.is_running();
            services_up &= up;
            services.insert(s.name().to_string(), json!({"status": status(up)}));
        }
        all_up &= services_up;
        components.insert(
            "services".into(),
            json!({"status": status(services_up), "components": services}),
        );
        for c in &self.checks {
            let outcome = tokio::time::timeout(CHECK_LIMIT, c.check()).await;
            let entry = match outcome {
                Ok(Ok(())) => json!({"status": "UP"}),
                Ok(Err(reason)) => json!({"status": "DOWN", "details": {"error": reason}}),
                Err(_) => {
                    json!({"status": "DOWN", "details": {"error": format!("no answer within {CHECK_LIMIT:?}")}})
                }
            };
            all_up &= entry["status"] == "UP";
            components.insert(c.name().to_string(), entry);
        }
        (
            all_up,
            json!({"status": status(all_up), "components": components}),
        )
    }
}

fn status(up: bool) -> &'static str {
    if up {
        "UP"
    } else {
        "DOWN"
    }
}

/// The two routes.
pub(crate) fn routes(health: Health) -> Router {
    let health = Arc::new(health);
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({"status": "UP"})) }),
        )
        .route(
            "/health/ready",
            get(move || {
                let health = Arc::clone(&health);
                async move {
                    let (up, report) = health.report().await;
                    let code = if up {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, Json(report))
                }
            }),
        )
}
