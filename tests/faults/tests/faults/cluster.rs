//! Past one broker node.
//!
//! - NATS: three nats-server processes, started here on free loopback ports, form a JetStream
//!   cluster; Basidia's URL names all three and its streams keep three replicas. While calls
//!   and events flow, the node the service is connected to is killed. Calls fail fast during
//!   the switch (none waits past its deadline) and succeed again within seconds; no event whose
//!   publish JetStream acknowledged is lost.
//! - AMQP: a URL naming several nodes is tried in turn; one that does not answer is passed over.
//!   Three private RabbitMQ nodes form a cluster, Basidia's queues are quorum queues, and the
//!   node the service is connected to (which also leads its queues) is killed while calls and
//!   events flow: the same outcome is asked for as on NATS.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basidia::prelude::*;
use basidia::{AmqpBroker, AmqpOptions, NatsBroker, NatsOptions};
use basidia::{Broker, Message};

use crate::child::{serial, NO_KWARGS};
use crate::rabbit_nodes::{self, RabbitNodes};

static SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[service]
struct Clustered;

#[service(name = "t_clustered")]
impl Clustered {
    #[rpc]
    async fn echo(&self, n: u32) -> u32 {
        n
    }

    #[event_handler("t_clustered_src", "tick")]
    async fn on_tick(&self, n: u32) {
        SEEN.lock().unwrap().push(n);
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    client_port: u16,
    process: Option<Child>,
    _dir: std::path::PathBuf,
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// Three nodes of one JetStream cluster, on loopback ports of their own.
fn start_cluster() -> Vec<Node> {
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_list = routes
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            let dir = std::env::temp_dir().join(format!(
                "basidia-cluster-{}-{i}",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let process = Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &client[i].to_string(), "-js"])
                .args(["-sd", dir.to_str().unwrap()])
                .args(["--name", &format!("n{i}"), "--cluster_name", "basidia-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", routes[i])])
                .args(["--routes", &route_list])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server starts");
            Node {
                client_port: client[i],
                process: Some(process),
                _dir: dir,
            }
        })
        .collect()
}

