//! No secret reaches a log line under the default filter. A
//! host process (this test binary again, with the ignored test selected) installs the CLI's log
//! set-up, puts an `auth_token` in its call context and calls a service nothing serves, over
//! RabbitMQ; the broker returns the request, headers and all, which the AMQP client logs. Its
//! standard error must not contain the token. Needs `BASIDIA_TEST_AMQP_URL`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use basidia::{Context, RpcError, RpcProxy};
use basidia_conformance::broker_url_from_env;

const URL_VAR: &str = "BASIDIA_SECRETS_CHILD_URL";
const SECRET: &str = "s3cr3t-t0ken-9f8e7d";
const RAN: &str = "the unroutable call came back";

#[test]
#[ignore = "run by unroutable_calls_log_no_secrets in a process of its own"]
fn secrets_child() {
    let Ok(url) = std::env::var(URL_VAR) else {
        return;
    };
    basidia_runtime::logging::init(false);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let broker = basidia::connect(&url).await.unwrap();
        let proxy = RpcProxy::new(broker.clone()).with_timeout(Duration::from_secs(5));
        let ctx = Arc::new(
            Context::new()
                .with("auth_token", SECRET)
                .with("user_id", "42"),
        );
        let args: [u8; 0] = [];
        let kwargs = std::collections::BTreeMap::<String, u8>::new();
        let result = Context::scope(
            ctx,
            proxy.call::<String, _, _>("t_nobody_serves_this", "m", &args, &kwargs),
        )
        .await;
        assert!(
            matches!(result, Err(RpcError::UnknownService(_))),
            "{result:?}"
        );
        tracing::info!("{RAN}");
        broker.close().await;
    });
}

#[test]
fn unroutable_calls_log_no_secrets() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_AMQP_URL") else {
        return;
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "secrets_child", "--nocapture"])
        .env(URL_VAR, &url)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed:\n{stderr}");
    assert!(
        stderr.contains(RAN),
        "the child did not get to its call:\n{stderr}"
    );
    // Clients print header values as text or, as lapin does, as a list of bytes.
    let as_bytes = format!("{:?}", SECRET.as_bytes());
    let as_bytes = as_bytes.trim_start_matches('[').trim_end_matches(']');
    assert!(
        !stderr.contains(SECRET) && !stderr.contains(as_bytes),
        "the token reached the log:\n{stderr}"
    );
}
