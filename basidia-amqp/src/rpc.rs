//! RPC: calls (a request published mandatory, its caller waiting in the pending map for the
//! reply `channels::route_replies` hands over) and the service queues requests are routed to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use basidia_core::internal::{backend_msg, lock, lost, lost_msg};
use basidia_core::{BrokerError, ConsumeOptions, Message};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use tokio::sync::oneshot;

use crate::connect::{bind_queue, declare_durable_queue, owned_queue_args, AmqpBroker, Inner};
use crate::wire;

/// The calls waiting for their replies, by correlation id.
pub(crate) type PendingMap = HashMap<String, oneshot::Sender<Result<Message, BrokerError>>>;

impl AmqpBroker {
    /// Publishes a request for `service.method` and waits for its reply, both within `timeout`.
    pub(crate) async fn send_request(
        &self,
        service: &str,
        method: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BrokerError> {
        let live = self.live()?;
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut pending = lock(&self.inner.pending);
            pending.insert(correlation_id.clone(), tx);
            pending.len() == 1
        };
        if first {
            self.inner.calls_started.notify_one();
        }
        // However the call ends, even with its future dropped by the caller, its entry goes.
        let registration = Registration {
            pending: &self.inner.pending,
            id: correlation_id,
        };
        let mut message = request;
        message.correlation_id = Some(registration.id.clone());
        message.reply_to = Some(self.inner.reply_key.clone());
        let props = wire::properties(&message, &[]).with_delivery_mode(wire::TRANSIENT);
        // The deadline covers the publish too: a connection the broker has blocked (a memory or
        // disk alarm) takes no frames, and the publish would wait for the alarm to clear.
        let exchange = self.inner.options.rpc_exchange.as_str();
        let routing_key = format!("{service}.{method}");
        let exchange_call = async {
            live.channels
                .rpc()
                .basic_publish(
                    exchange.into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    props,
                )
                .await
                .map_err(lost)?;
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(lost_msg(
                    "the connection dropped while the call was in flight",
                )),
            }
        };
        match tokio::time::timeout(timeout, exchange_call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.inner.publish_timed_out(timeout)),
        }
    }
}

/// A call's place in the pending map, given up when the call ends however it ends.
struct Registration<'a> {
    pending: &'a Mutex<PendingMap>,
    id: String,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

/// Declares a service's queue (with priorities when asked for) and binds it to the RPC
/// exchange by `<service>.*`.
pub(crate) async fn declare_service_queue(
    inner: &Inner,
    channel: &Channel,
    service: &str,
    queue: &str,
    options: &ConsumeOptions,
) -> Result<(), BrokerError> {
    let mut args = FieldTable::default();
    if let Some(p) = options.max_priority {
        if inner.options.quorum_queues {
            return Err(backend_msg(format!(
                "the queue {queue} is to have priorities, which a quorum queue cannot have: \
                 turn off quorum queues or the service's max_priority"
            )));
        }
        args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(p));
    }
    declare_durable_queue(channel, queue, owned_queue_args(&inner.options, args)).await?;
    let key = format!("{service}.*");
    bind_queue(channel, queue, &inner.options.rpc_exchange, &key).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use basidia_core::Broker;

    /// A call whose future the caller drops (a `tokio::time::timeout` around it, a cancelled
    /// task) leaves nothing in the pending map, nor do calls that time out or are answered.
    #[tokio::test]
    async fn dropped_calls_leave_no_registration_behind() {
        let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_AMQP_URL") else {
            return;
        };
        let broker = AmqpBroker::connect(&url).await.expect("connect");
        let service = format!("t_dropped_{}", std::process::id());
        // Served but never answered: requests are routed and wait.
        let sub = broker
            .serve(&service, ConsumeOptions::default())
            .await
            .expect("serve");
        let request = || Message::new(b"{}".to_vec(), "application/json");
        for _ in 0..20 {
            let call = broker.call(&service, "m", request(), Duration::from_secs(30));
            let dropped = tokio::time::timeout(Duration::from_millis(20), call).await;
            assert!(dropped.is_err(), "the call was cut short");
        }
        let timed_out = broker
            .call(&service, "m", request(), Duration::from_millis(50))
            .await;
        assert!(
            matches!(timed_out, Err(BrokerError::Timeout(_))),
            "{timed_out:?}"
        );
        assert_eq!(
            lock(&broker.inner.pending).len(),
            0,
            "calls left registered"
        );
        drop(sub);
        broker.close().await;
    }
}
