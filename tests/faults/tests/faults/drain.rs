//! A graceful stop finishes the work in flight, settles it, and runs nothing twice.
//!
//! A handler works for three seconds; the host gets SIGTERM 0.8 s into it. The caller must get
//! its reply, the host must stop cleanly, and after a second host has started on the same
//! queues the work must have run exactly once (before, on AMQP, the consume loop closed its
//! channel under the worker: the ack failed and the next instance ran the request again).

use std::path::Path;
use std::time::Duration;

use basidia::{Message, RpcProxy};
use basidia_conformance::broker_url_from_env;

use crate::child::{count, scratch_log, wait_for, Host, NO_KWARGS, WORK};

const SIGTERM_AFTER: Duration = Duration::from_millis(800);

async fn caller(url: &str) -> RpcProxy {
    let broker = basidia::connect(url).await.expect("the broker answers");
    RpcProxy::new(broker).with_timeout(Duration::from_secs(20))
}

/// After a second host has come up and had time to take anything redelivered, the work `id`
/// has started once and finished once.
async fn ran_once(url: &str, log: &Path, proxy: &RpcProxy, id: &str) {
    let _second = Host::start(url, log, proxy).await;
    tokio::time::sleep(WORK + Duration::from_secs(1)).await;
    assert_eq!(count(log, "start", id), 1, "runs of {id}");
    assert_eq!(count(log, "done", id), 1, "completions of {id}");
}

async fn request_survives_sigterm(url: &str) {
    let _serial = crate::child::serial().await;
    let log = scratch_log("drain-rpc");
    let proxy = caller(url).await;
    let mut host = Host::start(url, &log, &proxy).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let call = {
        let (proxy, id) = (proxy.clone(), id.clone());
        tokio::spawn(async move {
            proxy
                .call::<String, _, _>("drain_probe", "work", &(id,), &NO_KWARGS)
                .await
        })
    };
    wait_for(&log, "start", &id, Duration::from_secs(10)).await;
    tokio::time::sleep(SIGTERM_AFTER).await;
    host.terminate();
    match call.await.unwrap() {
        Ok(echo) => assert_eq!(echo, id, "the caller gets its own reply"),
        Err(e) => panic!("the caller gets no reply: {e}\n{}", host.log()),
    }
    let status = host.wait(Duration::from_secs(20)).await;
    let printed = host.log();
    assert!(
        status.success(),
        "the host stops cleanly: {status}\n{printed}"
    );
    assert!(
        !printed.contains("cannot ack") && !printed.contains("cannot settle"),
        "every delivery is settled before the channel goes:\n{printed}"
    );
    ran_once(url, &log, &proxy, &id).await;
    let _ = std::fs::remove_file(&log);
}

async fn event_survives_sigterm(url: &str) {
    let _serial = crate::child::serial().await;
    let log = scratch_log("drain-event");
    let proxy = caller(url).await;
    let mut host = Host::start(url, &log, &proxy).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let body = serde_json::to_vec(&id).unwrap();
    proxy
        .broker()
        .publish_event(
            "drain_source",
            "job",
            Message::new(body, "application/json"),
        )
        .await
        .expect("the event is accepted");
    wait_for(&log, "start", &id, Duration::from_secs(10)).await;
    tokio::time::sleep(SIGTERM_AFTER).await;
    host.terminate();
    let status = host.wait(Duration::from_secs(20)).await;
    let printed = host.log();
    assert!(
        status.success(),
        "the host stops cleanly: {status}\n{printed}"
    );
    assert_eq!(
        count(&log, "done", &id),
        1,
        "the handler finishes during the stop"
    );
    assert!(
        !printed.contains("cannot ack") && !printed.contains("cannot settle"),
        "every delivery is settled before the channel goes:\n{printed}"
    );
    ran_once(url, &log, &proxy, &id).await;
    let _ = std::fs::remove_file(&log);
}

/// Two services each with a worker that outlasts the grace: the process stops after about one
/// grace, not one per service.
async fn services_drain_side_by_side(url: &str) {
    let _serial = crate::child::serial().await;
    let log = scratch_log("drain-both");
    let proxy = caller(url).await;
    let grace = Duration::from_secs(2);
    let mut host = Host::start_with_grace(url, &log, &proxy, grace).await;
    let mut calls = Vec::new();
    for service in ["drain_probe", "drain_peer"] {
        let id = format!("{service}-{}", uuid::Uuid::new_v4().simple());
        let proxy = proxy.clone().with_timeout(Duration::from_secs(3));
        let job_id = id.clone();
        calls.push(tokio::spawn(async move {
            proxy
                .call::<String, _, _>(service, "linger", &(job_id, 30u64), &NO_KWARGS)
                .await
        }));
        wait_for(&log, "start", &id, Duration::from_secs(10)).await;
    }
    let stopping = tokio::time::Instant::now();
    host.terminate();
    host.wait(Duration::from_secs(20)).await;
    let took = stopping.elapsed();
    assert!(
        took < grace + grace / 2,
        "two services drained one after the other ({took:?} for a grace of {grace:?}):\n{}",
        host.log()
    );
    for c in calls {
        // The workers outlived the grace: their callers time out.
        let _ = c.await;
    }
    drop(host);
    // What the killed workers held goes to the next instance (at least once); clean it up.
    let _next = Host::start(url, &log, &proxy).await;
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_request_runs_once_across_a_sigterm() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_AMQP_URL") else {
        return;
    };
    request_survives_sigterm(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_event_runs_once_across_a_sigterm() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_AMQP_URL") else {
        return;
    };
    event_survives_sigterm(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_request_runs_once_across_a_sigterm() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    request_survives_sigterm(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_event_runs_once_across_a_sigterm() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    event_survives_sigterm(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_services_drain_side_by_side() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_AMQP_URL") else {
        return;
    };
    services_drain_side_by_side(&url).await;
}
