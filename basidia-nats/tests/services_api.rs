//! NATS specifics through services: the services API answered with the documented schema and
//! live figures, payloads over the server's limit refused before sending, events waiting for a
//! stopped service, and dead-lettering after the retry cap. Needs `BASIDIA_TEST_NATS_URL`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use basidia::prelude::*;
use basidia::{BrokerError, ErrorKind, Format, NatsBroker, RunnerConfig};
use futures_util::StreamExt;
use serde_json::Value;

fn url() -> Option<String> {
    basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL")
}

#[service]
struct Meter;

#[service(name = "t_meter")]
impl Meter {
    #[rpc]
    async fn echo(&self, text: String) -> String {
        text
    }

    #[rpc]
    async fn fail(&self) -> Result<(), RemoteError> {
        Err(RemoteError::new(ErrorKind::Handler, "meter broke"))
    }

    #[rpc]
    async fn grow(&self, size: u64) -> String {
        "x".repeat(size as usize)
    }
}

/// The payload test's own service: a second `t_meter` instance would take some of the metered
/// test's calls and answer its STATS request with figures of its own.
#[service]
struct Sizer;

#[service(name = "t_sizer")]
impl Sizer {
    #[rpc]
    async fn echo(&self, text: String) -> String {
        text
    }

    #[rpc]
    async fn grow(&self, size: u64) -> String {
        "x".repeat(size as usize)
    }
}

async fn srv(client: &async_nats::Client, subject: &str) -> Value {
    let reply = client
        .request(subject.to_string(), "".into())
        .await
        .expect("a services-API answer");
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test]
async fn the_services_api_lists_basidia_services() {
    let Some(url) = url() else { return };
    let mut runner = Runner::new(basidia::connect(&url).await.unwrap());
    runner.add::<Meter>();
    let running = runner.start().await.unwrap();
    let client = MeterClient::connect(&RpcProxy::new(basidia::connect(&url).await.unwrap()));
    for _ in 0..3 {
        assert_eq!(client.echo("x".into()).await.unwrap(), "x");
    }
    assert!(client.fail().await.is_err());

    let raw = async_nats::connect(url.as_str()).await.unwrap();
    let ping = srv(&raw, "$SRV.PING.t_meter").await;
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
    assert_eq!(ping["name"], "t_meter");
    let id = ping["id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    assert!(ping["version"].is_string());

    let info = srv(&raw, &format!("$SRV.INFO.t_meter.{id}")).await;
    assert_eq!(info["type"], "io.nats.micro.v1.info_response");
    let endpoints: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(endpoints, vec!["echo", "fail", "grow"]);
    assert_eq!(info["endpoints"][0]["subject"], "basidia.rpc.t_meter.echo");
    assert_eq!(info["endpoints"][0]["queue_group"], "basidia.rpc.t_meter");

    let stats = srv(&raw, "$SRV.STATS.t_meter").await;
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
    assert!(stats["started"].as_str().unwrap().contains('T'));
    let echo = &stats["endpoints"][0];
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["num_requests"], 3);
    assert_eq!(echo["num_errors"], 0);
    assert!(echo["processing_time"].as_u64().unwrap() > 0);
    assert!(echo["average_processing_time"].as_u64().unwrap() > 0);
    let fail = &stats["endpoints"][1];
    assert_eq!(fail["num_requests"], 1);
    assert_eq!(fail["num_errors"], 1);
    assert!(fail["last_error"].as_str().unwrap().contains("meter broke"));

    // The generic PING reaches every service; ours is among the answers.
    let inbox = raw.new_inbox();
    let mut answers = raw.subscribe(inbox.clone()).await.unwrap();
    raw.publish_with_reply("$SRV.PING", inbox, "".into())
        .await
        .unwrap();
    let mut seen = false;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), answers.next()).await {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        seen |= v["id"] == id.as_str();
    }
    assert!(seen, "$SRV.PING answered by t_meter");
    running.stop().await;
}

