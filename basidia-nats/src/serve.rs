//! Serving RPC: a queue subscription per service, and settling its requests (replies to the
//! caller's inbox; nothing to ack).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use basidia_core::internal::{backend, lock};
use basidia_core::{BrokerError, ConsumeOptions, Delivery, Message, Settle, Subscription};
use futures_util::StreamExt;

use crate::{
    connect::{until_cancelled, NatsBroker},
    dead_letters::{publish_dead_letter, Origin},
    outbox, srv,
    wire::*,
};

impl NatsBroker {
    pub(crate) async fn serve_rpc(
        &self,
        service: &str,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.check()?;
        let group = format!("basidia.rpc.{service}");
        let sub = self
            .inner
            .client
            .queue_subscribe(format!("basidia.rpc.{service}.*"), group.clone())
            .await
            .map_err(backend)?;
        let cancel = self.inner.shutdown.child_token();
        let instance = Arc::new(srv::SrvInstance::new(service, &options.endpoints, group));
        self.serve_srv_api(Arc::clone(&instance), cancel.clone())
            .await?;
        // Requests go from the client's subscription buffer straight to the consume loop, with no
        // task between. The buffer is bounded (`subscription_buffer_bytes`); should a service fall
        // that far behind, the client drops the excess, the broker logs it as a slow consumer,
        // and the callers' deadlines report it, as with any request core NATS could not deliver.
        let broker = self.clone();
        let prefix = format!("basidia.rpc.{service}.");
        let endpoint = Arc::new(CoreEndpoint {
            broker: self.clone(),
            dead_letter_subject: format!("basidia.deadletter.rpc.{service}"),
            queue: basidia_core::rpc_queue_name(service),
            srv: Some(Arc::clone(&instance)),
        });
        let deliveries = until_cancelled(sub, cancel.clone()).map(move |mut msg| {
            let method = msg
                .subject
                .as_str()
                .strip_prefix(prefix.as_str())
                .unwrap_or(msg.subject.as_str())
                .to_string();
            broker.inner.outbox.started();
            let mut message = message_of(&mut msg, 1);
            // A "reply subject" of the server's own API is no caller's inbox: such a request has
            // nowhere to be answered.
            let reply_to = msg.reply.take().filter(|r| !is_server_api(r));
            if reply_to.is_none() {
                message.reply_to = None;
            }
            let settle = CoreSettle {
                endpoint: Arc::clone(&endpoint),
                started: Instant::now(),
                slot: Some(instance.slot(&method)),
                reply_to: Mutex::new(reply_to),
            };
            Delivery::new(message, method, Box::new(settle))
        });
        Ok(Subscription::from_stream(deliveries, self.guard(cancel)))
    }
}

/// What the deliveries of one core-NATS subscription share: one reference per delivery rather
/// than one for each part (each a count both cores write to).
pub(crate) struct CoreEndpoint {
    pub(crate) broker: NatsBroker,
    pub(crate) dead_letter_subject: String,
    /// The queue group (RPC) or handler queue (broadcast) it stands for, named in dead letters.
    pub(crate) queue: String,
    /// The service's figures for the services API; set for RPC requests, which the outbox also
    /// counts in flight until their settle is dropped.
    pub(crate) srv: Option<Arc<srv::SrvInstance>>,
}

/// Settles a core-NATS delivery (RPC requests, broadcast events): there is nothing to ack;
/// replies go to the request's inbox; dead letters go to the dead-letter stream.
pub(crate) struct CoreSettle {
    pub(crate) endpoint: Arc<CoreEndpoint>,
    pub(crate) started: Instant,
    /// Where this request counts in the services-API figures (RPC requests).
    pub(crate) slot: Option<srv::Slot>,
    /// The request's reply subject, kept as the client read it (no copy to publish to).
    /// Taken by the reply (a request has one answer): a clone would cost the subject's buffer a
    /// shared header of its own.
    pub(crate) reply_to: Mutex<Option<async_nats::Subject>>,
}

impl Drop for CoreSettle {
    fn drop(&mut self) {
        if self.endpoint.srv.is_some() {
            self.endpoint.broker.inner.outbox.finished();
        }
    }
}

#[async_trait]
impl Settle for CoreSettle {
    async fn reply(&self, _request: &Message, reply: Message) -> Result<(), BrokerError> {
        let Some(to) = lock(&self.reply_to).take() else {
            return Err(BrokerError::NoReplyTo);
        };
        if is_server_api(&to) {
            // A reply there would be a request to the server itself: `$JS.API.STREAM.PURGE.<s>`
            // purges a stream, `$JS.API.STREAM.DELETE.<s>` deletes one, in the name of this
            // service's credentials. Callers' inboxes never start with `$`.
            tracing::warn!(subject = %to, "refusing to reply to a server API subject");
            return Err(BrokerError::NoReplyTo);
        }
        let endpoint = &*self.endpoint;
        if let (Some(srv), Some(slot)) = (&endpoint.srv, &self.slot) {
            srv.record(slot, self.started.elapsed(), reply.error.as_deref());
        }
        endpoint.broker.check()?;
        let inner = &endpoint.broker.inner;
        let reply = outbox::Outgoing {
            subject: to,
            call: None,
            headers: to_nats_headers(&reply),
            body: reply.body,
        };
        outbox::send(inner, reply).await;
        Ok(())
    }

    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn requeue(
        self: Box<Self>,
        _message: Message,
        _delay: Duration,
    ) -> Result<(), BrokerError> {
        // Core NATS keeps no copy to redeliver; the caller's deadline covers a lost request.
        Ok(())
    }

    async fn dead_letter(
        self: Box<Self>,
        message: Message,
        reason: &str,
    ) -> Result<(), BrokerError> {
        let endpoint = &*self.endpoint;
        let origin = Origin {
            queue: &endpoint.queue,
            subject: None,
        };
        publish_dead_letter(
            &endpoint.broker,
            &endpoint.dead_letter_subject,
            message,
            reason,
            origin,
        )
        .await
    }

    fn abandon(self: Box<Self>, _message: Message) {}
}
