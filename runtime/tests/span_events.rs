//! A retried and a dead-lettered event as the exported `process` spans show them: with their
//! handler's error as the span's status and `error.type`, and what became of the event as an
//! event on the span. The spans go over OTLP/HTTP to a receiver in this test that decodes them
//! with the OpenTelemetry project's protobuf messages (opentelemetry-proto).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basidia::prelude::*;
use basidia::{ErrorKind, Format};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

/// Fails the first delivery of every event, then handles it.
#[service]
pub struct Flaky {
    #[inject(default)]
    seen: Mutex<u32>,
}

#[service(name = "t_flaky")]
impl Flaky {
    #[event_handler("t_source", "retried")]
    async fn on_retried(&self, _n: u32) -> Result<(), RpcError> {
        let mut seen = self.seen.lock().unwrap();
        *seen += 1;
        if *seen == 1 {
            return Err(RpcError::Remote(RemoteError::new(
                ErrorKind::Other,
                "not yet",
            )));
        }
        Ok(())
    }

    #[event_handler("t_source", "doomed")]
    async fn on_doomed(&self, _n: u32) -> Result<(), RpcError> {
        Err(RpcError::Remote(RemoteError::new(
            ErrorKind::Other,
            "never",
        )))
    }
}

/// A one-request-at-a-time OTLP/HTTP receiver on a free port: every span it is sent.
fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&spans);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut path) = (0usize, String::new());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line.starts_with("POST ") {
                    path = line.split(' ').nth(1).unwrap_or("").to_string();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            if path == "/v1/traces" {
                let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                let mut kept = kept.lock().unwrap();
                for r in request.resource_spans {
                    for s in r.scope_spans {
                        kept.extend(s.spans);
                    }
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, spans)
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            other => format!("{other:?}"),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_dead_letters_are_events_of_the_process_span() {
    let (endpoint, spans) = receiver();
    let config = basidia_runtime::telemetry::TelemetryConfig {
        enabled: Some(true),
        endpoint: Some(endpoint),
        metrics: false,
        ..Default::default()
    };
    let log = basidia_runtime::logging::LogConfig::default();
    basidia_runtime::telemetry::install(true, &log, &config, "t_flaky").unwrap();

    let broker: basidia::SharedBroker = Arc::new(basidia::MemoryBroker::new());
    let mut settings = basidia::RunnerConfig::default();
    settings.defaults.event_retry_delay = Duration::from_millis(10);
    settings.defaults.event_max_deliveries = 2;
    let mut runner = Runner::new(broker.clone()).with_config(settings);
    runner.add::<Flaky>();
    let running = runner.start().await.unwrap();
    let mut observed = running.observe();
    let events = EventDispatcher::new(broker.clone(), "t_source", Format::MsgPack);
    events.dispatch("retried", &1u32).await.unwrap();
    events.dispatch("doomed", &2u32).await.unwrap();
    // Two runs of each: the retried one fails then succeeds, the doomed one fails twice.
    let mut runs = 0;
    while runs < 4 {
        tokio::time::timeout(Duration::from_secs(10), observed.next())
            .await
            .expect("the handlers run")
            .expect("the services run");
        runs += 1;
    }
    running.stop().await;
    basidia_runtime::telemetry::flush().await;

    let spans = spans.lock().unwrap().clone();
    let process = |handler: &str| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| attribute(s, "messaging.consumer.group.name").as_deref() == Some(handler))
            .cloned()
            .collect()
    };
    let event_names = |s: &Span| s.events.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    let retried = process("t_flaky.on_retried");
    assert_eq!(retried.len(), 2, "two runs: {retried:?}");
    let failed = retried
        .iter()
        .find(|s| s.status.as_ref().is_some_and(|st| st.code == 2))
        .expect("the failed run's span has the error status");
    assert_eq!(
        attribute(failed, "error.type").as_deref(),
        Some("HandlerError")
    );
    assert!(
        event_names(failed).iter().any(|e| e.contains("retrying")),
        "{:?}",
        event_names(failed)
    );
    assert_eq!(failed.name, "process t_source.retried");
    let doomed = process("t_flaky.on_doomed");
    assert_eq!(doomed.len(), 2, "{doomed:?}");
    assert!(
        doomed
            .iter()
            .any(|s| event_names(s).iter().any(|e| e.contains("dead-lettered"))),
        "{:?}",
        doomed.iter().map(event_names).collect::<Vec<_>>()
    );
}
