//! Trace context from a foreign, instrumented caller: a Python client with the OpenTelemetry SDK
//! and opentelemetry-instrumentation-pika calls a Basidia service over RabbitMQ inside a span.
//! The instrumentation writes `traceparent` as its own header; the Basidia worker continues that
//! trace. Before, Basidia read trace context only from `nameko.`-prefixed headers, and the worker
//! started a trace of its own.

use basidia::prelude::*;

/// Answers the trace id of the worker that handles the call.
#[service]
pub struct Traced;

#[service(name = "t_traced")]
impl Traced {
    #[rpc]
    async fn trace_id(&self) -> String {
        Context::current()
            .and_then(|c| c.trace_id().map(str::to_string))
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pika_caller_with_opentelemetry_has_its_trace_continued() {
    let Some(url) = crate::amqp_wire::url() else {
        return;
    };
    let Some(venv) = std::env::var_os("BASIDIA_NAMEKO_VENV") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "BASIDIA_NAMEKO_VENV is not set: CI runs the traced Python caller from it"
        );
        eprintln!("skipped: BASIDIA_NAMEKO_VENV is not set");
        return;
    };
    let _serial = crate::child::serial().await;
    let mut runner = Runner::new(basidia::connect(&url).await.unwrap());
    runner.add::<Traced>();
    let running = runner.start().await.unwrap();
    let peer_url = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::path::Path::new(&venv).join("bin/python"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../interop/otel/pika_traced_caller.py"
            ))
            .args([peer_url.as_str(), "t_traced", "trace_id", "[]"])
            .output()
            .expect("the virtualenv's python runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let trace_id = report["trace_id"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32);
    assert_eq!(
        report["reply"]["result"], trace_id,
        "the worker continues the caller's trace: {report}"
    );
    running.stop().await;
}
