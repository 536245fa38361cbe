//! The HTTP edge of `basidia run examples/services` on the memory broker, as a client sees it:
//! curl against the seed's routes, errors, limits and health, then Ctrl-C.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// The trace the test's `POST /users` belongs to.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// `[log] format = "json"`: every line the host logs is a JSON object, every line a worker
/// writes names its service, entrypoint, call id and trace id, and the welcome written by
/// notification_service two hops after `POST /users` carries that request's trace id.
fn check_json_logs(stderr: &str) {
    let mut worker_lines = 0;
    let mut welcome = None;
    for line in stderr.lines().filter(|l| !l.starts_with("basidia: ")) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if v["span"]["name"] != "worker" {
            continue;
        }
        worker_lines += 1;
        for key in ["service", "entrypoint", "call_id", "trace_id"] {
            let value = v["span"][key].as_str().unwrap_or_default();
            assert!(!value.is_empty(), "{key} in {line}");
        }
        assert_eq!(v["span"]["trace_id"].as_str().unwrap().len(), 32, "{line}");
        if v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Welcome, Zed!"))
        {
            welcome = Some(v);
        }
    }
    assert!(worker_lines > 0, "no line from a worker in:\n{stderr}");
    let welcome = welcome.expect("the welcome line");
    assert_eq!(welcome["span"]["service"], "notification_service");
    assert_eq!(welcome["span"]["trace_id"], TRACE_ID, "{welcome}");
    assert!(
        !stderr.contains("Bearer ") && !stderr.contains(&jwt(&["admin"])[..20]),
        "no token in the log"
    );
}

