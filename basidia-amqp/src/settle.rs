//! Settling a delivery on the channel it came on: the reply to a request, the ack, a requeue
//! (in place for a request; republished, through a delay queue when it waits, for an event)
//! and a dead letter.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use basidia_core::internal::lost;
use basidia_core::{BrokerError, Message, Settle};
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, LongString};

use crate::connect::{Inner, Live};
use crate::consumers::ConsumerChannel;
use crate::dead_letters::DEAD_LETTER_EXCHANGE;
use crate::events::{delay_queue, DELAY_EXCHANGE};
use crate::wire;

/// How one delivery is settled, on the channel and connection it came on.
pub(crate) struct AmqpSettle {
    pub(crate) inner: Weak<Inner>,
    pub(crate) live: Arc<Live>,
    pub(crate) channel: Arc<ConsumerChannel>,
    pub(crate) tag: u64,
    pub(crate) queue: String,
    pub(crate) original_key: String,
    /// A request rather than an event: requeued in place, keeping the routing key that names
    /// its method.
    pub(crate) rpc: bool,
}

impl AmqpSettle {
    async fn ack_original(&self) -> Result<(), BrokerError> {
        self.channel
            .channel
            .basic_ack(self.tag, BasicAckOptions::default())
            .await
            .map_err(lost)
    }
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn reply(&self, request: &Message, reply: Message) -> Result<(), BrokerError> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(BrokerError::Closed);
        };
        let (Some(reply_to), Some(correlation_id)) = (&request.reply_to, &request.correlation_id)
        else {
            return Err(BrokerError::NoReplyTo);
        };
        let mut reply = reply;
        reply.correlation_id = Some(correlation_id.clone());
        let props = wire::properties(&reply, &[]).with_delivery_mode(wire::TRANSIENT);
        // The reply is not confirmed: the request is acked right after, and a caller that misses
        // its reply through a broker failure sees ConnectionLost or its deadline.
        self.live
            .channels
            .rpc()
            .basic_publish(
                inner.options.rpc_exchange.as_str().into(),
                reply_to.as_str().into(),
                BasicPublishOptions::default(),
                &reply.body,
                props,
            )
            .await
            .map_err(lost)?;
        Ok(())
    }

    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.ack_original().await
    }

    async fn requeue(
        self: Box<Self>,
        message: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        if self.rpc {
            return self
                .channel
                .channel
                .basic_nack(
                    self.tag,
                    BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    },
                )
                .await
                .map_err(lost);
        }
        let extra = [
            (
                wire::DELIVERY_COUNT_HEADER,
                AMQPValue::LongLongInt(i64::from(message.delivery_count)),
            ),
            (
                wire::ROUTING_KEY_HEADER,
                AMQPValue::LongString(LongString::from(self.original_key.as_str())),
            ),
        ];
        let Some(inner) = self.inner.upgrade() else {
            return Err(BrokerError::Closed);
        };
        let (exchange, key) = if delay.is_zero() {
            (String::new(), self.queue.clone())
        } else {
            let ms = delay_queue(&inner, &self.live, delay).await?;
            (DELAY_EXCHANGE.to_string(), format!("{ms}.{}", self.queue))
        };
        // Republish first, then ack: a failure in between duplicates, never loses.
        self.live
            .publish_confirmed(
                &inner,
                inner.options.publish_timeout,
                &exchange,
                &key,
                &message,
                &extra,
            )
            .await?;
        self.ack_original().await
    }

    async fn dead_letter(
        self: Box<Self>,
        message: Message,
        reason: &str,
    ) -> Result<(), BrokerError> {
        tracing::warn!(queue = %self.queue, routing_key = %self.original_key, reason, "message dead-lettered");
        let extra = [
            (
                wire::DELIVERY_COUNT_HEADER,
                AMQPValue::LongLongInt(i64::from(message.delivery_count)),
            ),
            (
                wire::ROUTING_KEY_HEADER,
                AMQPValue::LongString(LongString::from(self.original_key.as_str())),
            ),
            (
                wire::REASON_HEADER,
                AMQPValue::LongString(LongString::from(reason)),
            ),
            (
                wire::QUEUE_HEADER,
                AMQPValue::LongString(LongString::from(self.queue.as_str())),
            ),
            (
                wire::DEAD_LETTER_ID_HEADER,
                AMQPValue::LongString(LongString::from(uuid::Uuid::new_v4().simple().to_string())),
            ),
            (
                wire::DEAD_LETTERED_AT_HEADER,
                AMQPValue::LongLongInt(basidia_core::context::epoch_ms_after(Duration::ZERO)),
            ),
        ];
        let key = format!("{}.{}", self.queue, self.original_key);
        let Some(inner) = self.inner.upgrade() else {
            return Err(BrokerError::Closed);
        };
        self.live
            .publish_confirmed(
                &inner,
                inner.options.publish_timeout,
                DEAD_LETTER_EXCHANGE,
                &key,
                &message,
                &extra,
            )
            .await?;
        self.ack_original().await
    }

    fn abandon(self: Box<Self>, _message: Message) {
        if self.channel.stopped.is_cancelled() {
            // The consumer is stopping: a requeue now could come straight back to it. The
            // channel's close requeues this delivery with the others left unsettled.
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = self
                    .channel
                    .channel
                    .basic_nack(
                        self.tag,
                        BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        },
                    )
                    .await;
            });
        }
    }
}
