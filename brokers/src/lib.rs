//! Broker backends for Basidia.
//!
//! - [`MemoryBroker`]: always available; a faithful in-process model of a message broker.
//! - AMQP (RabbitMQ, speaking Nameko's protocol) and NATS backends come behind the `amqp` and
//!   `nats` features.
//!
//! [`conformance`] is the suite every backend passes.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod conformance;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;

#[cfg(feature = "amqp")]
pub use amqp::{AmqpBroker, AmqpOptions};
#[cfg(feature = "nats")]
pub use nats::{NatsBroker, NatsOptions};

pub use memory::{DeadLetter, MemoryBroker};

use basidia_core::{BrokerError, SharedBroker};

/// A failure of the connection, for calls and settlements that were in flight.
#[cfg(any(feature = "amqp", feature = "nats"))]
pub(crate) fn lost(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::ConnectionLost(e.to_string())
}

/// Any other failure the client library reports.
#[cfg(any(feature = "amqp", feature = "nats"))]
pub(crate) fn backend(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Backend(e.to_string())
}

/// Opens a broker by URL scheme: `memory://` (a new in-process broker), `amqp://` or
/// `amqps://` (RabbitMQ; needs the `amqp` feature), `nats://` or `tls://` (NATS; needs the
/// `nats` feature).
pub async fn connect(url: &str) -> Result<SharedBroker, BrokerError> {
    let scheme = url.split_once("://").map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(std::sync::Arc::new(MemoryBroker::new())),
        #[cfg(feature = "amqp")]
        "amqp" | "amqps" => Ok(std::sync::Arc::new(AmqpBroker::connect(url).await?)),
        #[cfg(not(feature = "amqp"))]
        "amqp" | "amqps" => Err(BrokerError::InvalidUrl(
            "this build has no AMQP support: enable the `amqp` feature".into(),
        )),
        #[cfg(feature = "nats")]
        "nats" | "tls" => Ok(std::sync::Arc::new(NatsBroker::connect(url).await?)),
        #[cfg(not(feature = "nats"))]
        "nats" | "tls" => Err(BrokerError::InvalidUrl(
            "this build has no NATS support: enable the `nats` feature".into(),
        )),
        other => Err(BrokerError::InvalidUrl(format!(
            "unknown broker scheme {other:?}: expected memory://, amqp://, amqps://, nats:// or tls://"
        ))),
    }
}
