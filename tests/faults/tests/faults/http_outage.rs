//! The HTTP edge through a broker outage: a private nats-server (on a free port of its own), or
//! a private RabbitMQ node, is stopped under a running host and started again. While it is away, `/health/ready` says DOWN
//! with 503 and a route that calls another service answers 503 at once; after it is back (the
//! client reconnects by itself), readiness is UP again and the route answers. Requests go over
//! a real socket from a plain HTTP/1.1 client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use basidia::http::{Edge, Health, HttpConfig, HttpServer};
use basidia::prelude::*;

use crate::cluster::free_port;

/// Answers greetings over the broker.
#[service]
pub struct OutageGreeter;

#[service(name = "t_outage_greeter")]
impl OutageGreeter {
    #[rpc]
    async fn hello(&self, name: String) -> String {
        format!("Hello, {name}!")
    }
}

/// The HTTP face, calling the greeter over the broker.
#[service]
pub struct OutageFront {
    greeter: Dependency<OutageGreeterClient>,
}

#[service(name = "t_outage_front")]
impl OutageFront {
    #[http(GET, "/hello/{name}")]
    async fn hello(&self, name: String) -> Result<String, RpcError> {
        self.greeter.hello(name).await
    }
}

fn nats_server(port: u16) -> Child {
    Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts")
}

async fn wait_until_it_answers(port: u16) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nats-server never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` over a fresh connection: the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

/// Polls `path` until it answers `status`, for at most `limit`.
async fn until(addr: SocketAddr, path: &str, status: u16, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let (s, body) = get(addr, path).await;
        if s == status {
            return body;
        }
        assert!(
            start.elapsed() < limit,
            "{path} still answers {s} after {limit:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A broker of the test's own, to stop and start again.
enum Private {
    Nats { port: u16, server: Option<Child> },
    Rabbit(crate::rabbit_nodes::RabbitNodes),
}

impl Private {
    fn url(&self) -> String {
        match self {
            Private::Nats { port, .. } => format!("nats://127.0.0.1:{port}"),
            Private::Rabbit(nodes) => nodes.nodes[0].url(),
        }
    }

    async fn stop(&mut self) {
        match self {
            Private::Nats { server, .. } => {
                if let Some(mut s) = server.take() {
                    let _ = s.kill();
                    let _ = s.wait();
                }
            }
            Private::Rabbit(nodes) => nodes.nodes[0].kill(),
        }
    }

    async fn start(&mut self) {
        match self {
            Private::Nats { port, server } => {
                *server = Some(nats_server(*port));
                wait_until_it_answers(*port).await;
            }
            Private::Rabbit(nodes) => tokio::task::block_in_place(|| nodes.nodes[0].restart()),
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        if let Private::Nats {
            server: Some(s), ..
        } = self
        {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

async fn through_an_outage(mut private: Private) {
    let broker = basidia::connect(&private.url()).await.unwrap();
    let mut runner = Runner::new(broker.clone());
    runner.add::<OutageGreeter>().add::<OutageFront>();
    let running = runner.start().await.unwrap();
    let config = HttpConfig::default()
        .with_address("127.0.0.1:0".parse().unwrap())
        .with_request_timeout(Duration::from_secs(5));
    let router = Edge::new(running.http_endpoints(), &config)
        .with_health(Health::new(broker.clone(), running.probes()))
        .router()
        .unwrap();
    let http = HttpServer::start(config.address, router).await.unwrap();
    let addr = http.local_addr();

    let ready = until(addr, "/health/ready", 200, Duration::from_secs(5)).await;
    assert!(ready.contains(r#""status":"UP""#), "{ready}");
    assert_eq!(
        get(addr, "/hello/Ann").await,
        (200, "Hello, Ann!".to_string())
    );

    let reconnects = || async {
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let series = format!(
            "basidia_broker_reconnects_total{{broker=\"{}\"}} ",
            broker.kind()
        );
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    let before = reconnects().await;

    private.stop().await;
    let down = until(addr, "/health/ready", 503, Duration::from_secs(15)).await;
    let report: serde_json::Value = serde_json::from_str(&down).unwrap();
    assert_eq!(report["components"]["broker"]["status"], "DOWN", "{report}");
    let asked = Instant::now();
    let (status, body) = get(addr, "/hello/Bob").await;
    assert_eq!(status, 503, "a call while the broker is away: {body}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "it answered within the request timeout, not at its end: {:?}",
        asked.elapsed()
    );

    private.start().await;
    until(addr, "/health/ready", 200, Duration::from_secs(30)).await;
    let body = until(addr, "/hello/Cy", 200, Duration::from_secs(10)).await;
    assert_eq!(body, "Hello, Cy!");
    // At least one: a client may reconnect more than once while its broker comes back.
    let after = reconnects().await;
    assert!(
        after >= before + 1.0,
        "reconnections counted: {before} then {after}"
    );

    http.stop(Duration::from_secs(5)).await;
    running.stop().await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_down_with_nats_and_up_again() {
    let port = free_port();
    let server = nats_server(port);
    wait_until_it_answers(port).await;
    through_an_outage(Private::Nats {
        port,
        server: Some(server),
    })
    .await;
}

/// The same on a RabbitMQ node of the test's own, killed and started again on its port and data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_down_with_rabbitmq_and_up_again() {
    if crate::amqp_wire::url().is_none() || !crate::rabbit_nodes::available() {
        return;
    }
    let nodes =
        tokio::task::spawn_blocking(|| crate::rabbit_nodes::RabbitNodes::start(1, "", "[]."))
            .await
            .unwrap();
    through_an_outage(Private::Rabbit(nodes)).await;
}
