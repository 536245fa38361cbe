//! `--telemetry RATIO`: the whole run with traces exported, sampled at RATIO, to an OTLP/HTTP
//! sink in this process that counts what it is sent and answers 200, as a collector would. The
//! export (batching, encoding, the HTTP posts) is then part of each figure; comparing the CPU per
//! call with a run without the flag gives the cost of tracing per call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;

/// Bytes and posts the sink received.
#[derive(Default)]
pub struct Sink {
    posts: AtomicU64,
    bytes: AtomicU64,
}

impl Sink {
    /// Posts and bytes so far.
    pub fn received(&self) -> (u64, u64) {
        (
            self.posts.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Starts the sink and the exporter; traces are sampled at `ratio`.
pub async fn start(ratio: f64) -> anyhow::Result<Arc<Sink>> {
    let sink = Arc::new(Sink::default());
    let counted = Arc::clone(&sink);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counted = Arc::clone(&counted);
            async move {
                counted.posts.fetch_add(1, Ordering::Relaxed);
                counted
                    .bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = basidia_runtime::telemetry::TelemetryConfig {
        enabled: Some(true),
        endpoint: Some(format!("http://{address}")),
        sample_ratio: Some(ratio),
        ..Default::default()
    };
    let log = basidia_runtime::logging::LogConfig::default();
    basidia_runtime::telemetry::install(true, &log, &config, "basidia-bench")
        .context("starting the trace exporter")?;
    Ok(sink)
}
