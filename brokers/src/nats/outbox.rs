//! Replies leave through one outbox per connection, published in batches.
//!
//! A worker that had to wait (a call of its own, a query) finishes on a task of its own. Were
//! each such worker to publish its reply itself, the client's connection task would be woken
//! after every one and write every reply in a `writev` of its own: under load, most of the
//! time would go to system calls and to the server reading them one by one. Such workers
//! instead queue their replies here. The worker that finds the outbox
//! empty becomes the one that publishes: it first lets the other ready tasks (the other
//! workers) run and queue their replies, then publishes everything gathered, so that the
//! connection task finds a batch and writes it at once. When no other request is in flight (as
//! when workers finish on the service's consume loop, one after the other) the reply goes out at
//! once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;

/// One reply waiting to be published.
pub(super) struct Outgoing {
    pub(super) subject: Subject,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// The queue of replies of one connection.
#[derive(Default)]
pub(super) struct Outbox {
    queue: Mutex<Vec<Outgoing>>,
    /// Requests received on the connection and not yet answered (or given up).
    in_flight: AtomicUsize,
}

impl Outbox {
    /// Counts a request received; [`Outbox::finished`] must follow.
    pub(super) fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request answered or given up.
    pub(super) fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Queues the reply to a request still counted in flight; the caller that found the outbox
    /// empty publishes the batch.
    pub(super) async fn send(&self, client: &async_nats::Client, reply: Outgoing) {
        if self.in_flight.load(Ordering::Relaxed) <= 1 {
            // Nobody to gather with (the usual case when workers finish on the consume loop).
            publish(client, reply).await;
            return;
        }
        let first = {
            let mut queue = super::lock(&self.queue);
            queue.push(reply);
            queue.len() == 1
        };
        if first {
            let mut leader = Leader {
                outbox: self,
                client,
                batch: None,
            };
            // Let the workers that are ready to run finish and queue their replies too.
            tokio::task::yield_now().await;
            leader.batch = Some(self.take().into_iter());
            leader.publish().await;
        }
    }

    /// Publishes everything queued so far.
    pub(super) async fn flush(&self, client: &async_nats::Client) {
        let mut leader = Leader {
            outbox: self,
            client,
            batch: Some(self.take().into_iter()),
        };
        leader.publish().await;
    }

    fn take(&self) -> Vec<Outgoing> {
        std::mem::take(&mut *super::lock(&self.queue))
    }
}

/// The worker publishing a batch. Should its task be cancelled before it is done (a service
/// stopping), the replies it was responsible for go out from a task of their own rather than
/// stay queued behind an outbox nobody flushes.
struct Leader<'a> {
    outbox: &'a Outbox,
    client: &'a async_nats::Client,
    batch: Option<std::vec::IntoIter<Outgoing>>,
}

impl Leader<'_> {
    async fn publish(&mut self) {
        while let Some(reply) = self.batch.as_mut().and_then(Iterator::next) {
            publish(self.client, reply).await;
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let rest: Vec<Outgoing> = match self.batch.take() {
            Some(batch) => batch.collect(),
            None => self.outbox.take(),
        };
        if rest.is_empty() {
            return;
        }
        let client = self.client.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for reply in rest {
                    publish(&client, reply).await;
                }
            });
        }
    }
}

async fn publish(client: &async_nats::Client, reply: Outgoing) {
    let sent = if reply.headers.is_empty() {
        client.publish(reply.subject, reply.body).await
    } else {
        client
            .publish_with_headers(reply.subject, reply.headers, reply.body)
            .await
    };
    if let Err(e) = sent {
        // Only a closed client refuses a publish; the caller's deadline reports it.
        tracing::warn!("cannot publish an RPC reply: {e}");
    }
}
