//! The one HTTP server of a process: the routes of every service in it, and health.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use basidia_core::http::{error_response, problem, HttpRequest, HttpResponse};
use basidia_core::{HttpEndpoint, RemoteError};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// Where the server listens when nothing says otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8000";

/// The paths the server keeps for itself.
const RESERVED: &[&str] = &[
    "/health/live",
    "/health/ready",
    "/rpc/{}/{}",
    "/openapi.json",
    "/metrics",
    "/dashboard",
    "/dashboard/data",
];

/// The `[http]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Where to listen: `127.0.0.1:8000` by default, reachable from this machine only;
    /// `0.0.0.0:8000` (or `[::]:8000`) listens on every interface.
    pub address: SocketAddr,
    /// The largest request body taken, in bytes; a larger one answers 413 unread.
    pub body_limit: usize,
    /// How long one request may take before it answers 504.
    #[serde(with = "basidia_core::config::duration_serde")]
    pub request_timeout: Duration,
    /// Whether `/health/live` and `/health/ready` are served: `true` starts the server for them
    /// even without HTTP routes; unset serves them whenever the server runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<bool>,
    /// The RPC gateway, off unless its allow-list names something.
    pub gateway: crate::gateway::GatewayConfig,
    /// Whether `/openapi.json` is served (it is by default).
    pub openapi: bool,
    /// Whether `/metrics` is served, the process's metrics in Prometheus' text format (it is
    /// by default).
    pub metrics: bool,
    /// Whether `/dashboard` is served, a page of the services, their instances and their
    /// figures. Off by default: it shows the fleet's hosts and the latest error messages to
    /// whoever reaches the server; `true` also starts the server for it.
    pub dashboard: bool,
    /// Cross-origin requests, off unless origins are named.
    pub cors: crate::cors::CorsConfig,
    /// Whether responses are gzip-compressed for clients that accept it.
    pub compression: bool,
    /// HTTPS instead of plain HTTP, with this certificate and key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            address: DEFAULT_ADDRESS
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8000))),
            body_limit: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            health: None,
            gateway: crate::gateway::GatewayConfig::default(),
            openapi: true,
            metrics: true,
            dashboard: false,
            cors: crate::cors::CorsConfig::default(),
            compression: false,
            tls: None,
        }
    }
}

impl HttpConfig {
    /// This configuration listening on `address`.
    pub fn with_address(mut self, address: SocketAddr) -> Self {
        self.address = address;
        self
    }

    /// This configuration with a body limit of `bytes`.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// This configuration with `timeout` per request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// This configuration with health endpoints on (`Some(true)`), off, or with the server.
    pub fn with_health(mut self, health: Option<bool>) -> Self {
        self.health = health;
        self
    }

    /// This configuration with `cors`.
    pub fn with_cors(mut self, cors: crate::cors::CorsConfig) -> Self {
        self.cors = cors;
        self
    }

    /// This configuration compressing responses, or not.
    pub fn with_compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// This configuration with `gateway`.
    pub fn with_gateway(mut self, gateway: crate::gateway::GatewayConfig) -> Self {
        self.gateway = gateway;
        self
    }

    /// Whether a process with `routes` HTTP routes runs a server at all.
    pub fn wanted(&self, routes: usize) -> bool {
        routes > 0 || self.health == Some(true) || self.gateway.enabled() || self.dashboard
    }
}

