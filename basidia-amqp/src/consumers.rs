//! The consumers of service and event queues: opening one (its queue declared first), moving
//! its deliveries into the subscription, and consuming again when the broker ends it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use basidia_core::internal::{backend, lock, lost};
use basidia_core::{
    rpc_queue_name, BrokerError, ConsumeOptions, Delivery, DeliveryReceiver, DeliverySender,
    EventBinding, Subscription,
};
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio_util::sync::CancellationToken;

use crate::connect::{AmqpBroker, Inner, Live};
use crate::events::{declare_event_queue, RETRY_EXCHANGE};
use crate::rpc::declare_service_queue;
use crate::settle::AmqpSettle;
use crate::{channels, wire};

/// What a consumer consumes: a service's requests, or the events of one binding.
#[derive(Clone)]
pub(crate) enum ConsumerKind {
    Rpc { service: String },
    Event(EventBinding),
}

/// A consumer as the subscription asked for it: what the supervisor needs to resume it after a
/// reconnection.
pub(crate) struct ConsumerSpec {
    kind: ConsumerKind,
    options: ConsumeOptions,
    tx: DeliverySender,
    cancel: CancellationToken,
}

impl AmqpBroker {
    fn register(
        &self,
        kind: ConsumerKind,
        options: ConsumeOptions,
    ) -> (u64, Arc<ConsumerSpec>, DeliveryReceiver) {
        let (tx, rx) = basidia_core::delivery_channel();
        let spec = Arc::new(ConsumerSpec {
            kind,
            options,
            tx,
            cancel: self.inner.shutdown.child_token(),
        });
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.consumers).insert(id, Arc::clone(&spec));
        (id, spec, rx)
    }

    /// Declares the queue of `kind`, consumes it and hands its deliveries to the subscription
    /// returned.
    pub(crate) async fn start_consumer(
        &self,
        kind: ConsumerKind,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        let live = self.live()?;
        let (id, spec, rx) = self.register(kind, options);
        match open_consumer(&self.inner, &live, &spec).await {
            Ok(consumer) => {
                tokio::spawn(forward(
                    Arc::downgrade(&self.inner),
                    live,
                    Arc::clone(&spec),
                    consumer,
                ));
            }
            Err(e) => {
                lock(&self.inner.consumers).remove(&id);
                return Err(e);
            }
        }
        let guard = ConsumerGuard {
            inner: Arc::downgrade(&self.inner),
            id,
            cancel: spec.cancel.clone(),
        };
        Ok(Subscription::new(rx, Box::new(guard)))
    }
}

struct ConsumerGuard {
    inner: Weak<Inner>,
    id: u64,
    cancel: CancellationToken,
}

impl Drop for ConsumerGuard {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(inner) = self.inner.upgrade() {
            lock(&inner.consumers).remove(&self.id);
        }
    }
}

fn queue_of(kind: &ConsumerKind) -> String {
    match kind {
        ConsumerKind::Rpc { service } => rpc_queue_name(service),
        ConsumerKind::Event(b) => b.queue_name(),
    }
}

/// Opens a channel for the consumer, declares its queue and consumes it.
pub(crate) async fn open_consumer(
    inner: &Inner,
    live: &Live,
    spec: &ConsumerSpec,
) -> Result<(Channel, lapin::Consumer), BrokerError> {
    let channel = live.connection.create_channel().await.map_err(lost)?;
    channel
        .basic_qos(spec.options.prefetch, BasicQosOptions::default())
        .await
        .map_err(backend)?;
    let queue = queue_of(&spec.kind);
    match &spec.kind {
        ConsumerKind::Rpc { service } => {
            declare_service_queue(inner, &channel, service, &queue, &spec.options).await?;
        }
        ConsumerKind::Event(binding) => {
            declare_event_queue(inner, &channel, binding, &queue).await?;
        }
    }
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(backend)?;
    Ok((channel, consumer))
}

/// A consumer's channel, closed once nothing needs it any more: neither the consumer's task nor
/// any delivery still to be settled. Deliveries settle on the channel they came on, so a stop
/// that cancels the consumer keeps the channel for the workers still at work; closing it then
/// puts whatever was prefetched and never started back on the queue, once.
pub(crate) struct ConsumerChannel {
    pub(crate) channel: Channel,
    /// Cancelled when the consumer stops (its subscription dropped, or the broker closed).
    pub(crate) stopped: CancellationToken,
}

