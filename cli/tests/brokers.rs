//! `basidia call`, `basidia emit`, `basidia shell --exec` and curl on the seed's HTTP routes
//! against RabbitMQ and NATS, with the sample services running in the background under
//! `basidia run`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use basidia_conformance::broker_url_from_env;
use common::*;

fn call(dir: &Path, url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = output(
        basidia(dir)
            .args(["--broker", url, "--timeout", "10s", "call"])
            .args(args),
    );
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

/// Held by every test here that hosts the example services: two hosts on one broker would
/// share each other's calls (nextest keeps these tests apart too, in a group of their own).
static EXAMPLES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exercise(url: &str, lists_services: bool) {
    let _alone = EXAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("basidia.toml"), AUTH_CONFIG).unwrap();
    let mut services = Background::start(
        basidia(dir)
            .arg("run")
            .arg(examples())
            .args(["-q", "--broker", url])
            .env("BASIDIA_HTTP__BODY_LIMIT", "65536"),
    );
    services.wait_for("serving", BUILD_TIMEOUT);

    // The seed's HTTP routes, from curl, through the services over this broker.
    let base = services.http_base();
    let (status, body) = curl(&[&format!("{base}/users/7")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"message":"Hello, User 7!"}"#);
    let (status, body) = post_json(
        &format!("{base}/users"),
        r#"{"name": "Hal", "email": "hal@example.com"}"#,
    );
    assert_eq!(status, 201, "{body}");
    services.wait_for("to hal@example.com: Welcome, Hal!", Duration::from_secs(15));
    let (status, body) = curl(&[&format!("{base}/users/-1")]);
    assert_eq!(status, 404, "a user error by its declared status: {body}");
    let (status, body) = curl(&[&format!("{base}/health/ready")]);
    assert_eq!(status, 200, "{body}");
    check_edge_protections(&base, dir);
    let (status, body) = curl(&[&format!("{base}/openapi.json")]);
    assert_eq!(status, 200);
    validate_openapi(dir, &body);

    // Positional and keyword arguments; the result is JSON on stdout.
    let (code, stdout, stderr) = call(dir, url, &["greeting_service.hello", r#"["World"]"#]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), r#""Hello, World!""#);
    let (code, stdout, _) = call(
        dir,
        url,
        &["greeting_service.goodbye", r#"{"name": "Ann"}"#],
    );
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), r#""Goodbye, Ann!""#);
    let (code, stdout, _) = call(dir, url, &["database_service.get_user", "[3]"]);
    assert_eq!(code, Some(0));
    let user: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(user, serde_json::json!({"id": 3, "name": "User 3"}));

    // Errors go to stderr with a non-zero exit.
    let (code, stdout, stderr) = call(dir, url, &["database_service.get_user", "[-1]"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("error: UserNotFound: no user with id -1"),
        "{stderr}"
    );
    let (code, _, stderr) = call(dir, url, &["greeting_service.hello", r#"[1, 2]"#]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("IncorrectSignature"), "{stderr}");
    let (code, _, stderr) = call(dir, url, &["greeting_service.nope", "[]"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("MethodNotFound"), "{stderr}");
    let (code, _, stderr) = call(dir, url, &["no_such_service.hello", "[]"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(r#"unknown service "no_such_service""#),
        "{stderr}"
    );
    let (code, _, stderr) = call(dir, url, &["greeting_service.hello", "[unquoted]"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    let (code, _, stderr) = call(dir, url, &["greeting_service"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("expected service.method"), "{stderr}");

    // An event reaches its handler.
    let out = output(
        basidia(dir)
            .args(["--broker", url, "emit", "user_service", "user.created"])
            .arg(r#"{"id": 41, "name": "Zed", "email": "zed@example.com"}"#),
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let start = Instant::now();
    loop {
        let (code, stdout, stderr) = call(dir, url, &["notification_service.sent"]);
        assert_eq!(code, Some(0), "{stderr}");
        if stdout.contains("to zed@example.com: Welcome, Zed!") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not handled: {stdout}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = output(basidia(dir).args([
        "--broker",
        url,
        "emit",
        "user_service",
        "user.created",
        "{oops",
    ]));
    assert_eq!(out.status.code(), Some(2));

    // The shell against the same broker.
    let out = output(basidia(dir).args(["--broker", url, "shell"]).args([
        "--exec",
        r#"greeting_service.hello("shell")"#,
        "--exec",
        "services",
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("Hello, shell!\n"), "{stdout}");
    if lists_services {
        // Other tests' services on the same broker may be listed between them.
        for name in [
            "database_service",
            "greeting_service",
            "notification_service",
            "user_service",
        ] {
            assert!(stdout.lines().any(|l| l == name), "{name} in {stdout}");
        }
    } else {
        // RabbitMQ cannot list them; the shell says so and shows those it has met.
        assert!(stdout.contains("greeting_service"), "{stdout}");
        assert!(stdout.contains("cannot list services"), "{stdout}");
    }

    let status = services.interrupt(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    // With the services gone, a call fails clearly: at once where the broker knows nothing
    // serves it, at the deadline where RabbitMQ keeps the durable queue for a later instance.
    let out = output(
        basidia(dir)
            .args([
                "--broker",
                url,
                "--timeout",
                "2s",
                "call",
                "greeting_service.hello",
            ])
            .arg(r#"["x"]"#),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown service") || stderr.contains("timed out after 2s"),
        "{stderr}"
    );
}

#[test]
fn call_emit_and_shell_over_rabbitmq() {
    if let Some(url) = broker_url_from_env("BASIDIA_TEST_AMQP_URL") {
        exercise(&url, false);
    }
}

#[test]
fn call_emit_and_shell_over_nats() {
    if let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") {
        exercise(&url, true);
    }
}

#[test]
fn an_unreachable_broker_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out =
        output(basidia(tmp.path()).args(["--broker", "nats://127.0.0.1:1", "call", "a.b", "[]"]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect to nats://127.0.0.1:1"),
        "{stderr}"
    );
}

/// `/metrics` after known traffic over NATS, read by prometheus-client's parser: the counts
/// are exactly the traffic's, and 200 requests to random method names add no series.
#[test]
fn metrics_count_exactly_and_peers_add_no_series() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let Some(venv) = test_venv("prometheus-client") else {
        return;
    };
    let _alone = EXAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut services = Background::start(
        basidia(tmp.path())
            .arg("run")
            .arg(examples())
            .args(["-q", "--broker", &url]),
    );
    services.wait_for("serving", BUILD_TIMEOUT);
    let base = services.http_base();
    for _ in 0..3 {
        assert_eq!(curl(&[&format!("{base}/users/7")]).0, 200);
    }
    assert_eq!(curl(&[&format!("{base}/users/-1")]).0, 404);

    let metrics = format!("{base}/metrics");
    let report = python_json(
        &venv,
        "cli/tests/peers/metrics.py",
        &[url.as_str(), &metrics, "greeting_service", "200"],
    );
    assert_eq!(
        report["new_series"],
        serde_json::json!([]),
        "the flood added series"
    );
    let samples = report["samples"].as_array().unwrap();
    let value = |name: &str, labels: serde_json::Value| -> f64 {
        samples
            .iter()
            .find(|s| s["name"] == name && s["labels"] == labels)
            .and_then(|s| s["value"].as_f64())
            .unwrap_or_else(|| panic!("no {name} {labels}"))
    };
    use serde_json::json;
    let handled = "basidia_entrypoint_handled_total";
    let ep = |service: &str, entrypoint: &str, kind: &str, outcome: &str| json!({"service": service, "entrypoint": entrypoint, "kind": kind, "outcome": outcome});
    assert_eq!(
        value(handled, ep("api_service", "get_user", "http", "success")),
        3.0
    );
    assert_eq!(
        value(
            handled,
            ep("api_service", "get_user", "http", "handler_error")
        ),
        1.0
    );
    assert_eq!(
        value(
            handled,
            ep("user_service", "get_user_greeting", "rpc", "success")
        ),
        3.0
    );
    assert_eq!(
        value(
            handled,
            ep("database_service", "get_user", "rpc", "success")
        ),
        3.0
    );
    assert_eq!(
        value(
            "basidia_entrypoint_duration_seconds_count",
            json!({"service": "api_service", "entrypoint": "get_user", "kind": "http"})
        ),
        4.0
    );
    assert_eq!(
        value(
            "basidia_client_calls_total",
            json!({"service": "user_service", "method": "get_user_greeting", "outcome": "success"})
        ),
        3.0
    );
    assert_eq!(
        value(
            "basidia_http_requests_total",
            json!({"method": "GET", "route": "/users/{user_id}", "status": "200"})
        ),
        3.0
    );
    assert_eq!(
        value(
            "basidia_http_requests_total",
            json!({"method": "GET", "route": "/users/{user_id}", "status": "404"})
        ),
        1.0
    );
    assert_eq!(
        value(
            "basidia_unknown_method_requests_total",
            json!({"service": "greeting_service"})
        ),
        200.0
    );
    assert_eq!(value("basidia_broker_connected", json!({})), 1.0);
    assert_eq!(
        value(
            "basidia_workers_in_flight",
            json!({"service": "greeting_service"})
        ),
        0.0
    );
    assert!(
        value(
            "basidia_workers_max",
            json!({"service": "greeting_service"})
        ) > 0.0
    );
    assert!(
        !samples
            .iter()
            .any(|s| s["labels"].to_string().contains("flood_")),
        "a method name of the flood became a label"
    );
    let status = services.interrupt(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

/// The `greeting_service` instances `basidia status --json` lists on `url`, by process id.
fn greeting_pids(dir: &Path, url: &str) -> Vec<u64> {
    let out = output(basidia(dir).args(["--broker", url, "status", "--json"]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let all = json(&stdout);
    let mut pids: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["service"] == "greeting_service")
        .map(|i| {
            assert!(i["entrypoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e == "hello"));
            assert!(!i["host"].as_str().unwrap().is_empty() && i["started_ms"].as_i64() > Some(0));
            i["pid"].as_u64().unwrap()
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// `basidia status` against two hosts lists both; once one stops it is gone from the next
/// answer: on NATS it no longer answers the services API, on RabbitMQ its status queue went
/// with its connection.
fn status_over(url: &str) {
    let _alone = EXAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let start = || {
        let mut host = Background::start(basidia(dir).arg("run").arg(examples()).args([
            "-q",
            "--no-http",
            "--broker",
            url,
        ]));
        host.wait_for("serving", BUILD_TIMEOUT);
        host
    };
    let first = start();
    let second = start();
    let both = greeting_pids(dir, url);
    assert_eq!(both.len(), 2, "two instances: {both:?}");

    let out = output(basidia(dir).args(["--broker", url, "status"]));
    let (table, _) = text(&out);
    assert!(table.starts_with("SERVICE"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("greeting_service")),
        "{table}"
    );

    // --watch redraws until Ctrl-C, then exits 0.
    let watching = basidia(dir)
        .args(["--broker", url, "status", "--watch"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("basidia runs");
    std::thread::sleep(Duration::from_secs(7));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watching.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal");
    let watched = watching.wait_with_output().expect("it ends");
    let (screens, stderr) = text(&watched);
    assert!(watched.status.success(), "{stderr}");
    assert!(
        screens.matches("\x1b[2J").count() >= 2,
        "redrawn: {screens:?}"
    );
    assert!(screens.contains("greeting_service"), "{screens:?}");

    let status = second.interrupt(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let left = greeting_pids(dir, url);
    assert_eq!(
        left.len(),
        1,
        "one instance once the other stopped: {left:?}"
    );
    assert!(both.contains(&left[0]));
    let status = first.interrupt(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

#[test]
fn status_lists_every_instance_and_drops_a_stopped_one_on_nats() {
    if let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") {
        status_over(&url);
    }
}

#[test]
fn status_lists_every_instance_and_drops_a_stopped_one_on_rabbitmq() {
    if let Some(url) = broker_url_from_env("BASIDIA_TEST_AMQP_URL") {
        status_over(&url);
    }
}
