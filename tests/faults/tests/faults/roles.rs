//! Roles against peers that write their own context: raw AMQP and NATS clients (lapin and
//! async-nats here, pika and nats-py from the test virtualenv) send a request for a method that
//! needs the `admin` role, claiming it with a token that is unsigned, expired, signed with the
//! wrong secret, or granting another role, and with a `user_id` of their choosing. Only the
//! request with a valid admin token runs, and the method sees the token's subject, never the
//! claimed user id.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use basidia::auth::{JwtConfig, JwtVerifier};
use basidia::prelude::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::amqp_wire::RawPeer;

const SECRET: &str = "the identity provider's signing secret";

static PURGES: AtomicUsize = AtomicUsize::new(0);

/// A method only admins may run.
#[service]
pub struct Guarded;

#[service(name = "t_guarded")]
impl Guarded {
    #[rpc(roles = ["admin"])]
    async fn purge(&self) -> String {
        PURGES.fetch_add(1, Ordering::SeqCst);
        Context::current()
            .and_then(|c| c.get("user_id").map(str::to_string))
            .unwrap_or_default()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn jwt(roles: &[&str], exp: u64, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "ada", "exp": exp, "roles": roles}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn unsigned() -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = serde_json::json!({"sub": "ada", "exp": now() + 600, "roles": ["admin"]});
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    )
}

/// The tokens a peer tries, each with whether the method may run for it.
fn attempts() -> Vec<(&'static str, String, bool)> {
    vec![
        ("unsigned", unsigned(), false),
        ("expired", jwt(&["admin"], now() - 3600, SECRET), false),
        (
            "wrongly signed",
            jwt(&["admin"], now() + 600, "a guess"),
            false,
        ),
        ("another role", jwt(&["user"], now() + 600, SECRET), false),
        ("valid", jwt(&["admin"], now() + 600, SECRET), true),
    ]
}

/// The reply to attempt `label` is the method's answer if `allowed`, else a refusal; and the
/// method ran exactly then (`before` counted the runs before the attempt).
fn check(label: &str, allowed: bool, reply: &serde_json::Value, before: usize) {
    if allowed {
        assert_eq!(reply["result"], "ada", "{label}: {reply}");
        assert_eq!(PURGES.load(Ordering::SeqCst), before + 1, "{label}");
    } else {
        let kind = reply["error"]["exc_type"].as_str().unwrap_or_default();
        assert!(
            kind == "Unauthorized" || kind == "Forbidden",
            "{label}: {reply}"
        );
        assert_eq!(
            PURGES.load(Ordering::SeqCst),
            before,
            "{label} ran the method"
        );
    }
}

async fn host(url: &str) -> basidia::RunningServices {
    let verifier = JwtVerifier::new(&JwtConfig::with_secret("HS256", SECRET)).unwrap();
    let mut runner =
        Runner::new(basidia::connect(url).await.unwrap()).with_token_verifier(Arc::new(verifier));
    runner.add::<Guarded>();
    runner.start().await.unwrap()
}

#[tokio::test]
async fn a_raw_amqp_peer_cannot_claim_a_role() {
    let Some(url) = crate::amqp_wire::url() else {
        return;
    };
    let _serial = crate::child::serial().await;
    let running = host(&url).await;
    let mut peer = RawPeer::new(&url).await;
    for (label, token, allowed) in attempts() {
        let before = PURGES.load(Ordering::SeqCst);
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("nameko.auth_token"),
            AMQPValue::LongString(LongString::from(token)),
        );
        headers.insert(
            ShortString::from("nameko.user_id"),
            AMQPValue::LongString(LongString::from("mallory")),
        );
        let props = peer
            .props(Some("application/json"), label)
            .with_headers(headers);
        peer.publish("t_guarded.purge", br#"{"args": [], "kwargs": {}}"#, props)
            .await;
        let (_, reply) = peer.reply().await;
        check(label, allowed, &reply, before);
    }
    running.stop().await;
}

#[tokio::test]
async fn a_raw_nats_peer_cannot_claim_a_role() {
    let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let _serial = crate::child::serial().await;
    let running = host(&url).await;
    let raw = async_nats::connect(url.as_str()).await.unwrap();
    for (label, token, allowed) in attempts() {
        let before = PURGES.load(Ordering::SeqCst);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Content-Type", "application/json");
        let context = serde_json::json!({"auth_token": token, "user_id": "mallory"});
        headers.insert("Basidia-Context", context.to_string().as_str());
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            raw.request_with_headers(
                "basidia.rpc.t_guarded.purge",
                headers,
                br#"{"args": [], "kwargs": {}}"#.to_vec().into(),
            ),
        )
        .await
        .expect("an answer within 10 s")
        .unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        check(label, allowed, &reply, before);
    }
    running.stop().await;
}

/// The Python peer of the test virtualenv (pika for AMQP, nats-py for NATS) sends every attempt
/// with a context of its writing; its replies, by label.
fn python_peer(broker: &str, url: &str) -> Option<Vec<(String, serde_json::Value)>> {
    let Some(venv) = std::env::var_os("BASIDIA_NAMEKO_VENV") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "BASIDIA_NAMEKO_VENV is not set: CI runs the Python peers from it"
        );
        eprintln!("skipped: BASIDIA_NAMEKO_VENV is not set");
        return None;
    };
    let tokens: Vec<(&str, String)> = attempts().into_iter().map(|(l, t, _)| (l, t)).collect();
    let mut child = std::process::Command::new(std::path::Path::new(&venv).join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/peers/roles_peer.py"))
        .args([broker, url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the virtualenv's python runs");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(serde_json::to_string(&tokens).unwrap().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the {broker} peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["label"].as_str().unwrap().to_string(), v["reply"].clone())
            })
            .collect(),
    )
}

/// Every attempt answered as [`check`] wants, and the method ran once in all: for the valid
/// token.
fn check_all(replies: &[(String, serde_json::Value)], before: usize) {
    assert_eq!(replies.len(), attempts().len(), "{replies:?}");
    for ((label, reply), (want, _, allowed)) in replies.iter().zip(attempts()) {
        assert_eq!(label, want);
        if allowed {
            assert_eq!(reply["result"], "ada", "{label}: {reply}");
        } else {
            let kind = reply["error"]["exc_type"].as_str().unwrap_or_default();
            assert!(
                kind == "Unauthorized" || kind == "Forbidden",
                "{label}: {reply}"
            );
        }
    }
    assert_eq!(
        PURGES.load(Ordering::SeqCst),
        before + 1,
        "the method ran for the valid token alone"
    );
}

/// Hosts the guarded service on `url` and has the Python peer for `broker` try every token.
async fn python_peer_tries(broker: &'static str, url: String) {
    let _serial = crate::child::serial().await;
    let running = host(&url).await;
    let before = PURGES.load(Ordering::SeqCst);
    let replies = tokio::task::spawn_blocking(move || python_peer(broker, &url))
        .await
        .unwrap();
    if let Some(replies) = replies {
        check_all(&replies, before);
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pika_peer_cannot_claim_a_role() {
    if let Some(url) = crate::amqp_wire::url() {
        python_peer_tries("amqp", url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_py_peer_cannot_claim_a_role() {
    if let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL") {
        python_peer_tries("nats", url).await;
    }
}
