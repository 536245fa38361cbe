//! NATS authentication and TLS against private nats-server processes started here (on free
//! ports, without JetStream): user and password, token, a `.creds` file under a server in
//! operator mode, `tls://` with a configured CA, and clear errors that never show the secret. Needs `BASIDIA_TEST_NATS_URL` (for parity with the other
//! NATS tests) and `/usr/sbin/nats-server`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use basidia::prelude::*;
use basidia::{BrokerError, NatsBroker, NatsOptions};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

fn enabled() -> bool {
    basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL").is_some()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_server(args: &[&str]) -> (Server, u16) {
    let port = free_port();
    let child = Command::new("/usr/sbin/nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Server(child), port)
}

#[service]
struct Guarded;

#[service(name = "t_guarded")]
impl Guarded {
    #[rpc]
    async fn ping(&self) -> String {
        "pong".into()
    }
}

/// A fresh directory for one test's files (certificates, server configuration, credentials).
fn scratch_dir(purpose: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("basidia-nats-{purpose}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn round_trip(broker: NatsBroker) {
    let broker = Arc::new(broker);
    let mut runner = Runner::new(broker.clone());
    runner.add::<Guarded>();
    let running = runner.start().await.unwrap();
    let client = GuardedClient::connect(&RpcProxy::new(broker));
    assert_eq!(client.ping().await.unwrap(), "pong");
    running.stop().await;
}

async fn refused(url: &str, secret: &str) {
    let err = tokio::time::timeout(Duration::from_secs(20), NatsBroker::connect(url))
        .await
        .expect("a prompt answer")
        .unwrap_err();
    assert!(matches!(err, BrokerError::ConnectionLost { .. }), "{err:?}");
    assert!(
        !err.to_string().contains(secret),
        "the secret leaked: {err}"
    );
}

#[tokio::test]
async fn user_password_and_token_authentication() {
    if !enabled() {
        return;
    }
    let (_s, port) = start_server(&["--user", "app", "--pass", "s3cret-pw"]).await;
    round_trip(
        NatsBroker::connect(&format!("nats://app:s3cret-pw@127.0.0.1:{port}"))
            .await
            .unwrap(),
    )
    .await;
    refused(&format!("nats://app:wrong-pw@127.0.0.1:{port}"), "wrong-pw").await;

    let (_t, port) = start_server(&["--auth", "t0ken-value"]).await;
    round_trip(
        NatsBroker::connect(&format!("nats://t0ken-value@127.0.0.1:{port}"))
            .await
            .unwrap(),
    )
    .await;
    refused(&format!("nats://not-it@127.0.0.1:{port}"), "not-it").await;

    let mut missing = NatsOptions::new(&format!("nats://127.0.0.1:{port}"));
    missing.credentials_file = Some("/nonexistent/app.creds".into());
    let err = NatsBroker::connect_with(missing).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/app.creds"), "{err}");
}

#[tokio::test]
async fn tls_with_a_configured_ca() {
    if !enabled() {
        return;
    }
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let dir = scratch_dir("tls");
    let (cert_file, key_file, ca_file) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (_s, port) = start_server(&[
        "--tls",
        "--tlscert",
        cert_file.to_str().unwrap(),
        "--tlskey",
        key_file.to_str().unwrap(),
    ])
    .await;
    let url = format!("tls://localhost:{port}");
    refused(&url, "no-secret-here").await;
    let mut options = NatsOptions::new(&url);
    options.tls_ca_file = Some(ca_file);
    round_trip(
        NatsBroker::connect_with(options)
            .await
            .expect("tls with the CA"),
    )
    .await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A NATS JWT (`header.claims.signature`, base64url without padding) of `claims`, which gain the
/// issuer's and the subject's public keys, signed with the issuer's key.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine as _};
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let signed = format!(
        "{header}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let signature = URL_SAFE_NO_PAD.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

/// A `.creds` file for a user of `account`: the user's JWT and the user's seed.
fn creds(account: &nkeys::KeyPair) -> (String, String) {
    let user = nkeys::KeyPair::new_user();
    let user_jwt = jwt(
        account,
        &user.public_key(),
        "app",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        }),
    );
    let seed = user.seed().unwrap();
    let file = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    (file, seed)
}

#[tokio::test]
async fn credentials_file_under_operator_mode() {
    if !enabled() {
        return;
    }
    // An operator, one account it signed (preloaded into the server), and a user of that
    // account: the decentralised setup a `.creds` file belongs to.
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "basidia-test",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "APP",
        serde_json::json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
            },
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account", "version": 2,
        }),
    );
    let dir = scratch_dir("creds");
    let config = dir.join("server.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {operator_jwt}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {account_jwt}\n}}\n",
            account.public_key()
        ),
    )
    .unwrap();
    let (_s, port) = start_server(&["-c", config.to_str().unwrap()]).await;
    let url = format!("nats://127.0.0.1:{port}");

    let (file, _) = creds(&account);
    let good = dir.join("app.creds");
    std::fs::write(&good, file).unwrap();
    let mut options = NatsOptions::new(&url);
    options.credentials_file = Some(good);
    round_trip(
        NatsBroker::connect_with(options)
            .await
            .expect("a user of the preloaded account connects"),
    )
    .await;

    // A user signed by an account the server does not know is refused, promptly, and the
    // error shows neither its seed nor its file's contents.
    let (file, seed) = creds(&nkeys::KeyPair::new_account());
    let stranger = dir.join("stranger.creds");
    std::fs::write(&stranger, file).unwrap();
    let mut options = NatsOptions::new(&url);
    options.credentials_file = Some(stranger);
    let err = tokio::time::timeout(Duration::from_secs(20), NatsBroker::connect_with(options))
        .await
        .expect("a prompt answer")
        .unwrap_err();
    assert!(matches!(err, BrokerError::ConnectionLost { .. }), "{err:?}");
    assert!(!err.to_string().contains(&seed), "the seed leaked: {err}");
    let _ = std::fs::remove_dir_all(dir);
}