impl Drop for ConsumerChannel {
    fn drop(&mut self) {
        let channel = self.channel.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = channel.close(200, "consumer stopped".into()).await;
            });
        }
    }
}

/// Why [`forward_deliveries`] ended.
#[derive(PartialEq, Eq)]
enum Ended {
    /// The subscription was dropped or the broker handle closed.
    Stopped,
    /// The consumer's stream ended from the broker's side: the consumer cancelled (its queue
    /// deleted), its channel closed, or the connection lost.
    ByBroker,
}

/// Moves deliveries of one consumer into its subscription until the subscription stops. When
/// the broker ends the consumer while the connection stays up (an operator deleted the queue,
/// or a channel error), the queue is declared and consumed again; after a lost connection the
/// supervisor resumes every consumer.
pub(crate) async fn forward(
    inner: Weak<Inner>,
    live: Arc<Live>,
    spec: Arc<ConsumerSpec>,
    first: (Channel, lapin::Consumer),
) {
    let queue = queue_of(&spec.kind);
    let mut current = first;
    loop {
        let (channel, consumer) = current;
        if forward_deliveries(&inner, &live, &spec, &queue, channel, consumer).await
            == Ended::Stopped
        {
            return;
        }
        match inner.upgrade() {
            Some(strong) if channels::still_current(&strong, &live) => {}
            _ => return,
        }
        tracing::warn!(
            queue,
            "the broker stopped this consumer (its queue deleted, or its channel closed); declaring and consuming it again"
        );
        let stopped = || spec.cancel.is_cancelled() || spec.tx.is_closed();
        let next = channels::reopen(
            &inner,
            &Arc::downgrade(&live),
            &queue,
            stopped,
            |strong, l| {
                let spec = Arc::clone(&spec);
                async move { open_consumer(&strong, &l, &spec).await }
            },
        )
        .await;
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
}

async fn forward_deliveries(
    inner: &Weak<Inner>,
    live: &Arc<Live>,
    spec: &ConsumerSpec,
    queue: &str,
    channel: Channel,
    mut consumer: lapin::Consumer,
) -> Ended {
    let shared = Arc::new(ConsumerChannel {
        channel,
        stopped: spec.cancel.clone(),
    });
    loop {
        let item = tokio::select! {
            () = spec.cancel.cancelled() => break,
            () = spec.tx.closed() => break,
            item = consumer.next() => item,
        };
        let d = match item {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::debug!(queue, "consumer stream error: {e}");
                return Ended::ByBroker;
            }
            None => return Ended::ByBroker,
        };
        // The method (RPC) or event type is the routing key the broker delivered with; a
        // republished retry names its queue there, and its event type is the binding's.
        let routing_key = match &spec.kind {
            ConsumerKind::Rpc { service } => d
                .routing_key
                .as_str()
                .strip_prefix(service.as_str())
                .and_then(|k| k.strip_prefix('.'))
                .unwrap_or(d.routing_key.as_str())
                .to_string(),
            ConsumerKind::Event(binding) => binding.event_type.clone(),
        };
        let original_key = match &spec.kind {
            ConsumerKind::Rpc { service } => format!("{service}.{routing_key}"),
            ConsumerKind::Event(_) => routing_key.clone(),
        };
        let republished = matches!(d.exchange.as_str(), "" | RETRY_EXCHANGE);
        let message = wire::message_of(&d.properties, d.data, d.redelivered, republished);
        let settle = AmqpSettle {
            inner: inner.clone(),
            live: Arc::clone(live),
            channel: Arc::clone(&shared),
            tag: d.delivery_tag,
            queue: queue.to_string(),
            original_key,
            rpc: matches!(spec.kind, ConsumerKind::Rpc { .. }),
        };
        if let Err(unsent) = spec
            .tx
            .send(Delivery::new(message, routing_key, Box::new(settle)))
        {
            // The subscription is gone; what it did not take stays unacked until the channel
            // closes, and goes back to the queue then.
            drop(unsent);
            break;
        }
    }
    // No new deliveries; the channel stays open while deliveries already handed over are
    // settled. Anything the broker sent before the cancel took effect is left unacked for the
    // close to requeue.
    let _ = shared
        .channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    Ended::Stopped
}
