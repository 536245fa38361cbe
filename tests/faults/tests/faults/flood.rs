//! Peer traffic cannot grow a NATS service's memory without bound. A raw client sends
//! requests to 65,000 distinct method names the service does not have; the service answers
//! each with MethodNotFound, its resident memory grows by less than a stated bound, and the
//! services API still answers at once with a bounded list of endpoints. Were every unknown
//! name kept as an endpoint, memory and the services-API answer would grow with each new name
//! until `$SRV.STATS` no longer answered.

use std::time::Duration;

use async_nats::HeaderMap;
use basidia::RpcProxy;
use basidia_conformance::broker_url_from_env;
use futures_util::StreamExt;

use crate::child::{scratch_log, serial, Host};

const NAMES: usize = 65_000;
/// What the flood may add to the service's resident memory.
const RSS_BOUND: u64 = 8 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_names_do_not_grow_memory() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let _serial = serial().await;
    let log = scratch_log("flood");
    let broker = basidia::connect(&url).await.unwrap();
    let host = Host::start(&url, &log, &RpcProxy::new(broker.clone())).await;
    let before = host.rss();

    let raw = async_nats::connect(&url).await.unwrap();
    let inbox = raw.new_inbox();
    let mut replies = raw.subscribe(format!("{inbox}.*")).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    let body: bytes::Bytes = br#"{"args": [], "kwargs": {}}"#.as_slice().into();
    let mut answered = 0usize;
    for chunk in (0..NAMES).collect::<Vec<_>>().chunks(500) {
        for i in chunk {
            raw.publish_with_reply_and_headers(
                format!("basidia.rpc.drain_probe.no_such_method_{i}"),
                format!("{inbox}.{i}"),
                headers.clone(),
                body.clone(),
            )
            .await
            .unwrap();
        }
        raw.flush().await.unwrap();
        // Keep the service's buffer from overflowing: wait for most of this chunk's answers.
        while answered + 100 < chunk[chunk.len() - 1] {
            match tokio::time::timeout(Duration::from_secs(30), replies.next()).await {
                Ok(Some(_)) => answered += 1,
                _ => panic!("the service stopped answering after {answered} requests"),
            }
        }
    }
    while answered < NAMES {
        match tokio::time::timeout(Duration::from_secs(10), replies.next()).await {
            Ok(Some(_)) => answered += 1,
            _ => break,
        }
    }
    assert!(answered >= NAMES - 100, "{answered} of {NAMES} answered");

    let after = host.rss();
    eprintln!(
        "RSS before the flood {:.1} MB, after {:.1} MB",
        before as f64 / 1e6,
        after as f64 / 1e6
    );
    assert!(
        after < before + RSS_BOUND,
        "{NAMES} unknown names grew the service from {before} to {after} bytes"
    );
    let stats = tokio::time::timeout(
        Duration::from_secs(5),
        raw.request("$SRV.STATS.drain_probe", bytes::Bytes::new()),
    )
    .await
    .expect("the services API answers at once")
    .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
    let endpoints = stats["endpoints"].as_array().unwrap();
    assert!(
        endpoints.len() <= 6,
        "{} endpoints listed after the flood",
        endpoints.len()
    );
    assert!(
        endpoints
            .iter()
            .any(|e| e["name"] == "#unknown"
                && e["num_requests"].as_u64() >= Some(NAMES as u64 - 100)),
        "unknown names are counted in one bucket: {endpoints:?}"
    );
    drop(host);
    let _ = std::fs::remove_file(&log);
}