/// Why the server cannot be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Two routes answer the same requests.
    #[error("{method} {path} is declared by both {first} and {second}")]
    Conflict {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// One entrypoint, as `service.method`.
        first: String,
        /// The other.
        second: String,
    },
    /// A route's path cannot be served.
    #[error("{route}: cannot serve {path:?}: {reason}")]
    BadRoute {
        /// The entrypoint, as `service.method`.
        route: String,
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The address cannot be listened on.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {}: {reason}", file.display())]
    Tls {
        /// The file at fault.
        file: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The reading or TLS library's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// What each request handler needs.
#[derive(Clone)]
struct Limits {
    body: usize,
    timeout: Duration,
}

/// The router of `endpoints` (and of health, if given), as tests call it in process; the
/// gateway too when the configuration turns it on, on the broker `health` watches. [`Edge`]
/// gives every part apart.
pub fn router(
    endpoints: Vec<HttpEndpoint>,
    config: &HttpConfig,
    health: Option<Health>,
) -> Result<Router, HttpError> {
    let mut edge = Edge::new(endpoints, config);
    if let Some(h) = health {
        let broker = h.broker().clone();
        edge = edge.with_health(h).with_gateway(broker, Vec::new());
    }
    edge.router()
}

/// Everything a process's HTTP server serves: the services' routes, and optionally health, the
/// gateway and `/openapi.json`.
pub struct Edge {
    endpoints: Vec<HttpEndpoint>,
    config: HttpConfig,
    health: Option<Health>,
    gateway: Option<(
        basidia_core::SharedBroker,
        Vec<basidia_core::ServiceDescription>,
    )>,
    dashboard: Option<crate::dashboard::Dashboard>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("routes", &self.endpoints.len())
            .field("health", &self.health.is_some())
            .field("gateway", &self.gateway.is_some())
            .field("dashboard", &self.dashboard.is_some())
            .finish()
    }
}

impl Edge {
    /// The routes of `endpoints`, served as `config` says.
    pub fn new(endpoints: Vec<HttpEndpoint>, config: &HttpConfig) -> Self {
        Edge {
            endpoints,
            config: config.clone(),
            health: None,
            gateway: None,
            dashboard: None,
        }
    }

    /// Serves `/dashboard` from `dashboard` when `http.dashboard = true`.
    pub fn with_dashboard(mut self, dashboard: crate::dashboard::Dashboard) -> Self {
        self.dashboard = Some(dashboard);
        self
    }

    /// Serves `/health/live` and `/health/ready` from `health`.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Serves the gateway (if the configuration allows anything) on `broker`; `services` are
    /// the descriptions of the services in this process, for `/openapi.json`.
    pub fn with_gateway(
        mut self,
        broker: basidia_core::SharedBroker,
        services: Vec<basidia_core::ServiceDescription>,
    ) -> Self {
        self.gateway = Some((broker, services));
        self
    }

    /// The router.
    pub fn router(self) -> Result<Router, HttpError> {
        let Edge {
            endpoints,
            config,
            health,
            gateway,
            dashboard,
        } = self;
        let config = &config;
        let limits = Limits {
            body: config.body_limit,
            timeout: config.request_timeout,
        };
        // Paths in a form where `{a}` and `{b}` in one place are the same, to find conflicts the
        // router would otherwise refuse by panicking.
        let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut by_path: BTreeMap<String, Vec<HttpEndpoint>> = BTreeMap::new();
        let described: Vec<(String, basidia_core::http::HttpRouteDescription)> = endpoints
            .iter()
            .map(|e| (e.service().to_string(), e.route().clone()))
            .collect();
        let has_health = health.is_some();
        for e in endpoints {
            let route = e.route();
            let who = format!("{}.{}", e.service(), route.name);
            let shape = shape(&route.path);
            if RESERVED.contains(&shape.as_str()) {
                return Err(HttpError::BadRoute {
                    route: who,
                    path: route.path.clone(),
                    reason: "the server serves this path itself".into(),
                });
            }
            for method in &route.methods {
                if let Some(first) = seen.insert((method.clone(), shape.clone()), who.clone()) {
                    return Err(HttpError::Conflict {
                        method: method.clone(),
                        path: route.path.clone(),
                        first,
                        second: who,
                    });
                }
            }
            by_path.entry(route.path.clone()).or_default().push(e);
        }
        let mut router = Router::new();
        for (path, endpoints) in by_path {
            let mut methods: MethodRouter = MethodRouter::new();
            for e in endpoints {
                let who = format!("{}.{}", e.service(), e.route().name);
                for m in &e.route().methods {
                    let filter = method_filter(m).ok_or_else(|| HttpError::BadRoute {
                        route: who.clone(),
                        path: path.clone(),
                        reason: format!("unknown method {m}"),
                    })?;
                    let (e, limits) = (e.clone(), limits.clone());
                    methods = methods.merge(on(filter, move |request: Request| {
                        serve_one(e, limits, request)
                    }));
                }
            }
            let insert = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Router::new().route(&path, methods)
            }));
            let added = insert.map_err(|panic| HttpError::BadRoute {
                route: path.clone(),
                path: path.clone(),
                reason: panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "refused by the router".into()),
            })?;
            router = merge(router, added, &path)?;
        }
        if let Some(health) = health {
            let broker = health.broker().clone();
            basidia_core::metrics::registry().gauge("basidia_broker_connected", &[], move || {
                if broker.is_connected() {
                    1.0
                } else {
                    0.0
                }
            });
            router = merge(router, crate::health::routes(health), "/health")?;
        }
        if let Some(dashboard) = dashboard.filter(|_| config.dashboard) {
            router = merge(router, crate::dashboard::routes(dashboard), "/dashboard")?;
        }
        if config.metrics {
            let metrics = Router::new().route(
                "/metrics",
                axum::routing::get(|| async {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        basidia_core::metrics::registry().render(),
                    )
                }),
            );
            router = merge(router, metrics, "/metrics")?;
        }
        let services = gateway.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
        if config.gateway.enabled() {
            if let Some((broker, _)) = gateway {
                let routes = crate::gateway::routes(
                    config.gateway.clone(),
                    broker,
                    config.request_timeout,
                    config.body_limit,
                );
                router = merge(router, routes, "/rpc")?;
            }
        }
        if config.openapi {
            let document =
                crate::openapi::document(&described, &services, &config.gateway, has_health);
            let body = serde_json::to_vec_pretty(&document).unwrap_or_default();
            let openapi = Router::new().route(
                "/openapi.json",
                axum::routing::get(move || {
                    let body = body.clone();
                    async move { ([(header::CONTENT_TYPE, "application/json")], body) }
                }),
            );
            router = merge(router, openapi, "/openapi.json")?;
        }
        let mut router = router
            .fallback(not_found)
            .layer(axum::middleware::from_fn(count_request));
        let cors = config.cors.layer().map_err(|reason| HttpError::BadRoute {
            route: "[http.cors]".into(),
            path: "*".into(),
            reason: format!("invalid {reason}"),
        })?;
        if let Some(cors) = cors {
            router = router.layer(cors);
        }
        if config.compression {
            router = router.layer(tower_http::compression::CompressionLayer::new());
        }
        Ok(router)
    }
}

