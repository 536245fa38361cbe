//! nats-server restarting under load: calls in flight fail promptly, nothing hangs, the service
//! and its JetStream consumers resume, no confirmed event is lost. Stops and starts the local
//! nats-server (as the machine's service scripts do), so it lives in a test binary of its own.
//! Needs `BASIDIA_TEST_NATS_URL`.
#![cfg(feature = "nats")]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basidia::prelude::*;
use basidia::{Broker, ErrorKind, Format, NatsBroker};

fn url() -> Option<String> {
    match std::env::var("BASIDIA_TEST_NATS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set BASIDIA_TEST_NATS_URL"
            );
            eprintln!("skipped: BASIDIA_TEST_NATS_URL is not set");
            None
        }
    }
}

static HANDLED: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

#[service]
struct Steady;

#[service(name = "t_steady")]
impl Steady {
    #[rpc]
    async fn echo(&self, n: u64) -> u64 {
        n
    }

    #[event_handler("t_steady_src", "tick")]
    async fn on_tick(&self, n: u64) {
        HANDLED.lock().unwrap().insert(n);
    }
}

fn daemon(action: &str) {
    let mut cmd = Command::new("start-stop-daemon");
    match action {
        "stop" => cmd.args([
            "--stop",
            "--oknodo",
            "--retry",
            "10",
            "--exec",
            "/usr/sbin/nats-server",
        ]),
        _ => cmd.args([
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/nats-server",
            "--",
            "-a",
            "127.0.0.1",
            "-p",
            "4222",
            "-js",
            "-sd",
            "/var/lib/nats-server",
            "-l",
            "/var/log/nats-server.log",
        ]),
    };
    let out = cmd.output().expect("start-stop-daemon runs");
    assert!(
        out.status.success(),
        "nats-server {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_callers_survive_a_server_restart() {
    let Some(url) = url() else { return };
    let server = Arc::new(NatsBroker::connect(&url).await.expect("NATS answers"));
    let mut runner = Runner::new(server.clone());
    runner.add::<Steady>();
    let running = runner.start().await.unwrap();
    let caller = Arc::new(NatsBroker::connect(&url).await.unwrap());
    let client =
        SteadyClient::connect(&RpcProxy::new(caller.clone())).with_timeout(Duration::from_secs(2));
    let events = basidia::EventDispatcher::new(caller.clone(), "t_steady_src", Format::MsgPack);

    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(Mutex::new(BTreeSet::new()));
    let outcomes = Arc::new(Mutex::new(Vec::<(Duration, Result<u64, RpcError>)>::new()));
    let load = {
        let (stop, confirmed, outcomes, client) = (
            stop.clone(),
            confirmed.clone(),
            outcomes.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let t = Instant::now();
                let r = client.echo(n).await;
                outcomes.lock().unwrap().push((t.elapsed(), r));
                if tokio::time::timeout(Duration::from_secs(3), events.dispatch("tick", &n))
                    .await
                    .is_ok_and(|r| r.is_ok())
                {
                    confirmed.lock().unwrap().insert(n);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::spawn_blocking(|| daemon("stop"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::spawn_blocking(|| daemon("start"))
        .await
        .unwrap();
    assert!(
        server.wait_connected(Duration::from_secs(60)).await,
        "the service reconnects"
    );
    assert!(
        caller.wait_connected(Duration::from_secs(60)).await,
        "the caller reconnects"
    );

    let back = Instant::now();
    let mut recovered = false;
    while back.elapsed() < Duration::from_secs(30) {
        if client.echo(7).await.ok() == Some(7) {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "calls succeed after the restart");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let slowest = outcomes.iter().map(|(d, _)| *d).max().unwrap();
    assert!(
        slowest < Duration::from_secs(4),
        "no call hung: slowest took {slowest:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|(_, r)| matches!(r, Err(e) if e.kind() == ErrorKind::ConnectionLost)),
        "calls during the outage fail with ConnectionLost"
    );
    let confirmed = confirmed.lock().unwrap().clone();
    assert!(!confirmed.is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let handled = HANDLED.lock().unwrap().clone();
        let missing: Vec<_> = confirmed.difference(&handled).copied().collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed events lost: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.stop().await;
    caller.close().await;
    server.close().await;
}
