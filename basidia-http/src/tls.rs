//! HTTPS: the server's certificate chain and key from PEM files, HTTP/2 and HTTP/1.1 offered by
//! ALPN, and handshakes done off the accept loop, so that a client that connects and never
//! finishes its handshake holds up no one else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::server::HttpError;

/// The most handshakes in progress at once; connections past it are closed at once.
const MAX_HANDSHAKES: usize = 256;

/// The `[http.tls]` section: serve HTTPS with this certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// A PEM file with the certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// A PEM file with the private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How long a client has to finish its handshake before its connection is closed.
    #[serde(
        default = "default_handshake_timeout",
        with = "basidia_core::config::duration_serde"
    )]
    pub handshake_timeout: Duration,
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

impl TlsConfig {
    /// HTTPS with the certificate chain in `cert_file` and its key in `key_file`.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        TlsConfig {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            handshake_timeout: default_handshake_timeout(),
        }
    }

    /// This configuration giving clients `timeout` to finish their handshake.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Reads the files into a server configuration.
    fn server_config(&self) -> Result<rustls::ServerConfig, HttpError> {
        let certs = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| tls_error(&self.cert_file, "cannot read certificates", e))?;
        if certs.is_empty() {
            return Err(HttpError::Tls {
                file: self.cert_file.clone(),
                reason: "no certificate in it".into(),
                source: None,
            });
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| tls_error(&self.key_file, "cannot read a private key", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&self.cert_file, "no protocol version", e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| tls_error(&self.key_file, "the key does not fit the certificate", e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn tls_error<E: std::error::Error + Send + Sync + 'static>(
    file: &Path,
    reason: &str,
    e: E,
) -> HttpError {
    HttpError::Tls {
        file: file.to_path_buf(),
        reason: format!("{reason}: {e}"),
        source: Some(Box::new(e)),
    }
}

/// Connections whose handshake is done, as axum's server takes them.
pub(crate) struct TlsListener {
    done: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `tcp` and hands over the connections that complete a handshake.
    pub(crate) fn new(tcp: TcpListener, config: &TlsConfig) -> Result<Self, HttpError> {
        let local_addr = tcp.local_addr().map_err(|source| HttpError::Bind {
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let acceptor = TlsAcceptor::from(Arc::new(config.server_config()?));
        let (tx, done) = mpsc::channel(64);
        let accepting = tokio::spawn(accept(tcp, acceptor, tx, config.handshake_timeout));
        Ok(TlsListener {
            done,
            local_addr,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(next) => next,
            // The accepting task only ends when this listener goes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    done: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    timeout: Duration,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!("cannot accept an HTTPS connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS handshakes in progress; closing the connection");
            continue;
        };
        let acceptor = acceptor.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = done.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "no TLS handshake within {timeout:?}"),
            }
        });
    }
}