fn merge(router: Router, other: Router, path: &str) -> Result<Router, HttpError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| router.merge(other))).map_err(|_| {
        HttpError::BadRoute {
            route: path.to_string(),
            path: path.to_string(),
            reason: "it overlaps another route".into(),
        }
    })
}

/// `path` with every parameter's name left out.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|s| match s.strip_prefix('{') {
            Some(p) if p.starts_with('*') => "{*}",
            Some(_) => "{}",
            None => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn method_filter(method: &str) -> Option<MethodFilter> {
    Some(match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        "HEAD" => MethodFilter::HEAD,
        "OPTIONS" => MethodFilter::OPTIONS,
        _ => return None,
    })
}

async fn not_found(request: Request) -> Response {
    let e = RemoteError::new(
        basidia_core::ErrorKind::MethodNotFound,
        format!("no route for {} {}", request.method(), request.uri().path()),
    );
    into_axum(problem(&e, StatusCode::NOT_FOUND))
}

/// Counts every answered request by method, route template (`unmatched` for none: the path
/// itself would let peers make series) and status, with its duration.
async fn count_request(request: Request, next: axum::middleware::Next) -> Response {
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let began = tokio::time::Instant::now();
    let response = next.run(request).await;
    basidia_core::metrics::registry()
        .http(method, &route)
        .record(response.status().as_u16(), began.elapsed());
    response
}

/// 413 for a body over `limit` bytes.
pub(crate) fn too_large(limit: usize) -> Response {
    let e = RemoteError {
        exc_type: "PayloadTooLarge".into(),
        exc_path: "basidia.PayloadTooLarge".into(),
        exc_args: Vec::new(),
        value: format!("the body is larger than {limit} bytes"),
    };
    into_axum(error_response(&e, &[]))
}

/// One request: its body read within the limit, then run as a worker of the route's service.
async fn serve_one(endpoint: HttpEndpoint, limits: Limits, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.body as u64) {
        return too_large(limits.body);
    }
    let body = match axum::body::to_bytes(body, limits.body).await {
        Ok(b) => b,
        Err(e) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                return too_large(limits.body);
            }
            let e = RemoteError::malformed(format!("the body could not be read: {e}"));
            return into_axum(error_response(&e, &[]));
        }
    };
    let response = endpoint
        .call(HttpRequest { parts, body }, limits.timeout)
        .await;
    into_axum(response)
}

