//! An event whose handler takes the process down (an abort, as a crashing library or an
//! OOM kill would) is dead-lettered once it has been delivered `event_max_deliveries` times,
//! before it runs again, instead of crashing every instance that takes it up, forever. Before,
//! the count was only looked at after a handler returned an error, which a crash never does.
//!
//! This holds where the broker counts deliveries itself: JetStream, and RabbitMQ quorum queues.
//! A classic RabbitMQ queue only flags a redelivery, so there the count cannot grow across
//! crashes (docs/protocol-amqp.md says so).

use std::time::Duration;

use basidia::{Message, RpcProxy};
use basidia_conformance::broker_url_from_env;

use crate::child::{count, scratch_log, serial, Host, Mode};

const DEAD_LETTERED: &str = "dead-lettered without running";
const QUEUE: &str = "evt-poison_source-job--poison_probe.on_job";

/// Forgets poison events an earlier, failed run left behind, which would crash the first host
/// before the test's own event is sent.
async fn forget_earlier_runs(url: &str) {
    if url.starts_with("amqp") {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "purge_queue", QUEUE])
            .output();
        return;
    }
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    if let Ok(stream) = js
        .get_stream(basidia_nats::event_stream("poison_source"))
        .await
    {
        // A new durable consumer starts with the events sent from then on.
        let _ = stream.delete_consumer(&basidia_nats::js_name(QUEUE)).await;
    }
}

async fn capped_across_crashes(url: &str, mode: Mode) {
    let _serial = serial().await;
    forget_earlier_runs(url).await;
    let log = scratch_log("poison");
    let broker = basidia::connect(url).await.unwrap();
    let proxy = RpcProxy::new(broker.clone());
    let mut host = Host::start_with(url, &log, &proxy, &mode).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let body = serde_json::to_vec(&id).unwrap();
    broker
        .publish_event(
            "poison_source",
            "job",
            Message::new(body, "application/json"),
        )
        .await
        .expect("the event is accepted");
    let mut crashes = 0;
    loop {
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        while !host.has_exited() && !host.log().contains(DEAD_LETTERED) {
            assert!(
                tokio::time::Instant::now() < end,
                "the host neither crashed nor dead-lettered the event; its log:\n{}",
                host.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !host.has_exited() {
            break;
        }
        crashes += 1;
        assert!(crashes <= 5, "the poison event keeps crashing hosts");
        host = Host::spawn(url, &log, &mode);
    }
    let max = mode.poison.unwrap();
    assert_eq!(
        count(&log, "start", &id),
        max as usize,
        "runs of the poison event"
    );
    assert_eq!(crashes, max, "hosts it took down");
    drop(host);
    broker.close().await;
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_poison_event_is_dead_lettered_after_its_deliveries() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let mode = Mode {
        ack_wait: Some(Duration::from_secs(2)),
        ..Mode::poison(2)
    };
    capped_across_crashes(&url, mode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_quorum_poison_event_is_dead_lettered_after_its_deliveries() {
    if broker_url_from_env("BASIDIA_TEST_AMQP_URL").is_none() || !crate::rabbit_nodes::available() {
        return;
    }
    // A node of the test's own: with quorum queues every queue of the hosted services is a
    // quorum queue, and the shared broker keeps the classic ones other tests declare.
    let node =
        tokio::task::spawn_blocking(|| crate::rabbit_nodes::RabbitNodes::start(1, "", "[]."))
            .await
            .unwrap();
    let mode = Mode {
        quorum: true,
        ..Mode::poison(2)
    };
    capped_across_crashes(&node.nodes[0].url(), mode).await;
}