#[tokio::test]
async fn payloads_over_the_server_limit_are_refused_before_sending() {
    let Some(url) = url() else { return };
    let broker = NatsBroker::connect(&url).await.unwrap();
    let max = basidia::Broker::max_payload(&broker).expect("the server announces max_payload");
    let mut runner = Runner::new(basidia::connect(&url).await.unwrap());
    runner.add::<Sizer>();
    let running = runner.start().await.unwrap();
    let client = SizerClient::connect(&RpcProxy::new(std::sync::Arc::new(broker)));
    let err = client.echo("x".repeat(max + 1)).await.unwrap_err();
    assert!(
        matches!(err, RpcError::Broker(BrokerError::PayloadTooLarge { max: m, .. }) if m == max),
        "{err:?}"
    );
    assert_eq!(client.echo("small".into()).await.unwrap(), "small");

    // A reply over the limit comes back as an error at once, not as a timeout.
    let err = client
        .with_timeout(Duration::from_secs(20))
        .grow(max as u64 + 16)
        .await
        .unwrap_err();
    let remote = err.remote().expect("a remote error");
    assert!(
        remote.to_string().contains("exceeds the broker's limit"),
        "{err:?}"
    );
    assert_eq!(client.echo("after".into()).await.unwrap(), "after");
    running.stop().await;
}

static SEEN: AtomicU32 = AtomicU32::new(0);

#[service]
struct Ledger;

#[service(name = "t_ledger")]
impl Ledger {
    #[event_handler("t_ledger_src", "entry")]
    async fn on_entry(&self, n: u32) {
        SEEN.fetch_add(n, Ordering::SeqCst);
    }

    #[event_handler("t_ledger_src", "poison")]
    async fn on_poison(&self, _n: u32) -> Result<(), String> {
        Err("cannot book it".into())
    }
}

#[tokio::test]
async fn a_stopped_service_gets_its_events_when_it_returns_and_poison_is_dead_lettered() {
    let Some(url) = url() else { return };
    let mut config = RunnerConfig::default();
    config.defaults.event_max_deliveries = 3;
    config.defaults.event_retry_delay = Duration::from_millis(10);
    let mut runner = Runner::new(basidia::connect(&url).await.unwrap()).with_config(config.clone());
    runner.add::<Ledger>();
    let first = runner.start().await.unwrap();
    first.stop().await;

    let dispatcher = basidia::EventDispatcher::new(
        basidia::connect(&url).await.unwrap(),
        "t_ledger_src",
        Format::MsgPack,
    );
    for n in [1u32, 10, 100] {
        dispatcher.dispatch("entry", &n).await.unwrap();
    }
    let mut runner = Runner::new(basidia::connect(&url).await.unwrap()).with_config(config);
    runner.add::<Ledger>();
    let again = runner.start().await.unwrap();
    for _ in 0..200 {
        if SEEN.load(Ordering::SeqCst) == 111 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        SEEN.load(Ordering::SeqCst),
        111,
        "events dispatched while down arrive"
    );

    let raw = async_nats::connect(url.as_str()).await.unwrap();
    let mut dead = raw.subscribe("basidia.deadletter.events.>").await.unwrap();
    let marker = 4_242_424u32;
    dispatcher.dispatch("poison", &marker).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(20), dead.next())
        .await
        .expect("the poison event is dead-lettered")
        .unwrap();
    let reason = m
        .headers
        .as_ref()
        .and_then(|h| h.get("Basidia-Dead-Letter-Reason"))
        .map(|v| v.as_str().to_string())
        .unwrap();
    assert!(reason.contains("failed 3 times"), "{reason}");
    assert!(reason.contains("cannot book it"), "{reason}");
    assert_eq!(Format::MsgPack.decode::<u32>(&m.payload).unwrap(), marker);
    again.stop().await;
}
