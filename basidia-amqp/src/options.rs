//! The options of the AMQP backend, and what connecting reads from them: the nodes the URL
//! names and the TLS configuration.

use std::fmt;
use std::time::Duration;

use basidia_core::internal::backend_in;
use basidia_core::{redact_url, BrokerError};

/// Nameko's default RPC exchange.
pub const DEFAULT_RPC_EXCHANGE: &str = "nameko-rpc";

/// Options of the AMQP backend.
#[derive(Clone)]
#[non_exhaustive]
pub struct AmqpOptions {
    /// `amqp://user:password@host:port/vhost` or `amqps://...`.
    pub url: String,
    /// The RPC exchange (Nameko's `rpc_exchange`).
    pub rpc_exchange: String,
    /// A PEM file of CA certificates to trust for `amqps://`.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The longest pause between reconnection attempts.
    pub max_reconnect_backoff: Duration,
    /// The largest message body accepted before sending.
    pub max_payload: usize,
    /// The longest a publish (an event, a retry, a dead letter) waits for the broker's confirm
    /// when the message has no earlier deadline. A broker under an alarm takes nothing until it
    /// clears; this bounds how long a dispatcher waits for that.
    pub publish_timeout: Duration,
    /// Declare the durable queues Basidia owns as quorum queues: each service's RPC queue, the
    /// service-pool and singleton event queues, the dead-letter queue and the retry delay
    /// queues. Quorum queues are replicated across a cluster's nodes, so that a node going
    /// loses no confirmed message and leaves no queue behind on it; and they count deliveries
    /// themselves, so that `event_max_deliveries` holds even when a handler takes its process
    /// down each time.
    ///
    /// Off by default: an existing classic queue cannot change its type (delete it first),
    /// Nameko peers declaring the same queue must declare it the same way, and RabbitMQ 3.x
    /// quorum queues have no priorities (a service with `max_priority` is refused at start).
    /// The process's reply queue is transient either way, so that it can be declared again on
    /// any node.
    pub quorum_queues: bool,
    /// The most dead letters the dead-letter queue keeps (`x-max-length`); past it RabbitMQ
    /// drops the oldest.
    pub dead_letter_max_count: i64,
    /// The most bytes of message bodies the dead-letter queue keeps (`x-max-length-bytes`);
    /// past it RabbitMQ drops the oldest.
    pub dead_letter_max_bytes: i64,
}

impl AmqpOptions {
    /// Options for `url` with Nameko's defaults.
    pub fn new(url: &str) -> Self {
        AmqpOptions {
            url: url.to_string(),
            rpc_exchange: DEFAULT_RPC_EXCHANGE.to_string(),
            tls_ca_file: None,
            max_reconnect_backoff: Duration::from_secs(5),
            max_payload: 128 * 1024 * 1024,
            publish_timeout: Duration::from_secs(10),
            quorum_queues: false,
            dead_letter_max_count: 100_000,
            dead_letter_max_bytes: 256 * 1024 * 1024,
        }
    }

    /// Sets [`rpc_exchange`](Self::rpc_exchange).
    #[must_use]
    pub fn with_rpc_exchange(mut self, rpc_exchange: impl Into<String>) -> Self {
        self.rpc_exchange = rpc_exchange.into();
        self
    }

    /// Sets [`tls_ca_file`](Self::tls_ca_file).
    #[must_use]
    pub fn with_tls_ca_file(mut self, tls_ca_file: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca_file = Some(tls_ca_file.into());
        self
    }

    /// Sets [`max_reconnect_backoff`](Self::max_reconnect_backoff).
    #[must_use]
    pub fn with_max_reconnect_backoff(mut self, max_reconnect_backoff: Duration) -> Self {
        self.max_reconnect_backoff = max_reconnect_backoff;
        self
    }

    /// Sets [`max_payload`](Self::max_payload).
    #[must_use]
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload;
        self
    }

    /// Sets [`publish_timeout`](Self::publish_timeout).
    #[must_use]
    pub fn with_publish_timeout(mut self, publish_timeout: Duration) -> Self {
        self.publish_timeout = publish_timeout;
        self
    }

    /// Sets [`quorum_queues`](Self::quorum_queues).
    #[must_use]
    pub fn with_quorum_queues(mut self, quorum_queues: bool) -> Self {
        self.quorum_queues = quorum_queues;
        self
    }

    /// Sets [`dead_letter_max_count`](Self::dead_letter_max_count).
    #[must_use]
    pub fn with_dead_letter_max_count(mut self, dead_letter_max_count: i64) -> Self {
        self.dead_letter_max_count = dead_letter_max_count;
        self
    }

    /// Sets [`dead_letter_max_bytes`](Self::dead_letter_max_bytes).
    #[must_use]
    pub fn with_dead_letter_max_bytes(mut self, dead_letter_max_bytes: i64) -> Self {
        self.dead_letter_max_bytes = dead_letter_max_bytes;
        self
    }
}

impl fmt::Debug for AmqpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpOptions")
            .field("url", &redact_url(&self.url))
            .field("rpc_exchange", &self.rpc_exchange)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish_non_exhaustive()
    }
}

impl AmqpOptions {
    /// The nodes the URL names, in its order: a URL may name several nodes of a cluster,
    /// `amqp://a/%2f,amqp://b/%2f`.
    pub(crate) fn nodes(&self) -> Result<Vec<&str>, BrokerError> {
        let urls: Vec<&str> = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(BrokerError::InvalidUrl("the URL names no broker".into()));
        }
        Ok(urls)
    }

    /// The TLS configuration for `amqps://` nodes, trusting the certificates of
    /// [`tls_ca_file`](Self::tls_ca_file) when it is set.
    pub(crate) fn tls_config(&self) -> Result<lapin::tcp::OwnedTLSConfig, BrokerError> {
        let mut tls = lapin::tcp::OwnedTLSConfig::default();
        if let Some(path) = &self.tls_ca_file {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| backend_in(format!("cannot read CA file {}", path.display()), e))?;
            tls.cert_chain = Some(pem);
        }
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://app:s3cret@rabbit:5672/%2f"),
            "amqp://app:***@rabbit:5672/%2f"
        );
        assert_eq!(redact_url("amqp://rabbit/"), "amqp://rabbit/");
        let opts = AmqpOptions::new("amqps://app:s3cret@rabbit/");
        assert!(!format!("{opts:?}").contains("s3cret"));
    }
}
