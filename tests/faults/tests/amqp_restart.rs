//! RabbitMQ restarting under load (`rabbitmqctl stop_app` / `start_app`): see
//! `common/restart.rs`. It restarts the shared local broker, so it lives in a test binary of its
//! own (cargo runs test binaries one after another). Needs `BASIDIA_TEST_AMQP_URL`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use basidia::{AmqpBroker, Broker};

fn rabbitmqctl(args: &[&str]) {
    common::restart::run_ok("rabbitmqctl", args);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_callers_survive_a_broker_restart() {
    let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_AMQP_URL") else {
        return;
    };
    let server = Arc::new(AmqpBroker::connect(&url).await.expect("RabbitMQ answers"));
    let caller = Arc::new(AmqpBroker::connect(&url).await.unwrap());
    let (s, c) = (server.clone(), caller.clone());
    common::restart::survives_restart(
        server.clone(),
        caller.clone(),
        || {
            rabbitmqctl(&["stop_app"]);
            std::thread::sleep(Duration::from_secs(1));
            rabbitmqctl(&["start_app"]);
        },
        async move {
            s.wait_connected(Duration::from_secs(60)).await
                && c.wait_connected(Duration::from_secs(60)).await
        },
    )
    .await;
    caller.close().await;
    server.close().await;
}
