//! The in-memory broker: a faithful model of a message broker inside one process.
//!
//! It models what the real brokers do, so a test that passes here means the same on RabbitMQ
//! or NATS: competing consumers on one queue and fan-out across queues bound to one event type,
//! per-consumer prefetch, ack / requeue / dead-letter, the redelivered flag and delivery counts,
//! redelivery of what a vanished consumer held, durable queues that keep messages while their
//! service is down, auto-deleted broadcast queues, priorities, unroutable requests failing fast,
//! and replies routed by `reply_to` and correlation id.
//!
//! One [`MemoryBroker`] is one connection; [`MemoryBroker::connect`] opens another connection to
//! the same in-process "server", which is how several service instances are modelled.

mod broker;
mod dead_letters;
mod hub;
mod settle;

pub use broker::MemoryBroker;
pub use dead_letters::{DeadLetter, DEAD_LETTER_LIMIT};
