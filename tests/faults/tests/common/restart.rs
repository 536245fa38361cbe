//! A broker restart under load, shared by the RabbitMQ and NATS restart tests: calls in flight
//! fail promptly, nothing hangs, service and callers reconnect by themselves, and no event the
//! broker confirmed is lost.

use std::collections::BTreeSet;
use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basidia::prelude::*;
use basidia::{ErrorKind, Format, SharedBroker};

static HANDLED: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

#[service]
pub struct Sturdy;

#[service(name = "t_sturdy")]
impl Sturdy {
    #[rpc]
    async fn echo(&self, n: u64) -> u64 {
        n
    }

    #[event_handler("t_sturdy_src", "tick")]
    async fn on_tick(&self, n: u64) {
        HANDLED.lock().unwrap().insert(n);
    }
}

/// Runs `t_sturdy` on `server`, drives calls and events through `caller`, calls `restart`
/// (which stops and starts the broker) in the middle, awaits `reconnected`, then checks the
/// outcome.
pub async fn survives_restart<F>(
    server: SharedBroker,
    caller: SharedBroker,
    restart: impl FnOnce() + Send + 'static,
    reconnected: F,
) where
    F: Future<Output = bool>,
{
    let mut runner = Runner::new(server);
    runner.add::<Sturdy>();
    let running = runner.start().await.unwrap();
    let client =
        SturdyClient::connect(&RpcProxy::new(caller.clone())).with_timeout(Duration::from_secs(2));
    let events = basidia::EventDispatcher::new(caller, "t_sturdy_src", Format::MsgPack);

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
    tokio::task::spawn_blocking(restart).await.unwrap();
    assert!(reconnected.await, "the service and the caller reconnect");

    // Calls succeed again once the broker is back.
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
    assert!(
        outcomes.iter().any(|(_, r)| r.is_ok()),
        "calls succeeded around the outage"
    );

    // Every event the broker confirmed reaches the handler.
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
}

/// Runs a broker's control command (`rabbitmqctl`, `start-stop-daemon`); panics with its error
/// output if it fails.
pub fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