/// Waits until the cluster has a JetStream leader and takes a replicated stream.
async fn wait_for_jetstream(url: &str) {
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(client) = async_nats::connect(url).await {
            let js = async_nats::jetstream::new(client);
            let probe = format!("PROBE_{}", uuid::Uuid::new_v4().simple());
            let created = js
                .create_stream(async_nats::jetstream::stream::Config {
                    name: probe.clone(),
                    subjects: vec![format!("probe.{probe}")],
                    num_replicas: 3,
                    ..Default::default()
                })
                .await;
            if created.is_ok() {
                let _ = js.delete_stream(&probe).await;
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the JetStream cluster did not form"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn connect(url: &str) -> Arc<NatsBroker> {
    let mut options = NatsOptions::new(url);
    options.stream_replicas = 3;
    options.ack_wait = Duration::from_secs(2);
    Arc::new(NatsBroker::connect_with(options).await.unwrap())
}

/// Calls to `service.echo` and events from `source` to its `on_tick` (which records them in
/// `seen`) flow from `caller` while `kill` takes a node down: calls fail fast during the switch
/// and answer again within `back_within`, and every event whose publish the cluster
/// acknowledged is handled.
async fn carries_on_through(
    caller: Arc<dyn Broker>,
    service: &str,
    source: &'static str,
    seen: &'static Mutex<Vec<u32>>,
    back_within: Duration,
    kill: impl FnOnce(),
) {
    let proxy = RpcProxy::new(caller.clone()).with_timeout(Duration::from_secs(2));
    let echoed: u32 = proxy
        .call(service, "echo", &(7u32,), &NO_KWARGS)
        .await
        .unwrap();
    assert_eq!(echoed, 7);

    let acked: Arc<Mutex<Vec<u32>>> = Arc::default();
    let publisher = {
        let caller = caller.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            for n in 0..200u32 {
                let body = serde_json::to_vec(&n).unwrap();
                let began = tokio::time::Instant::now();
                let published = caller
                    .publish_event(source, "tick", Message::new(body, "application/json"))
                    .await;
                if began.elapsed() > Duration::from_secs(1) {
                    eprintln!("publish {n} took {:?}: {published:?}", began.elapsed());
                }
                if published.is_ok() {
                    acked.lock().unwrap().push(n);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    kill();
    let killed = tokio::time::Instant::now();
    let mut answered_again = None;
    let mut slowest = Duration::ZERO;
    while killed.elapsed() < back_within * 2 {
        let began = tokio::time::Instant::now();
        let result: Result<u32, _> = proxy.call(service, "echo", &(1u32,), &NO_KWARGS).await;
        slowest = slowest.max(began.elapsed());
        match result {
            Ok(_) => {
                answered_again = Some(killed.elapsed());
                break;
            }
            Err(e) => eprintln!("{:?} after the kill: {e}", killed.elapsed()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = answered_again.expect("calls succeed again after the node went");
    eprintln!(
        "calls answered again {again:?} after the kill; the slowest attempt took {slowest:?}"
    );
    assert!(
        slowest < Duration::from_secs(4),
        "a call waited {slowest:?}, past its deadline of 2 s"
    );
    assert!(again < back_within, "calls came back only after {again:?}");

    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("every publish ends")
        .unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} of 200 events acknowledged", acked.len());
    assert!(
        acked.len() > 100,
        "only {} of 200 events were acknowledged",
        acked.len()
    );
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let handled = seen.lock().unwrap().clone();
        let missing: Vec<u32> = acked
            .iter()
            .copied()
            .filter(|n| !handled.contains(n))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "acknowledged events never handled: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("every acknowledged event was handled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_goes_and_calls_and_events_carry_on() {
    if basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL").is_none() {
        return;
    }
    let _serial = serial().await;
    let mut nodes = start_cluster();
    let url = nodes
        .iter()
        .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
        .collect::<Vec<_>>()
        .join(",");
    wait_for_jetstream(&format!("nats://127.0.0.1:{}", nodes[0].client_port)).await;

    let server = connect(&url).await;
    let mut runner = Runner::new(server.clone());
    runner.add::<Clustered>();
    let running = runner.start().await.unwrap();
    let caller = connect(&url).await;
    carries_on_through(
        caller.clone(),
        "t_clustered",
        "t_clustered_src",
        &SEEN,
        Duration::from_secs(10),
        || {
            // The node the service is connected to goes, as a crashed machine would.
            let port = server.unstable_raw_client().server_info().port;
            nodes
                .iter_mut()
                .find(|n| n.client_port == port)
                .expect("the service is connected to one of the nodes")
                .kill();
        },
    )
    .await;
    running.stop().await;
    caller.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_node_that_does_not_answer_is_passed_over() {
    let Some(url) = crate::amqp_wire::url() else {
        return;
    };
    let _serial = serial().await;
    let dead = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let broker = AmqpBroker::connect(&format!("{dead},{url}"))
        .await
        .expect("the second node answers");
    assert!(broker.is_connected());
    let all_dead = AmqpBroker::connect(&format!("{dead},{dead}")).await;
    assert!(all_dead.is_err(), "no node answers: a clear error");
    broker.close().await;
}

static SEEN_AMQP: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[service]
struct RabbitClustered;

#[service(name = "t_rclustered")]
impl RabbitClustered {
    #[rpc]
    async fn echo(&self, n: u32) -> u32 {
        n
    }

    #[event_handler("t_rclustered_src", "tick")]
    async fn on_tick(&self, n: u32) {
        SEEN_AMQP.lock().unwrap().push(n);
    }
}

async fn amqp_connect(urls: &[String]) -> Arc<AmqpBroker> {
    let options = AmqpOptions::new(&urls.join(","))
        .with_quorum_queues(true)
        .with_publish_timeout(Duration::from_secs(2));
    Arc::new(AmqpBroker::connect_with(options).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_node_goes_and_calls_and_events_carry_on() {
    if crate::amqp_wire::url().is_none() || !rabbit_nodes::available() {
        return;
    }
    let _serial = serial().await;
    let mut cluster = tokio::task::spawn_blocking(|| RabbitNodes::start(3, "", "[]."))
        .await
        .unwrap();
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    // The service is on the first node, where its queues are declared and led; the caller on
    // the second.
    let server = amqp_connect(&urls).await;
    let mut runner = Runner::new(server.clone());
    runner.add::<RabbitClustered>();
    let running = runner.start().await.unwrap();
    let caller = amqp_connect(&[urls[1].clone(), urls[2].clone(), urls[0].clone()]).await;
    carries_on_through(
        caller.clone(),
        "t_rclustered",
        "t_rclustered_src",
        &SEEN_AMQP,
        Duration::from_secs(15),
        || {
            // What goes with the node: the service's connection and the leader of each of its
            // queues.
            let queues = cluster.nodes[1].ctl(&["list_queues", "name", "type", "leader"]);
            for queue in [
                "rpc-t_rclustered",
                "evt-t_rclustered_src-tick--t_rclustered.on_tick",
            ] {
                let line = queues
                    .lines()
                    .find(|l| l.split_whitespace().next() == Some(queue))
                    .unwrap_or_else(|| panic!("no queue {queue} in {queues}"));
                assert!(
                    line.contains("quorum") && line.contains(&cluster.nodes[0].name),
                    "{queue} is a quorum queue led by the first node: {line}"
                );
            }
            cluster.nodes[0].kill();
        },
    )
    .await;
    running.stop().await;
    caller.close().await;
    server.close().await;
}
