//! Events: the `<source>.events` exchanges, publishing an event with a publisher confirm, the
//! queues handlers consume, and the delay queues that hold a retry until it is due.

use std::time::Duration;

use basidia_core::internal::{backend, lock};
use basidia_core::{event_exchange_name, BrokerError, EventBinding, HandlerType, Message};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::Channel;

use crate::connect::{
    bind_queue, declare_durable_queue, declare_exchange, owned_queue_args, AmqpBroker, Inner, Live,
};

/// Retries that wait are published here, routed `<delay ms>.<queue>` to the delay queue
/// `basidia.delay.<delay ms>`, whose message TTL is that delay.
pub const DELAY_EXCHANGE: &str = "basidia.delay";
/// Delay queues dead-letter their expired messages here, with the key they were published with;
/// every event queue is bound by `*.<queue>`, so a retry comes back to the queue it left.
pub const RETRY_EXCHANGE: &str = "basidia.retry";

impl AmqpBroker {
    /// Publishes an event to its source's exchange (declared first, once per connection) and
    /// waits for the broker's confirm.
    pub(crate) async fn dispatch_event(
        &self,
        source: &str,
        event_type: &str,
        message: Message,
    ) -> Result<(), BrokerError> {
        let live = self.live()?;
        let exchange = event_exchange_name(source);
        let limit = self.inner.publish_limit(&message);
        let known = lock(&live.declared).contains(&exchange);
        if !known {
            let channel = live.channels.publish();
            self.inner
                .bounded(limit, declare_exchange(&channel, &exchange))
                .await?;
            lock(&live.declared).insert(exchange.clone());
        }
        let published = live
            .publish_confirmed(&self.inner, limit, &exchange, event_type, &message, &[])
            .await;
        if published.is_err() {
            // Perhaps the exchange is gone (an operator deleted it, and the broker closed the
            // channel for it): declare it again next time.
            lock(&live.declared).remove(&exchange);
        }
        published
    }
}

/// Declares the exchange of the binding's source and the handler's queue, and binds the queue
/// by the event type to the one and by `*.<queue>` to the retry exchange.
pub(crate) async fn declare_event_queue(
    inner: &Inner,
    channel: &Channel,
    binding: &EventBinding,
    queue: &str,
) -> Result<(), BrokerError> {
    let exchange = event_exchange_name(&binding.source);
    declare_exchange(channel, &exchange).await?;
    let broadcast = binding.handler_type == HandlerType::Broadcast;
    let args = if broadcast {
        FieldTable::default()
    } else {
        owned_queue_args(&inner.options, FieldTable::default())
    };
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: !broadcast,
                auto_delete: broadcast,
                exclusive: broadcast,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .map_err(backend)?;
    bind_queue(channel, queue, &exchange, &binding.event_type).await?;
    bind_queue(channel, queue, RETRY_EXCHANGE, &format!("*.{queue}")).await
}

/// Declares (once per connection) the delay queue for `delay`, rounded to milliseconds, and
/// returns those milliseconds.
pub(crate) async fn delay_queue(
    inner: &Inner,
    live: &Live,
    delay: Duration,
) -> Result<u128, BrokerError> {
    let ms = delay.as_millis().max(1);
    let name = format!("{DELAY_EXCHANGE}.{ms}");
    if lock(&live.declared).contains(&name) {
        return Ok(ms);
    }
    let mut args = FieldTable::default();
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(ms).unwrap_or(i64::MAX)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(RETRY_EXCHANGE)),
    );
    let channel = live.channels.publish();
    let declare = async {
        declare_durable_queue(&channel, &name, owned_queue_args(&inner.options, args)).await?;
        bind_queue(&channel, &name, DELAY_EXCHANGE, &format!("{ms}.#")).await
    };
    inner
        .bounded(inner.options.publish_timeout, declare)
        .await?;
    lock(&live.declared).insert(name);
    Ok(ms)
}
