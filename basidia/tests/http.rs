//! `#[http]` entrypoints through the router, in process on the memory broker: parameters from
//! the path, query, head and body; responses of every shape; errors as problem details; the
//! worker bound, deadlines, and the context a request gives the calls it makes.
#![cfg(feature = "http")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use basidia::http::{
    call, router, Body, CorsConfig, HeaderMap, Health, HttpConfig, Json, Query, Request, StatusCode,
};
use basidia::prelude::*;
use basidia::{RunnerConfig, ServiceSettings};
use serde::{Deserialize, Serialize};

/// What the shop sells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    id: i64,
    name: String,
}

/// A query string.
#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<u32>,
}

/// A user error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutOfStock {
    id: i64,
}

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "item {} is out of stock", self.id)
    }
}

/// Reports what context its callers pass on.
#[service]
pub struct Echo;

#[service(name = "echo")]
impl Echo {
    #[rpc]
    async fn context(&self) -> (Option<String>, Option<String>, usize) {
        let ctx = Context::current().expect("a worker has a context");
        (
            ctx.get("auth_token").map(str::to_string),
            ctx.get("traceparent").map(str::to_string),
            ctx.call_id_stack.len(),
        )
    }
}

/// The routes under test.
#[service]
pub struct Shop {
    echo: Dependency<EchoClient>,
    #[inject(default)]
    slow_runs: AtomicUsize,
}

#[service(name = "shop")]
impl Shop {
    #[http(GET, "/items/{id}")]
    async fn item(&self, id: i64) -> Item {
        Item {
            id,
            name: format!("item {id}"),
        }
    }

    #[http(GET, "/items")]
    async fn list(&self, page: Query<Page>) -> Vec<i64> {
        (1..=i64::from(page.limit.unwrap_or(3))).collect()
    }

    #[http(POST, PUT, "/items")]
    async fn create(&self, body: Json<Item>) -> (StatusCode, Json<Item>) {
        (StatusCode::CREATED, body)
    }

    #[http(POST, "/buy/{id}", errors(OutOfStock = 409))]
    async fn buy(&self, id: i64) -> Result<String, OutOfStock> {
        if id == 0 {
            Err(OutOfStock { id })
        } else {
            Ok(format!("bought {id}"))
        }
    }

    #[http(POST, "/sell/{id}")]
    async fn sell(&self, id: i64) -> Result<String, OutOfStock> {
        Err(OutOfStock { id })
    }

    #[http(GET, "/files/{*rest}")]
    async fn file(&self, rest: String) -> String {
        rest
    }

    #[http(GET, "/agent")]
    async fn agent(&self, headers: HeaderMap) -> String {
        headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    #[http(GET, "/context")]
    async fn context(&self) -> Result<Json<(Option<String>, Option<String>, usize)>, RpcError> {
        Ok(Json(self.echo.context().await?))
    }

    #[http(GET, "/slow")]
    async fn slow(&self) -> String {
        self.slow_runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(600)).await;
        "done".into()
    }

    #[http(GET, "/panic")]
    async fn panics(&self) -> String {
        panic!("the handler gave up")
    }
}

async fn host(max_workers: usize, timeout: Duration) -> (basidia::RunningServices, HttpConfig) {
    let broker: basidia::SharedBroker = Arc::new(MemoryBroker::new());
    let config = RunnerConfig {
        defaults: ServiceSettings {
            max_workers,
            ..ServiceSettings::default()
        },
        ..RunnerConfig::default()
    };
    let mut runner = Runner::new(broker).with_config(config);
    runner.add::<Echo>().add::<Shop>();
    let running = runner.start().await.expect("the services start");
    let http = HttpConfig::default()
        .with_request_timeout(timeout)
        .with_body_limit(1024);
    (running, http)
}

