//! Traces across processes: the sample services, each in a `basidia run` process of its own on
//! RabbitMQ or NATS, export to a foreign OTLP/HTTP receiver (Python, decoding with the
//! OpenTelemetry project's own protobuf classes). One request's spans must form one trace, every
//! span's parent the span that caused it, whatever process it ran in.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basidia_conformance::broker_url_from_env;
use common::*;
use serde_json::Value;

/// The receiver: a Python process printing each span it is sent as a JSON line.
struct Receiver {
    child: Child,
    out: Arc<Mutex<String>>,
    port: u16,
}

impl Receiver {
    fn start(venv: &Path) -> Receiver {
        let mut child = Command::new(venv.join("bin/python"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/peers/otlp_receiver.py"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the virtualenv's python runs");
        let out = collect(child.stdout.take().expect("piped"));
        let began = Instant::now();
        let port = loop {
            let text = out.lock().unwrap().clone();
            if let Some(port) = text
                .lines()
                .find_map(|l| l.strip_prefix("listening "))
                .and_then(|p| p.trim().parse().ok())
            {
                break port;
            }
            assert!(began.elapsed() < Duration::from_secs(30), "no receiver");
            std::thread::sleep(Duration::from_millis(50));
        };
        Receiver { child, out, port }
    }

    /// Everything received, spans and metric points alike.
    fn lines(&self) -> Vec<Value> {
        let text = self.out.lock().unwrap().clone();
        text.lines()
            .filter(|l| l.starts_with('{'))
            .map(json)
            .collect()
    }

    fn spans(&self) -> Vec<Value> {
        let mut lines = self.lines();
        lines.retain(|l| l.get("metric").is_none());
        lines
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `database_service.get_user(7)` from Python with pika, traced by the OpenTelemetry SDK
/// and its pika instrumentation; what the caller printed.
fn pika_call(venv: &Path, url: &str) -> Value {
    python_json(
        venv,
        "interop/otel/pika_traced_caller.py",
        &[url, "database_service", "get_user", "[7]"],
    )
}

/// The trace parent of a caller of the gateway, sampled.
const GATEWAY_CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A caller's trace parent with the sampled flag clear.
const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

/// Held by each test here: the example services must not meet another host's.
static EXAMPLES: Mutex<()> = Mutex::new(());

/// One service of the examples in a process of its own, exporting to `endpoint`.
fn host(dir: &Path, url: &str, service: &str, endpoint: &str) -> Background {
    let mut host = Background::start(
        basidia(dir)
            .arg("run")
            .arg(examples())
            .args(["-q", "--broker", url, "--service", service])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            // Spans leave in batches: a short delay keeps the test short.
            .env("OTEL_BSP_SCHEDULE_DELAY", "200"),
    );
    host.wait_for("serving", BUILD_TIMEOUT);
    host
}

fn find<'a>(spans: &'a [Value], name: &str, kind: &str, service: &str) -> Option<&'a Value> {
    spans
        .iter()
        .find(|s| s["name"] == name && s["kind"] == kind && s["service"] == service)
}

/// The span named `name` of `kind` that `service` exported as a child of `parent`.
fn child_of<'a>(
    spans: &'a [Value],
    parent: &Value,
    name: &str,
    kind: &str,
    service: &str,
) -> Option<&'a Value> {
    spans.iter().find(|s| {
        s["name"] == name
            && s["kind"] == kind
            && s["service"] == service
            && s["trace_id"] == parent["trace_id"]
            && s["parent_span_id"] == parent["span_id"]
    })
}

/// The chain from `root` down, one step a `(name, kind, service)`, each a child of the one
/// before: `None` until all of it has arrived.
fn chain<'a>(
    spans: &'a [Value],
    root: &'a Value,
    steps: &[(&str, &str, &str)],
) -> Option<Vec<&'a Value>> {
    let mut found = vec![root];
    for (name, kind, service) in steps {
        let next = child_of(spans, found.last()?, name, kind, service)?;
        found.push(next);
    }
    Some(found)
}

