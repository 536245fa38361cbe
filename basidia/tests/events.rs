//! Event delivery through services: retries, dead-lettering, handler types, durability.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use basidia::prelude::*;
use basidia::{RunnerConfig, ServiceOverrides};
use basidia_testing::ServiceHarness;

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);
static BROKEN_CALLS: AtomicU32 = AtomicU32::new(0);

#[service]
struct Flaky;

#[service(name = "flaky")]
impl Flaky {
    /// Fails twice, then succeeds.
    #[event_handler("orders", "placed")]
    async fn on_placed(&self, order: u32) -> Result<(), String> {
        let n = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            Err(format!("attempt {n} for order {order} failed"))
        } else {
            Ok(())
        }
    }
}

#[service]
struct Broken;

#[service(name = "broken")]
impl Broken {
    /// Always fails.
    #[event_handler("orders", "cancelled")]
    async fn on_cancelled(&self, _order: u32) -> Result<(), String> {
        BROKEN_CALLS.fetch_add(1, Ordering::SeqCst);
        Err("database down".into())
    }

    /// Expects a number; gets something else.
    #[event_handler("orders", "typed")]
    async fn on_typed(&self, _order: u32) {}
}

fn config(max: u32) -> RunnerConfig {
    let mut c = RunnerConfig::default();
    c.defaults.event_retry_delay = Duration::from_millis(10);
    for s in ["flaky", "broken"] {
        c.services.insert(
            s.into(),
            ServiceOverrides {
                event_max_deliveries: Some(max),
                ..ServiceOverrides::default()
            },
        );
    }
    c
}

#[tokio::test(start_paused = true)]
async fn a_failing_handler_is_retried_until_it_succeeds() {
    let h = ServiceHarness::builder()
        .config(config(5))
        .service::<Flaky>()
        .start()
        .await
        .unwrap();
    for attempt in 1..=3u32 {
        let waiter = h.waiter("flaky", "on_placed");
        if attempt == 1 {
            h.dispatch("orders", "placed", &7u32).await.unwrap();
        }
        let run = waiter.wait(Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            run.error.is_none(),
            attempt == 3,
            "attempt {attempt}: {:?}",
            run.error
        );
    }
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 3);
    assert!(h.broker().dead_letters().is_empty());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_keeps_failing_is_dead_lettered_after_the_cap() {
    let h = ServiceHarness::builder()
        .config(config(3))
        .service::<Broken>()
        .start()
        .await
        .unwrap();
    h.dispatch("orders", "cancelled", &9u32).await.unwrap();
    for _ in 0..600 {
        if !h.broker().dead_letters().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = h.broker().dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].queue, "evt-orders-cancelled--broken.on_cancelled");
    assert!(
        dead[0].reason.contains("failed 3 times"),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[0].reason.contains("database down"),
        "{}",
        dead[0].reason
    );
    assert_eq!(BROKEN_CALLS.load(Ordering::SeqCst), 3);
    // An undecodable payload is dead-lettered at once: retrying cannot help.
    h.dispatch("orders", "typed", &"not a number")
        .await
        .unwrap();
    for _ in 0..100 {
        if h.broker().dead_letters().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dead = h.broker().dead_letters();
    assert_eq!(dead.len(), 2);
    assert!(
        dead[1].reason.contains("MalformedRequest"),
        "{}",
        dead[1].reason
    );
    assert_eq!(dead[1].message.delivery_count, 1);
    h.stop().await;
}

static POOL: AtomicU32 = AtomicU32::new(0);
static SINGLE: AtomicU32 = AtomicU32::new(0);
static BROADCAST: AtomicU32 = AtomicU32::new(0);

#[service]
struct Watcher;

#[service(name = "watcher")]
impl Watcher {
    #[event_handler("config", "changed")]
    async fn pooled(&self, _v: u8) {
        POOL.fetch_add(1, Ordering::SeqCst);
    }

    #[event_handler("config", "changed", handler_type = "singleton")]
    async fn single(&self, _v: u8) {
        SINGLE.fetch_add(1, Ordering::SeqCst);
    }

    #[event_handler(source = "config", event_type = "changed", handler_type = "broadcast")]
    async fn everyone(&self, _v: u8) {
        BROADCAST.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn handler_types_share_events_as_nameko_does() {
    let server = basidia::MemoryBroker::new();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(
            ServiceHarness::builder()
                .broker(server.connect())
                .service::<Watcher>()
                .start()
                .await
                .unwrap(),
        );
    }
    let waiters: Vec<_> = instances
        .iter()
        .map(|h| h.waiter("watcher", "everyone"))
        .collect();
    instances[0]
        .dispatch("config", "changed", &1u8)
        .await
        .unwrap();
    for w in waiters {
        w.wait(Duration::from_secs(5)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(BROADCAST.load(Ordering::SeqCst), 3, "every instance");
    assert_eq!(
        POOL.load(Ordering::SeqCst),
        1,
        "one instance of the service"
    );
    assert_eq!(SINGLE.load(Ordering::SeqCst), 1, "one handler overall");
    for h in instances {
        h.stop().await;
    }
}

static LATE: AtomicU32 = AtomicU32::new(0);

#[service]
struct Late;

#[service(name = "late")]
impl Late {
    #[event_handler("billing", "invoiced")]
    async fn on_invoiced(&self, _n: u32) {
        LATE.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn events_dispatched_while_a_service_is_down_arrive_when_it_returns() {
    let server = basidia::MemoryBroker::new();
    let first = ServiceHarness::builder()
        .broker(server.connect())
        .service::<Late>()
        .start()
        .await
        .unwrap();
    first.stop().await;
    let dispatcher = ServiceHarness::builder()
        .broker(server.connect())
        .start()
        .await
        .unwrap();
    for n in 0..3u32 {
        dispatcher
            .dispatch("billing", "invoiced", &n)
            .await
            .unwrap();
    }
    assert_eq!(LATE.load(Ordering::SeqCst), 0);
    let again = ServiceHarness::builder()
        .broker(server.connect())
        .service::<Late>()
        .start()
        .await
        .unwrap();
    for _ in 0..200 {
        if LATE.load(Ordering::SeqCst) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(LATE.load(Ordering::SeqCst), 3);
    again.stop().await;
    dispatcher.stop().await;
}