pub(crate) fn into_axum(response: HttpResponse) -> Response {
    response.map(Body::from)
}

/// A running HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    tls: bool,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Listens on `address` and serves `router` over plain HTTP until [`HttpServer::stop`].
    pub async fn start(address: SocketAddr, router: Router) -> Result<Self, HttpError> {
        Self::start_with(address, None, router).await
    }

    /// Listens on `address` and serves `router` until [`HttpServer::stop`]: over HTTPS when
    /// `tls` is given (HTTP/2 or HTTP/1.1, as the client's ALPN asks), else plain HTTP.
    pub async fn start_with(
        address: SocketAddr,
        tls: Option<&crate::tls::TlsConfig>,
        router: Router,
    ) -> Result<Self, HttpError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| HttpError::Bind { address, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { address, source })?;
        let shutdown = CancellationToken::new();
        let stopped = shutdown.clone();
        let until_stopped = async move { stopped.cancelled().await };
        let task = match tls {
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, tls)?;
                tokio::spawn(async move {
                    let serve = axum::serve(listener, router).with_graceful_shutdown(until_stopped);
                    if let Err(e) = serve.await {
                        tracing::error!("the HTTPS server failed: {e}");
                    }
                })
            }
            None => tokio::spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(until_stopped);
                if let Err(e) = serve.await {
                    tracing::error!("the HTTP server failed: {e}");
                }
            }),
        };
        let server = HttpServer {
            local_addr,
            tls: tls.is_some(),
            shutdown,
            task,
        };
        tracing::info!("HTTP on {}", server.url());
        Ok(server)
    }

    /// Where it listens (the port the system chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its base URL, `http://` or `https://` and the address it listens on.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Stops accepting connections and lets requests in flight finish, for at most `grace`;
    /// connections still open after it are closed.
    pub async fn stop(self, grace: Duration) {
        self.shutdown.cancel();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!("HTTP requests still in flight after {grace:?}; closing them");
            task.abort();
        }
    }
}

/// The response a router gives for `request`, its body read whole: for tests that call the
/// router in process.
pub async fn call(router: &Router, request: Request) -> HttpResponse {
    use tower_service::Service as _;
    let mut router = router.clone();
    let response = match router.call(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    HttpResponse::from_parts(parts, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_do_not_make_paths_different() {
        assert_eq!(shape("/users/{id}"), shape("/users/{user_id}"));
        assert_ne!(shape("/users/{id}"), shape("/users/me"));
        assert_eq!(shape("/files/{*rest}"), "/files/{*}");
    }

    #[test]
    fn the_configuration_reads_with_defaults() {
        let c: HttpConfig =
            serde_json::from_str(r#"{"address": "0.0.0.0:9000", "request_timeout": "5s"}"#)
                .unwrap();
        assert_eq!(c.address.port(), 9000);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.body_limit, HttpConfig::default().body_limit);
        assert!(serde_json::from_str::<HttpConfig>(r#"{"adress": "x"}"#).is_err());
        assert!(!HttpConfig::default().wanted(0));
        assert!(HttpConfig::default().wanted(1));
        assert!(HttpConfig::default().with_health(Some(true)).wanted(0));
        assert!(c.tls.is_none());
        let c: HttpConfig =
            serde_json::from_str(r#"{"tls": {"cert_file": "c.pem", "key_file": "k.pem"}}"#)
                .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls, crate::TlsConfig::new("c.pem", "k.pem"));
        assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
        assert!(
            serde_json::from_str::<HttpConfig>(r#"{"tls": {"cert_file": "c.pem"}}"#).is_err(),
            "a certificate needs its key"
        );
    }

    #[tokio::test]
    async fn unusable_tls_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("basidia-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let address = SocketAddr::from(([127, 0, 0, 1], 0));
        for (cert, key, want) in [
            (dir.join("none.pem"), empty.clone(), "none.pem"),
            (empty.clone(), empty.clone(), "no certificate"),
        ] {
            let tls = crate::TlsConfig::new(&cert, &key);
            let err = HttpServer::start_with(address, Some(&tls), Router::new())
                .await
                .unwrap_err();
            assert!(matches!(err, HttpError::Tls { .. }), "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