#[test]
fn the_seed_routes_errors_limits_and_health_over_a_socket() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("basidia.toml"),
        format!("[http.gateway]\nallow = [\"greeting_service.hello\", \"nobody.*\"]\ntimeout = \"5s\"\n\n[http.cors]\nallow_origins = [\"https://app.example.com\"]\n\n[log]\nformat = \"json\"\n\n{AUTH_CONFIG}"),
    )
    .unwrap();
    let mut host = Background::start(
        basidia(tmp.path())
            .arg("run")
            .arg(examples())
            .arg("-q")
            .env("BASIDIA_HTTP__ADDRESS", "127.0.0.1:0")
            .env("BASIDIA_HTTP__BODY_LIMIT", "65536"),
    );
    host.wait_for("basidia: HTTP on http://", BUILD_TIMEOUT);
    host.wait_for("Ctrl-C stops", Duration::from_secs(30));
    let base = host.http_base();
    let url = |path: &str| format!("{base}{path}");

    let (status, body) = curl(&[&url("/users/7")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"message": "Hello, User 7!"})
    );

    // With a trace of the caller's, which the workers it leads to continue.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        &format!("traceparent: 00-{TRACE_ID}-00f067aa0ba902b7-01"),
        "-d",
        r#"{"name": "Zed", "email": "zed@example.com"}"#,
        &url("/users"),
    ]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["name"], "Zed");
    // notification_service heard user.created.
    host.wait_for("to zed@example.com: Welcome, Zed!", Duration::from_secs(10));

    // HTTP/2 too, on the same port (cleartext, with prior knowledge).
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--http2-prior-knowledge",
        ])
        .arg(url("/users/7"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");

    let (status, body) = curl(&[&url("/users/0")]);
    assert_eq!(status, 404, "a user that does not exist: {body}");
    assert_eq!(json(&body)["exc_type"], "UserNotFound");
    let (status, _) = curl(&[&url("/users/abc")]);
    assert_eq!(status, 400);
    let (status, body) = curl(&[&url("/no/such/route")]);
    assert_eq!(status, 404);
    assert_eq!(json(&body)["exc_type"], "MethodNotFound");
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name": 1}"#,
        &url("/users"),
    ]);
    assert_eq!(status, 400, "{body}");
    let big = format!(r#"{{"name": "{}", "email": "x"}}"#, "x".repeat(100_000));
    let (status, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &big,
        &url("/users"),
    ]);
    assert_eq!(status, 413);
    let (status, body) = curl(&["-A", "probe/2", &url("/whoami")]);
    assert_eq!((status, body.as_str()), (200, "probe/2"));
    check_edge_protections(&base, tmp.path());

    // The gateway, for what its allow-list names only.
    let gateway = |path: &str, body: &str| post_json(&url(path), body);
    let (status, body) = gateway("/rpc/greeting_service/hello", r#"["World"]"#);
    assert_eq!((status, body.as_str()), (200, r#""Hello, World!""#));
    let (status, body) = gateway("/rpc/greeting_service/hello", r#"{"name": "Ann"}"#);
    assert_eq!((status, body.as_str()), (200, r#""Hello, Ann!""#));
    let (status, _) = gateway("/rpc/greeting_service/goodbye", r#"["World"]"#);
    assert_eq!(status, 404, "not in the allow-list");
    let (status, body) = gateway("/rpc/nobody/anything", "[]");
    assert_eq!(status, 503, "allowed, but nothing serves it: {body}");
    assert_eq!(json(&body)["exc_type"], "UnknownService");

    // A browser's preflight from an allowed origin, and from another.
    let preflight = |origin: &str| {
        let out = Command::new("curl")
            .args(["-s", "-i", "-X", "OPTIONS", "-H"])
            .arg(format!("Origin: {origin}"))
            .args(["-H", "Access-Control-Request-Method: POST", "-H"])
            .arg("Access-Control-Request-Headers: content-type")
            .arg(url("/users"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    let allowed = preflight("https://app.example.com");
    assert!(allowed.starts_with("http/1.1 200"), "{allowed}");
    assert!(
        allowed.contains("access-control-allow-origin: https://app.example.com"),
        "{allowed}"
    );
    assert!(!preflight("https://elsewhere.example.com").contains("access-control-allow-origin"));

    // The OpenAPI document, read by a real validator.
    let (status, body) = curl(&[&url("/openapi.json")]);
    assert_eq!(status, 200);
    let doc = json(&body);
    assert_eq!(doc["openapi"], "3.1.0");
    let get_user = &doc["paths"]["/users/{user_id}"]["get"];
    assert_eq!(get_user["parameters"][0]["name"], "user_id");
    assert_eq!(get_user["parameters"][0]["schema"]["type"], "integer");
    // Full schemas for the types that derive schemars::JsonSchema.
    let created = &doc["paths"]["/users"]["post"];
    let body_schema = &created["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body_schema["type"], "object", "{body_schema}");
    assert_eq!(body_schema["properties"]["email"]["type"], "string");
    assert_eq!(
        body_schema["required"],
        serde_json::json!(["name", "email"])
    );
    let answer = &created["responses"]["2XX"]["content"]["application/json"]["schema"];
    assert_eq!(answer["properties"]["id"]["type"], "integer", "{answer}");
    let greeting = &get_user["responses"]["2XX"]["content"]["application/json"]["schema"];
    assert_eq!(greeting["properties"]["message"]["type"], "string");
    assert!(
        doc["paths"]["/rpc/greeting_service/hello"]["post"].is_object(),
        "the gateway's methods"
    );
    assert!(
        doc["paths"]["/rpc/greeting_service/goodbye"].is_null(),
        "only what it allows"
    );
    validate_openapi(tmp.path(), &body);

    let (status, body) = curl(&[&url("/health/live")]);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["status"], "UP");
    let (status, body) = curl(&[&url("/health/ready")]);
    assert_eq!(status, 200, "{body}");
    let ready = json(&body);
    assert_eq!(ready["components"]["broker"]["status"], "UP");
    assert_eq!(
        ready["components"]["services"]["components"]["api_service"]["status"],
        "UP"
    );

    check_json_logs(&host.stderr());

    let status = host.interrupt(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    // Stopped means stopped: nothing listens any more.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", &url("/health/live")])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the server still answers after the stop"
    );
}

/// A self-signed certificate for `localhost` made by openssl, as an operator would make one:
/// the certificate's and the key's paths.
fn openssl_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[test]
fn https_from_the_configuration_with_http2_and_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_certificate(tmp.path());
    let config = |key: &std::path::Path| {
        format!(
            "[http.tls]\ncert_file = {:?}\nkey_file = {:?}\nhandshake_timeout = \"2s\"\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    std::fs::write(tmp.path().join("basidia.toml"), config(&key)).unwrap();
    let mut host = Background::start(
        basidia(tmp.path())
            .arg("run")
            .arg(examples())
            .arg("-q")
            .env("BASIDIA_HTTP__ADDRESS", "127.0.0.1:0"),
    );
    host.wait_for("basidia: HTTP on https://", BUILD_TIMEOUT);
    host.wait_for("Ctrl-C stops", Duration::from_secs(30));
    let base = host.http_base();
    let port = base.rsplit(':').next().unwrap().to_string();

    // A client that connects and never says a word holds up no one.
    let _silent = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();

    let cacert = cert.display().to_string();
    let url = format!("https://localhost:{port}/users/7");
    let resolve = format!("localhost:{port}:127.0.0.1");
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "20", "--cacert", &cacert])
            .args([
                "--resolve",
                &resolve,
                flag,
                "-w",
                "\n%{http_code} %{http_version}",
            ])
            .arg(&url)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.ends_with(&format!("\n200 {version}")),
            "{flag}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.starts_with(r#"{"message":"Hello, User 7!"}"#),
            "{text}"
        );
    }

    // Plain HTTP on the HTTPS port gets no answer, and the server goes on.
    let (status, _) = curl(&[&format!("http://127.0.0.1:{port}/health/live")]);
    assert_eq!(status, 0, "plain HTTP is not served on the HTTPS port");
    let (status, body) = curl(&["--cacert", &cacert, "--resolve", &resolve, &url]);
    assert_eq!(status, 200, "{body}");

    let status = host.interrupt(Duration::from_secs(30));
    assert!(status.success(), "{status}");

    // A key that is not there: the process says which file and why, and ends.
    std::fs::write(
        tmp.path().join("basidia.toml"),
        config(&tmp.path().join("missing.pem")),
    )
    .unwrap();
    let out = output(
        basidia(tmp.path())
            .arg("run")
            .arg(examples())
            .arg("-q")
            .env("BASIDIA_HTTP__ADDRESS", "127.0.0.1:0"),
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("TLS:") && stderr.contains("missing.pem"),
        "{stderr}"
    );
}
