//! The NATS backend (async-nats), Basidia's own mapping onto NATS, written down in
//! `docs/protocol-nats.md`:
//! - RPC: request/reply on `basidia.rpc.<service>.<method>`, instances of a service share a queue
//!   group `basidia.rpc.<service>`; no running instance means the server's no-responders status,
//!   which fails the call at once with `UnknownService`.
//! - Events: JetStream. One stream per source service, `BASIDIA_EVENTS_<source>` over
//!   `basidia.events.<source>.>` (limits retention: messages are kept up to `max_event_age`);
//!   service-pool and singleton handlers are durable pull consumers that start at their creation
//!   and are acked after the handler; broadcast handlers are plain subscriptions (at-most-once).
//! - Dead letters: the stream `BASIDIA_DEAD_LETTERS` over `basidia.deadletter.>`.
//! - The NATS services API (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) for every served service.

mod calls;
mod connect;
mod dead_letters;
mod events;
mod options;
mod outbox;
mod serve;
mod srv;
mod wire;

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use basidia_core::{Broker, BrokerError, ConsumeOptions, EventBinding, Message, Subscription};

pub use connect::NatsBroker;
pub use options::NatsOptions;
pub use wire::{
    event_stream, event_subject, js_name, rpc_subject, CONTENT_TYPE_HEADER, CONTEXT_HEADER,
    DEADLINE_HEADER, DEAD_LETTER_STREAM, ERROR_CODE_HEADER, ERROR_HEADER, REASON_HEADER,
};

/// A value alone on its cache lines (two, which processors fetch in pairs), so that one core
/// writing it does not take its neighbours away from the other core. For the counters and locks
/// every call and request writes.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn is_connected(&self) -> bool {
        self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    async fn call(
        &self,
        service: &str,
        method: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BrokerError> {
        self.rpc_call(service, method, request, timeout).await
    }

    async fn serve(
        &self,
        service: &str,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.serve_rpc(service, options).await
    }

    async fn publish_event(
        &self,
        source: &str,
        event_type: &str,
        message: Message,
    ) -> Result<(), BrokerError> {
        self.publish_event_bounded(source, event_type, message)
            .await
    }

    async fn subscribe(
        &self,
        binding: &EventBinding,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.subscribe_events(binding, options).await
    }

    async fn services(&self) -> Result<Option<Vec<String>>, BrokerError> {
        self.discover_services().await
    }
    async fn instances(&self) -> Result<Option<Vec<basidia_core::InstanceInfo>>, BrokerError> {
        self.discover_instances().await
    }
    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<basidia_core::StoredDeadLetter>, BrokerError> {
        self.check()?;
        dead_letters::list(self, limit).await
    }

    async fn replay_dead_letters(
        &self,
        which: basidia_core::Replay<'_>,
    ) -> Result<usize, BrokerError> {
        self.check()?;
        dead_letters::replay(self, which).await
    }

    fn max_payload(&self) -> Option<usize> {
        let max = self.inner.max_payload.load(Ordering::Relaxed);
        (max > 0).then_some(max)
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Replies of workers that finished just before count as sent: handed to the client, and
        // written out. The client's drain only queues its own command and returns, so without the
        // flush a process that ends right after closing loses what was still queued.
        self.inner.outbox.flush(&self.inner).await;
        let written =
            tokio::time::timeout(connect::CLOSE_FLUSH_LIMIT, self.inner.client.flush()).await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(
                "messages still queued when the connection closed may not have been sent"
            );
        }
        self.inner.shutdown.cancel();
        self.inner.calls.pending.fail_all(|| BrokerError::Closed);
        let _ = self.inner.client.drain().await;
    }
}
