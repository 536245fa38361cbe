//! `amqps://` with a configured CA: a TLS front (a certificate for `localhost` signed by a CA made
//! here) forwards to the local RabbitMQ. Trusting that CA connects and calls work; without it the
//! connection is refused with a clear error. Needs `BASIDIA_TEST_AMQP_URL`.

use std::sync::Arc;
use std::time::Duration;

use basidia::prelude::*;
use basidia::{AmqpBroker, AmqpOptions, BrokerError};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

fn url() -> Option<String> {
    basidia_conformance::broker_url_from_env("BASIDIA_TEST_AMQP_URL")
}

#[service]
struct Secure;

#[service(name = "t_secure")]
impl Secure {
    #[rpc]
    async fn ping(&self) -> String {
        "pong".into()
    }
}

/// Starts a TLS front on 127.0.0.1 that forwards to `backend`; returns its port and the CA PEM.
async fn tls_front(backend: String) -> (u16, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), CertificateDer::from(ca.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, ca.pem())
}

fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    rest.split('/')
        .next()
        .unwrap_or("127.0.0.1:5672")
        .to_string()
}

#[tokio::test]
async fn amqps_with_a_configured_ca() {
    let Some(url) = url() else { return };
    let (port, ca_pem) = tls_front(host_port(&url)).await;
    let dir = std::env::temp_dir().join(format!("basidia-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let tls_url = format!("amqps://guest:guest@localhost:{port}/%2f");

    // Without the CA the server's certificate is not trusted.
    let err = tokio::time::timeout(Duration::from_secs(20), AmqpBroker::connect(&tls_url))
        .await
        .expect("a prompt answer")
        .unwrap_err();
    assert!(matches!(err, BrokerError::ConnectionLost { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("guest:guest"),
        "the password must not leak: {err}"
    );

    let mut options = AmqpOptions::new(&tls_url);
    options.tls_ca_file = Some(ca_file.clone());
    let broker = Arc::new(
        AmqpBroker::connect_with(options)
            .await
            .expect("amqps with the CA"),
    );
    let mut runner = Runner::new(broker.clone());
    runner.add::<Secure>();
    let running = runner.start().await.unwrap();
    let client = SecureClient::connect(&RpcProxy::new(broker));
    assert_eq!(client.ping().await.unwrap(), "pong");
    running.stop().await;

    let mut missing = AmqpOptions::new(&tls_url);
    missing.tls_ca_file = Some(dir.join("nope.pem"));
    let err = AmqpBroker::connect_with(missing).await.unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