fn traces_across_processes(url_var: &str, system: &str) {
    let Some(url) = broker_url_from_env(url_var) else {
        return;
    };
    let Some(venv) = test_venv("the OTLP receiver (opentelemetry-proto)") else {
        return;
    };
    let _alone = EXAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let receiver = Receiver::start(&venv);
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Export headers from the configuration reach the receiver, and no log line.
    std::fs::write(
        dir.join("basidia.toml"),
        "[telemetry]\nheaders = { \"x-test-key\" = \"k-5e3a9\" }\n\
         [http.gateway]\nallow = [\"database_service.get_user\"]\n",
    )
    .unwrap();
    let mut hosts = vec![host(dir, &url, "database_service", &endpoint)];
    for service in ["user_service", "notification_service", "api_service"] {
        hosts.push(host(dir, &url, service, &endpoint));
    }
    let base = hosts.last().unwrap().http_base();

    let (status, body) = curl(&[&format!("{base}/users/7")]);
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_json(
        &format!("{base}/users"),
        r#"{"name": "Ida", "email": "ida@example.com"}"#,
    );
    assert_eq!(status, 201, "{body}");
    hosts[2].wait_for("to ida@example.com: Welcome, Ida!", Duration::from_secs(15));
    // Through the gateway, from a caller with a trace of its own: the call continues it.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("traceparent: {GATEWAY_CALLER}"),
        "-H",
        "content-type: application/json",
        "-d",
        "[7]",
        &format!("{base}/rpc/database_service/get_user"),
    ]);
    assert_eq!(status, 200, "{body}");
    // A user error answered 404: the server span records the status, not an error of its own.
    let (status, body) = curl(&[&format!("{base}/users/-1")]);
    assert_eq!(status, 404, "{body}");
    // A caller that decided against a trace: nothing of this request is exported, anywhere.
    let (status, body) = curl(&[
        "-H",
        &format!("traceparent: {UNSAMPLED}"),
        &format!("{base}/users/8"),
    ]);
    assert_eq!(status, 200, "{body}");
    // On RabbitMQ, a foreign caller traced by OpenTelemetry's own pika instrumentation.
    let pika = (system == "rabbitmq").then(|| pika_call(&venv, &url));
    // A graceful stop exports what is still buffered.
    let mut logs = String::new();
    for h in hosts {
        logs.push_str(&h.stderr());
        assert!(h.interrupt(Duration::from_secs(30)).success());
    }
    assert!(!logs.contains("k-5e3a9"), "an export header was logged");

    let get = [
        (
            "user_service/get_user_greeting",
            "SPAN_KIND_CLIENT",
            "api_service",
        ),
        (
            "user_service/get_user_greeting",
            "SPAN_KIND_SERVER",
            "user_service",
        ),
        (
            "database_service/get_user",
            "SPAN_KIND_CLIENT",
            "user_service",
        ),
        (
            "database_service/get_user",
            "SPAN_KIND_SERVER",
            "database_service",
        ),
    ];
    let event = "user_service.user.created";
    let (send, process) = (format!("send {event}"), format!("process {event}"));
    let post = [
        (
            "user_service/create_user",
            "SPAN_KIND_CLIENT",
            "api_service",
        ),
        (
            "user_service/create_user",
            "SPAN_KIND_SERVER",
            "user_service",
        ),
        (send.as_str(), "SPAN_KIND_PRODUCER", "user_service"),
        (
            process.as_str(),
            "SPAN_KIND_CONSUMER",
            "notification_service",
        ),
    ];
    let began = Instant::now();
    let (get_trace, post_trace, spans) = loop {
        let spans = receiver.spans();
        let roots = (
            spans
                .iter()
                .find(|s| {
                    s["name"] == "GET /users/{user_id}"
                        && s["kind"] == "SPAN_KIND_SERVER"
                        && s["attributes"]["http.response.status_code"] == 200
                })
                .cloned(),
            find(&spans, "POST /users", "SPAN_KIND_SERVER", "api_service").cloned(),
        );
        if let (Some(g), Some(p)) = roots {
            let complete = chain(&spans, &g, &get).is_some() && chain(&spans, &p, &post).is_some();
            if complete {
                break (g, p, spans);
            }
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "the traces did not arrive whole; received:\n{}",
            spans
                .iter()
                .map(|s| format!(
                    "{} {} {} {} <- {}",
                    s["service"], s["kind"], s["name"], s["span_id"], s["parent_span_id"]
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    let unsampled_trace = &UNSAMPLED[3..35];
    assert!(
        spans.iter().all(|s| s["trace_id"] != unsampled_trace),
        "a span of the unsampled request was exported"
    );
    // Nor did its hops start traces of their own: every span is in the trace of a request the
    // test made.
    let roots: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == "SPAN_KIND_SERVER" && s["service"] == "api_service")
        .collect();
    assert_eq!(roots.len(), 3, "GET 7, GET -1 and POST: {roots:?}");
    let mut traces: Vec<&Value> = roots.iter().map(|r| &r["trace_id"]).collect();
    if let Some(p) = &pika {
        traces.push(&p["trace_id"]);
    }
    let gateway_trace = Value::from(&GATEWAY_CALLER[3..35]);
    traces.push(&gateway_trace);
    for s in &spans {
        assert!(traces.contains(&&s["trace_id"]), "a trace of its own: {s}");
    }
    let gateway_call = spans
        .iter()
        .find(|s| {
            s["trace_id"] == gateway_trace
                && s["kind"] == "SPAN_KIND_CLIENT"
                && s["name"] == "database_service/get_user"
        })
        .expect("the gateway's call in its caller's trace");
    assert_eq!(gateway_call["parent_span_id"], &GATEWAY_CALLER[36..52]);
    assert_eq!(gateway_call["service"], "api_service");
    assert!(
        child_of(
            &spans,
            gateway_call,
            "database_service/get_user",
            "SPAN_KIND_SERVER",
            "database_service"
        )
        .is_some(),
        "the served call is the gateway call's child"
    );
    let missing = roots
        .iter()
        .find(|r| r["attributes"]["http.response.status_code"] == 404)
        .expect("the 404's span");
    assert_eq!(missing["status"], "STATUS_CODE_UNSET", "{missing}");
    // Its call to user_service failed: both ends of that call say so, with the error's type.
    let failed: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            s["trace_id"] == missing["trace_id"] && s["name"] == "user_service/get_user_greeting"
        })
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    for s in failed {
        assert_eq!(s["status"], "STATUS_CODE_ERROR", "{s}");
        assert_eq!(s["attributes"]["error.type"], "UserNotFound", "{s}");
    }
    // Each request began its trace at the edge, as no traceparent came with it.
    assert_eq!(get_trace["parent_span_id"], "", "{get_trace}");
    assert_eq!(post_trace["parent_span_id"], "");
    assert_ne!(get_trace["trace_id"], post_trace["trace_id"]);
    assert_eq!(get_trace["attributes"]["http.route"], "/users/{user_id}");
    assert_eq!(get_trace["attributes"]["http.request.method"], "GET");
    assert_eq!(get_trace["attributes"]["http.response.status_code"], 200);
    assert_eq!(post_trace["attributes"]["http.response.status_code"], 201);
    let get_chain = chain(&spans, &get_trace, &get).unwrap();
    for span in &get_chain[1..] {
        assert_eq!(span["attributes"]["rpc.system.name"], "basidia", "{span}");
        assert_eq!(span["attributes"]["rpc.method"], span["name"]);
        assert_eq!(span["status"], "STATUS_CODE_UNSET", "{span}");
    }
    let post_chain = chain(&spans, &post_trace, &post).unwrap();
    for span in &post_chain[3..] {
        let a = &span["attributes"];
        assert_eq!(a["messaging.system"], system, "{span}");
        assert_eq!(a["messaging.destination.name"], event);
    }
    assert_eq!(
        post_chain[3]["attributes"]["messaging.operation.type"],
        "send"
    );
    assert_eq!(
        post_chain[4]["attributes"]["messaging.operation.type"],
        "process"
    );
    // The log lines of a worker carry the trace id its spans were exported under.
    let welcome = logs
        .lines()
        .find(|l| l.contains("to ida@example.com: Welcome, Ida!"))
        .expect("the welcome is logged");
    let post_id = post_trace["trace_id"].as_str().unwrap();
    assert!(
        welcome.contains(&format!("trace_id=\"{post_id}\"")),
        "{post_id}: {welcome}"
    );
    // Every span was sent with the configured header, from four processes.
    assert!(spans.iter().all(|s| s["header"] == "k-5e3a9"));
    let pids: std::collections::HashSet<_> = spans.iter().map(|s| s["pid"].clone()).collect();
    assert!(pids.len() >= 4, "spans from {} processes", pids.len());

    if let Some(pika) = pika {
        // Basidia's server span is a child of the span the instrumentation sent the request in.
        let python_trace = pika["trace_id"].as_str().unwrap();
        let served = spans
            .iter()
            .find(|s| {
                s["name"] == "database_service/get_user"
                    && s["kind"] == "SPAN_KIND_SERVER"
                    && s["trace_id"] == python_trace
            })
            .unwrap_or_else(|| panic!("no server span in the caller's trace: {pika}"));
        let sent_in: Vec<&Value> = pika["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["span_id"] == served["parent_span_id"])
            .collect();
        assert_eq!(
            sent_in.len(),
            1,
            "parent {} of {pika}",
            served["parent_span_id"]
        );
        assert_eq!(pika["reply"]["result"]["name"], "User 7", "{pika}");
    }
    // The metrics, exported once more at each process's stop, count what was done, exactly.
    let points: Vec<Value> = receiver
        .lines()
        .into_iter()
        .filter(|l| l.get("metric").is_some())
        .collect();
    let last = |metric: &str, service: &str, attributes: Value| -> Value {
        points
            .iter()
            .rev()
            .find(|p| {
                p["metric"] == metric && p["service"] == service && p["attributes"] == attributes
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {metric} {attributes} from {service}"))
    };
    use serde_json::json;
    let handled = "basidia_entrypoint_handled_total";
    let served = last(
        handled,
        "api_service",
        json!({"service": "api_service", "entrypoint": "get_user", "kind": "http", "outcome": "success"}),
    );
    assert_eq!(
        (served["value"].as_f64(), &served["monotonic"]),
        (Some(2.0), &json!(true))
    );
    let greeted = last(
        handled,
        "user_service",
        json!({"service": "user_service", "entrypoint": "get_user_greeting", "kind": "rpc", "outcome": "success"}),
    );
    assert_eq!(greeted["value"].as_f64(), Some(2.0));
    let took = last(
        "basidia_entrypoint_duration_seconds",
        "notification_service",
        json!({"service": "notification_service", "entrypoint": "on_user_created", "kind": "event"}),
    );
    assert_eq!(
        (took["type"].as_str(), took["count"].as_u64()),
        (Some("histogram"), Some(1))
    );
    let buckets = took["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), took["bounds"].as_array().unwrap().len() + 1);
    assert!(points.iter().all(|p| p["header"] == "k-5e3a9"));
}

#[test]
fn one_trace_per_request_across_processes_on_rabbitmq() {
    traces_across_processes("BASIDIA_TEST_AMQP_URL", "rabbitmq");
}

#[test]
fn one_trace_per_request_across_processes_on_nats() {
    traces_across_processes("BASIDIA_TEST_NATS_URL", "nats");
}
