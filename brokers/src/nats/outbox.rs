//! Replies leave through one outbox per connection, published in batches.
//!
//! Each RPC worker is a task of its own. Were each to publish its reply itself, the client's
//! connection task would be woken after every worker and write every reply in a `writev` of
//! its own: under load, most of the time would go to system calls and to the server reading
//! them one by one. Workers instead queue their replies here; one task publishes whatever has
//! gathered, after letting the other ready tasks (the other workers) run first, so that the
//! connection task finds a batch and writes it at once. When the service is idle the batch is
//! a single reply and the detour costs a task switch.

use std::sync::{Arc, Mutex};

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    ready: Notify,
}

impl Outbox {
    /// Starts the task that publishes queued replies on `client` until `shutdown`.
    pub(super) fn start(client: async_nats::Client, shutdown: CancellationToken) -> Arc<Self> {
        let outbox = Arc::new(Outbox::default());
        let task = Arc::clone(&outbox);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = task.ready.notified() => {}
                    () = shutdown.cancelled() => break,
                }
                // Let the workers that are ready to run finish and queue their replies too.
                tokio::task::yield_now().await;
                task.flush(&client).await;
            }
            task.flush(&client).await;
        });
        outbox
    }

    /// Queues a reply.
    pub(super) fn push(&self, reply: Outgoing) {
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push(reply);
            queue.len() == 1
        };
        if first {
            self.ready.notify_one();
        }
    }

    /// Publishes everything queued so far.
    pub(super) async fn flush(&self, client: &async_nats::Client) {
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        for reply in batch {
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
    }
}
