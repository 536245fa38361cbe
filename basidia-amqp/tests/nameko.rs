//! Interoperability with a real Python Nameko 2.14.1 over RabbitMQ: calls both ways, events both
//! ways, and context data (auth_token, call_id_stack) across the hops.
//!
//! Needs `BASIDIA_TEST_AMQP_URL` and `BASIDIA_NAMEKO_VENV` (a virtualenv made by
//! `.ci/nameko-venv.sh`); CI sets both. Without them the test skips with a message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basidia::prelude::*;
use basidia::{ErrorKind, Format};
use basidia_core::envelope::NoKwargs;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

fn env_or_skip(name: &str) -> Option<String> {
    basidia_conformance::broker_url_from_env(name)
}

/// What the Rust service saw.
#[derive(Debug, Serialize, Deserialize)]
pub struct Seen {
    auth_token: Option<String>,
    call_id_stack: Vec<String>,
}

static PONGS: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());

#[service]
struct RustGreeter;

#[service(name = "rust_greeter")]
impl RustGreeter {
    #[rpc]
    async fn hello(&self, name: String) -> String {
        format!("Hello, {name}!")
    }

    #[rpc]
    async fn whoami(&self) -> Seen {
        let ctx = Context::current().unwrap();
        Seen {
            auth_token: ctx.auth_token().map(String::from),
            call_id_stack: ctx.call_id_stack.clone(),
        }
    }

    #[event_handler("nameko_peer", "pong")]
    async fn on_pong(&self, payload: String) {
        let token = Context::current().and_then(|c| c.auth_token().map(String::from));
        PONGS.lock().unwrap().push((payload, token));
    }
}

struct Peer {
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/nameko")
}

fn amqp_uri_for_python(url: &str) -> String {
    // py-amqp wants the vhost unescaped and the pyamqp scheme.
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    format!(
        "pyamqp://{}",
        rest.replace("/%2f", "/").replace("/%2F", "/")
    )
}

fn python_client(venv: &str, url: &str, args: &[&str]) -> (i32, Value) {
    let out = Command::new(Path::new(venv).join("bin/python"))
        .arg("client.py")
        .args(args)
        .current_dir(interop_dir())
        .env("AMQP_URI", amqp_uri_for_python(url))
        .output()
        .expect("the Python client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "client.py {args:?} printed {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basidia_and_nameko_call_each_other_and_exchange_events() {
    let Some(url) = env_or_skip("BASIDIA_TEST_AMQP_URL") else {
        return;
    };
    let Some(venv) = env_or_skip("BASIDIA_NAMEKO_VENV") else {
        return;
    };

    let server = basidia::connect(&url).await.expect("RabbitMQ answers");
    let mut runner = Runner::new(server);
    runner.add::<RustGreeter>();
    let running = runner.start().await.unwrap();

    let _peer = Peer {
        child: Command::new(Path::new(&venv).join("bin/nameko"))
            .args(["run", "--config", "config.yaml", "peer"])
            .current_dir(interop_dir())
            .env("AMQP_URI", amqp_uri_for_python(&url))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nameko runs"),
    };
    // Nameko speaks JSON by default; a default-configured Nameko drops msgpack requests.
    let proxy = RpcProxy::new(basidia::connect(&url).await.unwrap())
        .with_format(Format::Json)
        .with_timeout(Duration::from_secs(10));
    let started = Instant::now();
    loop {
        match proxy
            .call::<String, _, _>("nameko_peer", "hello", &("Bob",), &NoKwargs)
            .await
        {
            Ok(s) => {
                assert_eq!(s, "Hello, Bob!");
                break;
            }
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the Nameko peer did not come up: {e}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }

    // Nameko calls Basidia, in JSON and in msgpack, with an auth token.
    let (code, v) = python_client(&venv, &url, &["rust_greeter", "hello", r#"["Ann"]"#]);
    assert_eq!((code, v), (0, json!("Hello, Ann!")));
    let (code, v) = python_client(
        &venv,
        &url,
        &[
            "--msgpack",
            "rust_greeter",
            "hello",
            r#"{"args": [], "kwargs": {"name": "Max"}}"#,
        ],
    );
    assert_eq!((code, v), (0, json!("Hello, Max!")));
    let (code, v) = python_client(
        &venv,
        &url,
        &["rust_greeter", "whoami", "[]", "--auth-token", "py-tok"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["auth_token"], "py-tok");
    assert_eq!(v["call_id_stack"].as_array().unwrap().len(), 2, "{v}");
    // A Basidia error reaches Nameko as a RemoteError it understands.
    let (code, v) = python_client(&venv, &url, &["rust_greeter", "nope", "[]"]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["exc_type"], "MethodNotFound");

    // Basidia calls Nameko, with context.
    let ctx = Arc::new(Context::new().with("auth_token", "rs-tok"));
    let seen: Value = Context::scope(
        ctx.clone(),
        proxy.call("nameko_peer", "whoami", &[(); 0], &NoKwargs),
    )
    .await
    .unwrap();
    assert_eq!(seen["auth_token"], "rs-tok");
    let err = proxy
        .call::<Value, _, _>("nameko_peer", "fail", &[(); 0], &NoKwargs)
        .await
        .unwrap_err();
    let remote = err.remote().expect("a remote error");
    assert_eq!(remote.exc_type, "PeerError");
    assert_eq!(remote.value, "broken on purpose");
    let err = proxy
        .call::<Value, _, _>("nameko_peer", "nope", &[(); 0], &NoKwargs)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MethodNotFound);

    // Basidia -> Nameko -> Basidia: the context flows through the Python hop.
    let hop: String = proxy
        .call("nameko_peer", "call_rust", &("Cy",), &NoKwargs)
        .await
        .unwrap();
    assert_eq!(hop, "Hello, Cy!");
    let seen: Seen = Context::scope(
        ctx.clone(),
        proxy.call("nameko_peer", "call_rust_whoami", &[(); 0], &NoKwargs),
    )
    .await
    .unwrap();
    assert_eq!(seen.auth_token.as_deref(), Some("rs-tok"));
    assert_eq!(seen.call_id_stack.len(), 2, "{:?}", seen.call_id_stack);
    assert!(seen.call_id_stack[0].starts_with("nameko_peer.call_rust_whoami."));
    assert!(seen.call_id_stack[1].starts_with("rust_greeter.whoami."));

    // Events, Basidia -> Nameko.
    let marker = format!("ping-{}", uuid::Uuid::new_v4());
    let dispatcher = basidia::EventDispatcher::new(
        basidia::connect(&url).await.unwrap(),
        "rust_source",
        Format::Json,
    );
    Context::scope(ctx.clone(), dispatcher.dispatch("ping", &marker))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<(String, Option<String>)> = proxy
            .call("nameko_peer", "received", &[(); 0], &NoKwargs)
            .await
            .unwrap();
        if got
            .iter()
            .any(|(p, t)| *p == marker && t.as_deref() == Some("rs-tok"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Nameko did not receive {marker}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Events, Nameko -> Basidia.
    let marker = format!("pong-{}", uuid::Uuid::new_v4());
    Context::scope(
        ctx.clone(),
        proxy.call::<Value, _, _>("nameko_peer", "emit", &(marker.as_str(),), &NoKwargs),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hit = PONGS
            .lock()
            .unwrap()
            .iter()
            .any(|(p, t)| *p == marker && t.as_deref() == Some("rs-tok"));
        if hit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Basidia did not receive {marker}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;
}
