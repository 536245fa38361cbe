//! nats-server restarting under load (stopped and started as the machine's service scripts do):
//! see `common/restart.rs`. It restarts the shared local server, so it lives in a test binary of
//! its own. Needs `BASIDIA_TEST_NATS_URL`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use basidia::{Broker, NatsBroker};

fn daemon(args: &[&str]) {
    common::restart::run_ok("start-stop-daemon", args);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_callers_survive_a_server_restart() {
    let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let server = Arc::new(NatsBroker::connect(&url).await.expect("NATS answers"));
    let caller = Arc::new(NatsBroker::connect(&url).await.unwrap());
    let (s, c) = (server.clone(), caller.clone());
    common::restart::survives_restart(
        server.clone(),
        caller.clone(),
        || {
            daemon(&[
                "--stop",
                "--oknodo",
                "--retry",
                "10",
                "--exec",
                "/usr/sbin/nats-server",
            ]);
            std::thread::sleep(Duration::from_secs(1));
            daemon(&[
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
            ]);
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
