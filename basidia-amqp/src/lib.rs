//! The AMQP backend (RabbitMQ through lapin), speaking Nameko 2.x's wire protocol so that
//! Basidia and Python Nameko services call each other and exchange events.
//!
//! The mapping is written down in `docs/protocol-amqp.md`. In short:
//! - RPC: topic exchange `nameko-rpc` (configurable); service queue `rpc-<service>` bound with
//!   `<service>.*`; requests routed by `<service>.<method>`, published mandatory so that an
//!   unknown service comes back at once; one reply queue per process,
//!   `rpc.reply-basidia-<uuid>`, bound by the uuid that requests carry as `reply_to`.
//! - Events: topic exchange `<source>.events`; queues named as Nameko names them per handler
//!   type; dispatch returns after the broker's publisher confirm.
//! - Context data travels as `nameko.`-prefixed headers.
//! - Retries republish with an `x-basidia-delivery-count` header; dead letters go to the
//!   exchange `basidia.dead-letter` and the queue `basidia.dead-letters`.
//! - One connection per broker handle; a supervisor reconnects with back-off after a drop,
//!   redeclares what it needs and resumes every consumer; calls in flight at the drop fail with
//!   `ConnectionLost`.

mod channels;
mod connect;
mod consumers;
mod dead_letters;
mod events;
mod options;
mod rpc;
mod settle;
mod status;
mod wire;

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use basidia_core::internal::lock;
use basidia_core::{Broker, BrokerError, ConsumeOptions, EventBinding, Message, Subscription};

pub use connect::AmqpBroker;
pub use dead_letters::{DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE};
pub use events::{DELAY_EXCHANGE, RETRY_EXCHANGE};
pub use options::{AmqpOptions, DEFAULT_RPC_EXCHANGE};
pub use wire::HEADER_PREFIX;

use consumers::ConsumerKind;

#[async_trait]
impl Broker for AmqpBroker {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    fn is_connected(&self) -> bool {
        self.live()
            .is_ok_and(|live| live.connection.status().connected())
    }

    async fn call(
        &self,
        service: &str,
        method: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BrokerError> {
        self.send_request(service, method, request, timeout).await
    }

    async fn serve(
        &self,
        service: &str,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.start_consumer(
            ConsumerKind::Rpc {
                service: service.to_string(),
            },
            options,
        )
        .await
    }

    async fn publish_event(
        &self,
        source: &str,
        event_type: &str,
        message: Message,
    ) -> Result<(), BrokerError> {
        self.dispatch_event(source, event_type, message).await
    }

    async fn subscribe(
        &self,
        binding: &EventBinding,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.start_consumer(ConsumerKind::Event(binding.clone()), options)
            .await
    }

    fn max_payload(&self) -> Option<usize> {
        Some(self.inner.options.max_payload)
    }

    async fn instances(&self) -> Result<Option<Vec<basidia_core::InstanceInfo>>, BrokerError> {
        self.discover_instances().await.map(Some)
    }

    fn announce(&self, instance: &basidia_core::InstanceInfo) {
        self.announce_instance(instance);
    }

    fn withdraw(&self, id: &str) {
        self.withdraw_instance(id);
    }

    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<basidia_core::StoredDeadLetter>, BrokerError> {
        dead_letters::list(&*self.live()?, limit).await
    }

    async fn replay_dead_letters(
        &self,
        which: basidia_core::Replay<'_>,
    ) -> Result<usize, BrokerError> {
        dead_letters::replay(&*self.live()?, which).await
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.shutdown.cancel();
        lock(&self.inner.pending).clear();
        let live = self.inner.state.send_replace(None);
        if let Some(live) = live {
            // A blocked connection takes no close either; the socket goes with the process.
            let limit = self.inner.options.publish_timeout;
            let _ = tokio::time::timeout(limit, live.connection.close(200, "closed".into())).await;
        }
    }
}
