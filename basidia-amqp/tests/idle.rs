//! An idle AMQP broker handle does not wake the process: with no call in flight nothing can be
//! returned by the broker, so nothing looks for returned requests. Counted as the context
//! switches of every thread of this test process over two idle seconds. Needs
//! `BASIDIA_TEST_AMQP_URL`.

use std::time::Duration;

use basidia::AmqpBroker;
use basidia_conformance::broker_url_from_env;

/// Voluntary and involuntary context switches of every thread of this process so far.
fn context_switches() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("Linux /proc") {
        let status =
            std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += n.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_handle_sleeps() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_AMQP_URL") else {
        return;
    };
    let broker = AmqpBroker::connect(&url).await.expect("RabbitMQ answers");
    // One call, so that everything a call sets going has started, then quiet.
    let _ = basidia::Broker::call(
        &broker,
        "t_idle_nobody",
        "m",
        basidia::Message::new(b"{}".to_vec(), "application/json"),
        Duration::from_secs(2),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = context_switches();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let woke = context_switches() - before;
    // Looking every 5 ms would be 400 wake-ups; heartbeats and the runtime's own are a few.
    assert!(
        woke < 100,
        "the process woke {woke} times in two idle seconds"
    );
    basidia::Broker::close(&broker).await;
}
