//! HTTP: requests per second over keep-alive connections (one per concurrent caller) for
//! (a) a raw axum handler answering `{"message": "Hello, World!"}`, (b) a Basidia `#[http]`
//! entrypoint answering the same, both in this process on loopback, alternating as the RPC
//! figures do, and (c) an `#[http]` entrypoint that calls `greeting_service.hello` over a
//! broker (memory, NATS) for it; over NATS against the same chain of raw parts (an axum handler
//! making a plain async-nats request).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use basidia::http::{Edge, HttpConfig, HttpServer, Json};
use basidia::prelude::*;
use basidia::{RunnerConfig, RunningServices, SharedBroker};
use basidia_example_services::{GreetingService, GreetingServiceClient};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::{drive, Measurement};

/// What every side answers.
#[derive(Serialize)]
pub struct Greeting {
    message: String,
}

/// The Basidia side: one route answering at once, one calling `greeting_service`.
#[service]
pub struct BenchApi {
    greeter: Dependency<GreetingServiceClient>,
}

#[service(name = "bench_api")]
impl BenchApi {
    #[http(GET, "/greet")]
    async fn greet(&self) -> Json<Greeting> {
        Json(Greeting {
            message: "Hello, World!".into(),
        })
    }

    #[http(GET, "/hello")]
    async fn hello(&self) -> Result<Json<Greeting>, RpcError> {
        let message = self.greeter.hello("World".into()).await?;
        Ok(Json(Greeting { message }))
    }
}

/// Keep-alive connections, one taken per request in flight and put back after.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<BufReader<TcpStream>>>,
}

impl Pool {
    fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Pool {
            addr,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn take(&self) -> Option<BufReader<TcpStream>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn give_back(&self, c: BufReader<TcpStream>) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(c);
    }

    /// `GET path`; the body of a 200.
    async fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let mut conn = match self.take() {
            Some(c) => c,
            None => {
                let s = TcpStream::connect(self.addr).await?;
                s.set_nodelay(true)?;
                BufReader::new(s)
            }
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        conn.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        conn.read_line(&mut line).await?;
        anyhow::ensure!(
            line.starts_with("HTTP/1.1 200"),
            "unexpected answer {line:?}"
        );
        let mut length = 0usize;
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse()?;
                }
            }
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await?;
        self.give_back(conn);
        Ok(body)
    }
}

/// A request through `pool` whose body must be the greeting.
fn greeting_call(
    pool: Arc<Pool>,
    path: &'static str,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>
       + Clone
       + Send
       + 'static {
    move || {
        let pool = Arc::clone(&pool);
        Box::pin(async move {
            let body = pool.get(path).await?;
            anyhow::ensure!(
                body == br#"{"message":"Hello, World!"}"#,
                "unexpected body {:?}",
                String::from_utf8_lossy(&body)
            );
            Ok(())
        })
    }
}

async fn raw_axum() -> anyhow::Result<SocketAddr> {
    let router = axum::Router::new().route(
        "/greet",
        axum::routing::get(|| async {
            axum::Json(Greeting {
                message: "Hello, World!".into(),
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

async fn basidia_edge(broker: SharedBroker) -> anyhow::Result<(RunningServices, HttpServer)> {
    let mut config = RunnerConfig::default();
    config.defaults.max_workers = 256;
    let mut runner = Runner::new(broker).with_config(config);
    runner.add::<BenchApi>().add::<GreetingService>();
    let running = runner.start().await?;
    let http = HttpConfig::default().with_address("127.0.0.1:0".parse()?);
    let router = Edge::new(running.http_endpoints(), &http).router()?;
    let server = HttpServer::start(http.address, router).await?;
    Ok((running, server))
}

/// (a) against (b) at 1, 16 and 64 connections, then (c) on the memory broker and on NATS.
pub async fn bench_http(nats_url: Option<&str>, quick: bool) -> anyhow::Result<Vec<Measurement>> {
    let duration = crate::networked_duration(quick);
    let raw = Pool::new(raw_axum().await?);
    let memory: SharedBroker = Arc::new(MemoryBroker::new());
    let (running, server) = basidia_edge(memory).await?;
    let edge = Pool::new(server.local_addr());
    let mut out = crate::compare_as(
        "http",
        "route",
        "",
        duration,
        greeting_call(Arc::clone(&edge), "/greet"),
        greeting_call(Arc::clone(&raw), "/greet"),
    )
    .await?;
    out.extend(through_memory(&edge, duration).await?);
    server.stop(Duration::from_secs(1)).await;
    running.stop().await;
    if let Some(url) = nats_url {
        let broker = basidia::connect(url).await.context("connecting to NATS")?;
        let (running, server) = basidia_edge(broker).await?;
        let edge = Pool::new(server.local_addr());
        // Against the same chain built of the raw parts, in the same run, alternating.
        let raw = Pool::new(raw_chain(url).await?);
        out.extend(
            crate::compare_as(
                "http+nats",
                "route calling rpc",
                "nats-server",
                duration,
                greeting_call(Arc::clone(&edge), "/hello"),
                greeting_call(raw, "/hello"),
            )
            .await?,
        );
        server.stop(Duration::from_secs(1)).await;
        running.stop().await;
    }
    Ok(out)
}

/// The chain of (c) built of raw parts: an axum handler that makes a plain async-nats request
/// to a queue-group responder answering the greeting, and answers it as JSON.
async fn raw_chain(url: &str) -> anyhow::Result<SocketAddr> {
    use futures_util::StreamExt;
    let responder = async_nats::connect(url).await?;
    let subject = format!("bench.raw.hello.{}", std::process::id());
    let mut requests = responder
        .queue_subscribe(subject.clone(), "bench".into())
        .await?;
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            if let Some(reply) = m.reply {
                let greeting = bytes::Bytes::from_static(b"Hello, World!");
                let _ = responder.publish(reply, greeting).await;
            }
        }
    });
    let client = Arc::new(async_nats::connect(url).await?);
    let subject = async_nats::Subject::from(subject);
    let router = axum::Router::new().route(
        "/hello",
        axum::routing::get(move || {
            let client = Arc::clone(&client);
            let subject = subject.clone();
            async move {
                let name = bytes::Bytes::from_static(b"World");
                match client.request(subject, name).await {
                    Ok(reply) => Ok(axum::Json(Greeting {
                        message: String::from_utf8_lossy(&reply.payload).into_owned(),
                    })),
                    Err(_) => Err(axum::http::StatusCode::SERVICE_UNAVAILABLE),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

/// (c) on the memory broker: the route that calls `greeting_service.hello` in process, which
/// has no raw counterpart.
async fn through_memory(edge: &Arc<Pool>, duration: Duration) -> anyhow::Result<Vec<Measurement>> {
    let call = greeting_call(Arc::clone(edge), "/hello");
    drive(4, Duration::from_millis(300), call.clone()).await?;
    let mut out = Vec::new();
    for concurrency in [1, 16, 64] {
        let (per_s, hist) = drive(concurrency, duration, call.clone()).await?;
        out.push(Measurement {
            broker: "http+memory",
            workload: "route calling rpc",
            concurrency,
            per_s,
            p50_us: hist.value_at_quantile(0.50) as f64,
            p99_us: hist.value_at_quantile(0.99) as f64,
            raw_per_s: None,
        });
    }
    Ok(out)
}
