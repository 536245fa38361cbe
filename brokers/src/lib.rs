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

#[cfg(feature = "amqp")]
pub use amqp::{AmqpBroker, AmqpOptions};

pub use memory::{DeadLetter, MemoryBroker};
