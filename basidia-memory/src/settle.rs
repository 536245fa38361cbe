//! Settling a delivery: the reply to a request, the ack, a requeue (after a delay if asked
//! for) and a dead letter, each freeing the consumer's place under its prefetch.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use basidia_core::internal::lock;
use basidia_core::{BrokerError, Message, Settle};

use crate::hub::{enqueue, pump, read, Entry, Queue, QueueState};

/// How one delivery is settled, on the queue it came from.
pub(crate) struct MemorySettle {
    pub(crate) queue: Arc<Queue>,
    pub(crate) consumer: u64,
    pub(crate) routing_key: String,
}

impl MemorySettle {
    fn release(&self, st: &mut QueueState) {
        if let Some(c) = st.consumers.iter_mut().find(|c| c.id == self.consumer) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }

    fn put_back(self, message: Message) {
        let routing_key = self.routing_key;
        let mut st = lock(&self.queue.state);
        if let Some(c) = st.consumers.iter_mut().find(|c| c.id == self.consumer) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        enqueue(
            &self.queue,
            &mut st,
            Entry {
                message,
                routing_key,
            },
            true,
        );
        pump(&self.queue, &mut st);
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn reply(&self, request: &Message, reply: Message) -> Result<(), BrokerError> {
        let Some(hub) = self.queue.hub.upgrade() else {
            return Err(BrokerError::Closed);
        };
        let (Some(reply_to), Some(correlation_id)) = (&request.reply_to, &request.correlation_id)
        else {
            return Err(BrokerError::NoReplyTo);
        };
        let pending = read(&hub.replies).get(reply_to).and_then(Weak::upgrade);
        if let Some(pending) = pending {
            let waiter = lock(&pending.calls).remove(correlation_id);
            if let Some(tx) = waiter {
                let mut reply = reply;
                reply.correlation_id = Some(correlation_id.clone());
                let _ = tx.send(reply);
            }
        }
        // A reply nobody waits for any more is dropped, as a broker drops a reply to a queue
        // that expired.
        Ok(())
    }

    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        let mut st = lock(&self.queue.state);
        self.release(&mut st);
        pump(&self.queue, &mut st);
        Ok(())
    }

    async fn requeue(
        self: Box<Self>,
        message: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        if delay.is_zero() {
            self.put_back(message);
            return Ok(());
        }
        // As a broker's delay queue would: the consumer's place is free at once, and the message
        // is back in its queue once the delay has passed.
        {
            let mut st = lock(&self.queue.state);
            self.release(&mut st);
            pump(&self.queue, &mut st);
        }
        let queue = Arc::clone(&self.queue);
        let routing_key = self.routing_key;
        let requeue = move || {
            let mut st = lock(&queue.state);
            enqueue(
                &queue,
                &mut st,
                Entry {
                    message,
                    routing_key,
                },
                false,
            );
            pump(&queue, &mut st);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    tokio::time::sleep(delay).await;
                    requeue();
                });
            }
            Err(_) => requeue(),
        }
        Ok(())
    }

    async fn dead_letter(
        self: Box<Self>,
        message: Message,
        reason: &str,
    ) -> Result<(), BrokerError> {
        {
            let mut st = lock(&self.queue.state);
            self.release(&mut st);
            pump(&self.queue, &mut st);
        }
        if let Some(hub) = self.queue.hub.upgrade() {
            hub.dead_letter(&self.queue.name, self.routing_key, message, reason);
        }
        Ok(())
    }

    fn abandon(self: Box<Self>, message: Message) {
        self.put_back(message);
    }
}
