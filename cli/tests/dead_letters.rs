//! `basidia dead-letters list` and `replay` against RabbitMQ and NATS: a handler that fails
//! dead-letters an event; `list` shows where it came from, why, how often it was delivered and
//! its payload with secrets masked; once the handler is fixed, `replay --id` puts it back and
//! the handler takes it, and `list` no longer shows it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basidia::prelude::*;
use basidia::RunnerConfig;
use basidia_conformance::broker_url_from_env;
use common::*;

static FIXED: AtomicBool = AtomicBool::new(false);
static HANDLED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    id: String,
    password: String,
}

#[service]
struct Fragile;

#[service(name = "t_cli_fragile")]
impl Fragile {
    #[event_handler("t_cli_shop", "ordered")]
    async fn on_ordered(&self, order: Order) -> Result<(), String> {
        if !FIXED.load(Ordering::SeqCst) {
            return Err(format!("the warehouse is down for {}", order.id));
        }
        HANDLED.lock().unwrap().push(order.id);
        Ok(())
    }
}

fn dead_letters(url: &str, args: &[&str]) -> (bool, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let out = output(
        basidia(tmp.path())
            .args(["--broker", url, "dead-letters"])
            .args(args),
    );
    let (stdout, stderr) = text(&out);
    (out.status.success(), stdout, stderr)
}

/// The block `list` prints for the dead letter whose payload holds `marker`.
fn block_of(listing: &str, marker: &str) -> Option<String> {
    let lines: Vec<&str> = listing.lines().collect();
    let at = lines.iter().position(|l| l.contains(marker))?;
    // Back to the block's first line, the one not indented.
    let start = (0..=at).rev().find(|&i| !lines[i].starts_with(' '))?;
    Some(lines[start..(start + 3).min(lines.len())].join("\n"))
}

async fn list_replay(url: &str) {
    FIXED.store(false, Ordering::SeqCst);
    let broker = basidia::connect(url).await.unwrap();
    let mut config = RunnerConfig::default();
    config.defaults.event_max_deliveries = 1;
    let mut runner = Runner::new(broker.clone()).with_config(config);
    runner.add::<Fragile>();
    let running = runner.start().await.unwrap();

    let id = format!("order-{}", uuid::Uuid::new_v4().simple());
    let dispatcher = EventDispatcher::new(broker.clone(), "t_cli_shop", basidia::Format::Json);
    let ctx = Arc::new(Context::new().with("auth_token", "eyJ-secret-token"));
    let order = Order {
        id: id.clone(),
        password: "hunter2".into(),
    };
    Context::scope(ctx, dispatcher.dispatch("ordered", &order))
        .await
        .unwrap();

    let mut block = None;
    for _ in 0..40 {
        let (ok, stdout, stderr) = dead_letters(url, &["list", "--limit", "100000"]);
        assert!(ok, "list failed: {stderr}");
        assert!(
            !stdout.contains("hunter2") && !stdout.contains("eyJ-secret-token"),
            "{stdout}"
        );
        block = block_of(&stdout, &id);
        if block.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let block = block.expect("the dead letter is listed");
    assert!(block.contains("t_cli_fragile"), "the source queue: {block}");
    assert!(
        block.contains("the warehouse is down"),
        "the reason: {block}"
    );
    assert!(
        block.contains("deliveries=1"),
        "the delivery count: {block}"
    );
    assert!(block.contains("***"), "the masked password: {block}");
    let dead_id = block.split_whitespace().next().unwrap().to_string();

    FIXED.store(true, Ordering::SeqCst);
    let (ok, stdout, stderr) = dead_letters(url, &["replay", "--id", &dead_id]);
    assert!(ok && stdout.contains("replayed 1"), "{stdout}{stderr}");
    let mut handled = false;
    for _ in 0..100 {
        if HANDLED.lock().unwrap().contains(&id) {
            handled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(handled, "the replayed event reached its handler");
    let (_, stdout, _) = dead_letters(url, &["list", "--limit", "100000"]);
    assert!(
        block_of(&stdout, &id).is_none(),
        "still listed after the replay:\n{stdout}"
    );
    let (ok, _, stderr) = dead_letters(url, &["replay", "--id", "no-such-letter"]);
    assert!(!ok && stderr.contains("error"), "{stderr}");
    running.stop().await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_and_replay_on_both_brokers() {
    let amqp = broker_url_from_env("BASIDIA_TEST_AMQP_URL");
    let nats = broker_url_from_env("BASIDIA_TEST_NATS_URL");
    for url in [amqp, nats].into_iter().flatten() {
        list_replay(&url).await;
    }
}
