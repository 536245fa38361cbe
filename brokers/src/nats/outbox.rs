//! Requests and replies leave through one outbox per connection, published in batches.
//!
//! Every publish wakes the client's connection task, and every time that task runs it writes
//! what it has in a `writev` of its own, which the server then reads on its own. Published one
//! by one, requests and replies under load would cost a system call (and a server read) each.
//! So they are gathered and published together:
//!
//! - A worker run on its service's consume loop (the usual case) publishes its reply at once:
//!   the loop runs one worker after another, and the connection task, woken by the first
//!   reply, finds the ones published meanwhile.
//! - A worker that had to wait (a call of its own, a query) finishes on a task of its own. If
//!   other requests are in flight, the first such worker to find the queue empty becomes the
//!   one that publishes: it lets the other ready tasks run and queue their replies, then
//!   publishes everything gathered. Otherwise its reply goes out at once.
//! - Calls do the same: when other requests or calls are in flight on the connection, the first
//!   call to find the queue empty lets the other ready tasks (other callers) queue their
//!   requests and publishes them all; a lone call publishes at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::{HeaderMap, Subject};
use basidia_core::BrokerError;
use bytes::Bytes;

use super::Inner;

/// One request or reply waiting to be published.
pub(super) struct Outgoing {
    pub(super) subject: Subject,
    /// For a request: its reply subject and call number.
    pub(super) call: Option<(Subject, u64)>,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// The queue of requests and replies of one connection.
#[derive(Default)]
pub(super) struct Outbox {
    state: Mutex<State>,
    /// Requests received on the connection and not yet answered (or given up), and calls
    /// waiting for their replies.
    in_flight: AtomicUsize,
}

#[derive(Default)]
struct State {
    queue: Vec<Outgoing>,
    /// A worker or caller has queued the first message and will publish the queue after a
    /// yield.
    leader: bool,
}

impl Outbox {
    /// Counts a request received or a call made; [`Outbox::finished`] must follow. Returns how
    /// many were in flight before.
    pub(super) fn started(&self) -> usize {
        self.in_flight.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a request answered or given up, or a call ended.
    pub(super) fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Queues a request or reply still counted in flight, or publishes it when nobody else
    /// will publish soon.
    pub(super) async fn send(&self, inner: &Arc<Inner>, reply: Outgoing) {
        let alone = {
            let mut state = super::lock(&self.state);
            if state.leader {
                // The leader publishes it.
                state.queue.push(reply);
                return;
            }
            if self.in_flight.load(Ordering::Relaxed) > 1 {
                state.queue.push(reply);
                state.leader = true;
                None
            } else {
                Some(reply)
            }
        };
        if let Some(reply) = alone {
            publish(inner, reply).await;
            return;
        }
        let mut leader = Leader { inner, batch: None };
        // Let the workers and callers that are ready to run queue their messages too.
        tokio::task::yield_now().await;
        leader.batch = Some(self.take().into_iter());
        leader.publish().await;
    }

    /// Publishes everything queued so far.
    pub(super) async fn flush(&self, inner: &Arc<Inner>) {
        let mut leader = Leader {
            inner,
            batch: Some(self.take().into_iter()),
        };
        leader.publish().await;
    }

    /// Takes everything queued; whoever queues next starts a new batch.
    fn take(&self) -> Vec<Outgoing> {
        let mut state = super::lock(&self.state);
        state.leader = false;
        std::mem::take(&mut state.queue)
    }
}

/// The worker publishing a batch. Should its task be cancelled before it is done (a service
/// stopping), the replies it was responsible for go out from a task of their own rather than
/// stay queued behind an outbox nobody flushes.
struct Leader<'a> {
    inner: &'a Arc<Inner>,
    batch: Option<std::vec::IntoIter<Outgoing>>,
}

impl Leader<'_> {
    async fn publish(&mut self) {
        while let Some(reply) = self.batch.as_mut().and_then(Iterator::next) {
            publish(self.inner, reply).await;
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let rest: Vec<Outgoing> = match self.batch.take() {
            Some(batch) => batch.collect(),
            None => self.inner.outbox.take(),
        };
        publish_elsewhere(self.inner, rest);
    }
}

/// Publishes `batch` from a task of its own.
fn publish_elsewhere(inner: &Arc<Inner>, batch: Vec<Outgoing>) {
    if batch.is_empty() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(publish_all(Arc::clone(inner), batch));
    }
}

async fn publish_all(inner: Arc<Inner>, batch: Vec<Outgoing>) {
    for out in batch {
        publish(&inner, out).await;
    }
}

async fn publish(inner: &Inner, out: Outgoing) {
    let client = &inner.client;
    let size = out.body.len();
    // The client sends a message whose headers are empty as a plain `PUB`, as it would one
    // published without headers.
    let (sent, call) = match out.call {
        None => (
            client
                .publish_with_headers(out.subject, out.headers, out.body)
                .await,
            None,
        ),
        Some((reply, id)) => (
            client
                .publish_with_reply_and_headers(out.subject, reply, out.headers, out.body)
                .await,
            Some(id),
        ),
    };
    match (sent, call) {
        (Ok(()), _) => {}
        (Err(e), Some(id)) => {
            let error = match e.kind() {
                async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                    BrokerError::PayloadTooLarge {
                        size,
                        max: inner.max_payload.load(std::sync::atomic::Ordering::Relaxed),
                    }
                }
                _ => super::lost(e),
            };
            inner.calls.pending.fail(id, error);
        }
        // Only a closed client refuses a reply; the caller's deadline reports it.
        (Err(e), None) => tracing::warn!("cannot publish an RPC reply: {e}"),
    }
}