fn request(method: &str, uri: &str, body: &str) -> Request {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn parameters_responses_and_errors() {
    let (running, config) = host(8, Duration::from_secs(5)).await;
    let router = router(running.http_endpoints(), &config, None).unwrap();

    let r = call(&router, request("GET", "/items/7", "")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        json(r.body()),
        serde_json::json!({"id": 7, "name": "item 7"})
    );

    let r = call(&router, request("GET", "/items?limit=2", "")).await;
    assert_eq!(json(r.body()), serde_json::json!([1, 2]));
    let r = call(&router, request("GET", "/items", "")).await;
    assert_eq!(json(r.body()), serde_json::json!([1, 2, 3]));

    for method in ["POST", "PUT"] {
        let r = call(
            &router,
            request(method, "/items", r#"{"id": 1, "name": "pen"}"#),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{method}");
        assert_eq!(json(r.body())["name"], "pen");
    }

    // A string is text, as axum answers it.
    let r = call(&router, request("POST", "/buy/3", "")).await;
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(String::from_utf8_lossy(r.body()), "bought 3");
    let r = call(&router, request("GET", "/files/a/b/c.txt", "")).await;
    assert_eq!(String::from_utf8_lossy(r.body()), "a/b/c.txt");
    let mut with_agent = request("GET", "/agent", "");
    with_agent
        .headers_mut()
        .insert("user-agent", "probe/1".parse().unwrap());
    let r = call(&router, with_agent).await;
    assert_eq!(String::from_utf8_lossy(r.body()), "probe/1");

    // Errors: each a problem, with the status it means.
    let problem = |r: &basidia::http::HttpResponse| {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        json(r.body())
    };
    let r = call(&router, request("GET", "/items/seven", "")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let p = problem(&r);
    assert_eq!(p["exc_type"], "IncorrectSignature");
    assert!(p["detail"].as_str().unwrap().contains("`id`"), "{p}");

    let r = call(&router, request("POST", "/items", r#"{"id": "x"}"#)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem(&r)["exc_type"], "MalformedRequest");

    let r = call(&router, request("GET", "/items?limit=many", "")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let big = format!(r#"{{"id": 1, "name": "{}"}}"#, "x".repeat(2000));
    let r = call(&router, request("POST", "/items", &big)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem(&r)["status"], 413);

    let r = call(&router, request("POST", "/buy/0", "")).await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "a declared user error");
    let p = problem(&r);
    assert_eq!(p["exc_type"], "OutOfStock");
    assert_eq!(p["detail"], "item 0 is out of stock");
    let r = call(&router, request("POST", "/sell/1", "")).await;
    assert_eq!(
        r.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "an undeclared one"
    );

    let r = call(&router, request("GET", "/nowhere", "")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(problem(&r)["exc_type"], "MethodNotFound");

    let r = call(&router, request("GET", "/panic", "")).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let p = problem(&r);
    assert_eq!(p["exc_type"], "HandlerPanicked");
    // The service survives it.
    let r = call(&router, request("GET", "/items/1", "")).await;
    assert_eq!(r.status(), StatusCode::OK);

    running.stop().await;
}

#[tokio::test]
async fn the_request_context_reaches_the_calls_it_makes() {
    let (running, config) = host(8, Duration::from_secs(5)).await;
    let router = router(running.http_endpoints(), &config, None).unwrap();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut r = request("GET", "/context", "");
    r.headers_mut()
        .insert("authorization", "Bearer token-123".parse().unwrap());
    r.headers_mut()
        .insert("traceparent", parent.parse().unwrap());
    let r = call(&router, r).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(r.body())
    );
    // The call id stack holds the HTTP worker's id and the RPC worker's; the RPC worker is in
    // the request's trace, a span of its own.
    let seen = json(r.body());
    assert_eq!(seen[0], "token-123");
    let traceparent = seen[1].as_str().unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert_ne!(traceparent, parent);
    assert_eq!(seen[2], 2);
    running.stop().await;
}

#[tokio::test]
async fn a_full_service_answers_503_and_a_slow_request_504() {
    let (running, config) = host(1, Duration::from_millis(300)).await;
    let router = router(running.http_endpoints(), &config, None).unwrap();
    let first = tokio::spawn({
        let router = router.clone();
        async move { call(&router, request("GET", "/slow", "")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = call(&router, request("GET", "/items/1", "")).await;
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_eq!(json(busy.body())["exc_type"], "ServiceBusy");
    let slow = first.await.unwrap();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json(slow.body())["exc_type"], "Timeout");
    // The place is free again.
    let r = call(&router, request("GET", "/items/1", "")).await;
    assert_eq!(r.status(), StatusCode::OK);
    running.stop().await;
}

#[tokio::test]
async fn health_reports_each_service() {
    let (running, config) = host(8, Duration::from_secs(5)).await;
    let health = Health::new(running.broker().clone(), running.probes());
    let router = router(running.http_endpoints(), &config, Some(health)).unwrap();
    let live = call(&router, request("GET", "/health/live", "")).await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(json(live.body())["status"], "UP");
    let ready = call(&router, request("GET", "/health/ready", "")).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let report = json(ready.body());
    assert_eq!(report["components"]["broker"]["status"], "UP");
    assert_eq!(
        report["components"]["services"]["components"]["shop"]["status"],
        "UP"
    );
    assert_eq!(
        report["components"]["services"]["components"]["echo"]["status"],
        "UP"
    );
    running.stop().await;
}

#[tokio::test]
async fn routes_that_answer_the_same_requests_are_refused() {
    let (running, config) = host(8, Duration::from_secs(5)).await;
    let mut endpoints = running.http_endpoints();
    endpoints.extend(running.http_endpoints());
    let err = router(endpoints, &config, None).unwrap_err();
    assert!(err.to_string().contains("is declared by both"), "{err}");
    running.stop().await;
}

#[tokio::test]
async fn cors_preflights_and_compression_as_configured() {
    let (running, config) = host(8, Duration::from_secs(5)).await;
    let config = config
        .with_cors(CorsConfig::allowing(["https://app.example.com"]))
        .with_compression(true);
    let router = router(running.http_endpoints(), &config, None).unwrap();
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/items")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .body(Body::empty())
            .unwrap()
    };
    let r = call(&router, preflight("https://app.example.com")).await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let headers = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    assert_eq!(r.headers()["access-control-max-age"], "600");
    // Another origin gets no permission.
    let r = call(&router, preflight("https://evil.example.com")).await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // An actual cross-origin request carries the header too.
    let mut get = request("GET", "/items?limit=300", "");
    get.headers_mut()
        .insert("origin", "https://app.example.com".parse().unwrap());
    get.headers_mut()
        .insert("accept-encoding", "gzip".parse().unwrap());
    let r = call(&router, get).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let plain = serde_json::to_vec(&(1..=300).collect::<Vec<i64>>())
        .unwrap()
        .len();
    assert!(
        r.body().len() < plain / 2,
        "{} bytes against {plain}",
        r.body().len()
    );
    running.stop().await;
}
