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
//!
//! Publishing itself takes no future: the outbox holds a clone of the client and hands it each
//! message through its `Sink` side, which puts the message straight into the client's command
//! queue when the queue has room (it holds thousands). Only when it is full does a publisher
//! wait, on a boxed future of its own. So the futures of calls and replies, which are moved
//! and boxed with everything they may hold, carry no publishing state.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use async_nats::message::OutboundMessage;
use async_nats::{HeaderMap, Subject};
use basidia_core::BrokerError;
use bytes::Bytes;
use futures_util::Sink;

use basidia_core::internal::{lock, lost};

use crate::connect::Inner;
use crate::Padded;

/// One request or reply waiting to be published.
#[derive(Clone)]
pub(super) struct Outgoing {
    pub(super) subject: Subject,
    /// For a request: its reply subject and call number.
    pub(super) call: Option<(Subject, u64)>,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// What the sender of a request or reply does after [`Outbox::offer`].
#[must_use]
enum Offer {
    /// Nothing: a leader publishes it.
    Queued,
    /// Publish it now.
    Alone(Outgoing),
    /// Lead the batch it opened: [`lead`].
    Lead,
}

/// Sends a request or reply still counted in flight: queued for the batch's leader, published
/// at once when nobody else will publish soon, or, when it opens a batch, published with the
/// batch after a yield.
pub(super) async fn send(inner: &Arc<Inner>, out: Outgoing) {
    match inner.outbox.offer(out) {
        Offer::Queued => {}
        Offer::Alone(out) => publish(inner, std::iter::once(out)).await,
        // Once per batch: boxed, so that every sender's future need not hold its state.
        Offer::Lead => Box::pin(lead(inner)).await,
    }
}

/// The queue of requests and replies of one connection.
pub(super) struct Outbox {
    state: Padded<Mutex<State>>,
    /// Requests received on the connection and not yet answered (or given up), and calls
    /// waiting for their replies.
    in_flight: Padded<AtomicUsize>,
    /// A clone of the connection's client, used as a `Sink` (whose state is its own).
    sink: Padded<Mutex<async_nats::Client>>,
}

#[derive(Default)]
struct State {
    queue: Vec<Outgoing>,
    /// A worker or caller has queued the first message and will publish the queue after a
    /// yield.
    leader: bool,
}

impl Outbox {
    /// The outbox of `client`'s connection.
    pub(super) fn new(client: &async_nats::Client) -> Self {
        Outbox {
            state: Padded::default(),
            in_flight: Padded::default(),
            sink: Padded(Mutex::new(client.clone())),
        }
    }

    /// Counts a request received or a call made; [`Outbox::finished`] must follow. Returns how
    /// many were in flight before.
    pub(super) fn started(&self) -> usize {
        self.in_flight.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a request answered or given up, or a call ended.
    pub(super) fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Offers a request or reply still counted in flight: queued for a leader to publish, or
    /// handed back to publish at once (nobody else will publish soon), or queued with the caller
    /// made the leader, who must then run [`lead`].
    fn offer(&self, out: Outgoing) -> Offer {
        let mut state = lock(&self.state);
        if state.leader {
            // The leader publishes it.
            state.queue.push(out);
            Offer::Queued
        } else if self.in_flight.load(Ordering::Relaxed) > 1 {
            state.queue.push(out);
            state.leader = true;
            Offer::Lead
        } else {
            Offer::Alone(out)
        }
    }

    /// Publishes everything queued so far.
    pub(super) async fn flush(&self, inner: &Arc<Inner>) {
        publish(inner, self.take()).await;
    }

    /// Takes everything queued; whoever queues next starts a new batch.
    fn take(&self) -> Vec<Outgoing> {
        let mut state = lock(&self.state);
        state.leader = false;
        std::mem::take(&mut state.queue)
    }
}

/// Leads a batch: lets the workers and callers that are ready to run queue their messages too,
/// then publishes everything queued.
async fn lead(inner: &Arc<Inner>) {
    let leader = Leader(inner);
    tokio::task::yield_now().await;
    std::mem::forget(leader);
    publish(inner, inner.outbox.take()).await;
}

/// The worker that is to publish a batch. Should its task be cancelled while it lets the others
/// queue (a service stopping), the batch goes out from a task of its own rather than stay
/// queued behind an outbox nobody flushes.
struct Leader<'a>(&'a Arc<Inner>);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        publish_elsewhere(self.0, self.0.outbox.take());
    }
}

/// Messages a publisher waits to hand over. Should its task be cancelled while it waits, the
/// rest go out from a task of their own rather than be lost.
struct Unsent<'a> {
    inner: &'a Arc<Inner>,
    /// In order; the first is the one waiting for room.
    batch: VecDeque<Outgoing>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        publish_elsewhere(self.inner, self.batch.drain(..).collect());
    }
}

/// Publishes `batch` from a task of its own.
fn publish_elsewhere(inner: &Arc<Inner>, batch: Vec<Outgoing>) {
    if batch.is_empty() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(publish_owned(Arc::clone(inner), batch));
    }
}

async fn publish_owned(inner: Arc<Inner>, batch: Vec<Outgoing>) {
    publish(&inner, batch).await;
}

/// Publishes `batch`, in order.
async fn publish(inner: &Arc<Inner>, batch: impl IntoIterator<Item = Outgoing>) {
    if let Some(rest) = hand_over(inner, batch) {
        Box::pin(publish_waiting(inner, rest)).await;
    }
}

/// Hands `batch` to the client, in order, while its command queue has room; returns the rest
/// should it fill up.
fn hand_over(inner: &Inner, batch: impl IntoIterator<Item = Outgoing>) -> Option<Vec<Outgoing>> {
    let mut batch = batch.into_iter();
    let mut sink = lock(&inner.outbox.sink);
    let mut cx = Context::from_waker(Waker::noop());
    while let Some(out) = batch.next() {
        match Pin::new(&mut *sink).poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {
                let (message, call, size) = outbound(out);
                let sent = Pin::new(&mut *sink).start_send(message);
                settle(inner, sent, call, size);
            }
            Poll::Ready(Err(e)) => settle(inner, Err(e), out.call.map(|c| c.1), 0),
            // Full: these wait for room with wakers of their own. The sink is replaced, which
            // gives up its own place in the wait for room (with nobody to poll it, it would
            // hold the room it was given, and with a queue of one, keep everyone waiting).
            Poll::Pending => {
                *sink = inner.client.clone();
                return Some(std::iter::once(out).chain(batch).collect());
            }
        }
    }
    None
}

/// Publishes `batch` one message after another, each waiting for room in the client's queue.
fn publish_waiting(
    inner: &Arc<Inner>,
    batch: Vec<Outgoing>,
) -> impl Future<Output = ()> + Send + '_ {
    use async_nats::client::traits::Publisher as _;
    async move {
        let mut unsent = Unsent {
            inner,
            batch: batch.into(),
        };
        while let Some(out) = unsent.batch.front() {
            // A copy waits for room; the message stays unsent until the client has taken it.
            let (message, call, size) = outbound(out.clone());
            let sent = inner.client.publish_message(message).await;
            unsent.batch.pop_front();
            settle(inner, sent, call, size);
        }
    }
}

/// The client's form of `out`, its call number and body size. Empty headers are left out: a
/// plain `PUB`.
fn outbound(out: Outgoing) -> (OutboundMessage, Option<u64>, usize) {
    let (reply, call) = match out.call {
        Some((reply, id)) => (Some(reply), Some(id)),
        None => (None, None),
    };
    let size = out.body.len();
    let message = OutboundMessage {
        subject: out.subject,
        reply,
        payload: out.body,
        headers: Some(out.headers).filter(|h| !h.is_empty()),
    };
    (message, call, size)
}

/// Fails the call whose request could not be published; logs a reply that could not be.
fn settle(
    inner: &Inner,
    sent: Result<(), async_nats::client::PublishError>,
    call: Option<u64>,
    size: usize,
) {
    match (sent, call) {
        (Ok(()), _) => {}
        (Err(e), Some(id)) => {
            let error = match e.kind() {
                async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                    BrokerError::PayloadTooLarge {
                        size,
                        max: inner.max_payload.load(Ordering::Relaxed),
                    }
                }
                _ => lost(e),
            };
            inner.calls.pending.fail(id, error);
        }
        // Only a closed client refuses a reply; the caller's deadline reports it.
        (Err(e), None) => tracing::warn!("cannot publish an RPC reply: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A publisher dropped while it waits for room (its task cancelled) leaves the messages it
    /// had not handed over to a task of their own: all of them arrive.
    #[tokio::test]
    async fn a_publisher_dropped_while_waiting_for_room_loses_nothing() {
        let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
            return;
        };
        let mut options = crate::NatsOptions::new(&url);
        options.command_queue = 1;
        let broker = crate::NatsBroker::connect_with(options)
            .await
            .expect("a connection");
        let inner = &broker.inner;
        let subject = format!("t.outbox.{}", std::process::id());
        let watcher = async_nats::connect(url.as_str()).await.unwrap();
        let mut seen = watcher.subscribe(subject.clone()).await.unwrap();
        // A client's flush only writes the SUB out: the server surely has it once a message
        // published after it arrives. Until then a publish could find no subscriber.
        loop {
            inner
                .client
                .publish(subject.clone(), Bytes::from_static(READY))
                .await
                .unwrap();
            let probe = tokio::time::timeout(std::time::Duration::from_millis(200), seen.next());
            if let Ok(Some(_)) = probe.await {
                break;
            }
        }
        const N: usize = 50;
        const READY: &[u8] = b"ready";
        let batch: Vec<Outgoing> = (0..N)
            .map(|i| Outgoing {
                subject: subject.as_str().into(),
                call: None,
                headers: HeaderMap::new(),
                body: Bytes::from(i.to_string()),
            })
            .collect();
        // One poll on this thread: the connection task cannot drain the queue meanwhile, so the
        // publisher is left waiting for room with most of the batch; then it is dropped.
        let mut publishing = Box::pin(publish(inner, batch));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(publishing.as_mut().poll(&mut cx).is_pending());
        drop(publishing);
        let mut got = Vec::new();
        while got.len() < N {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), seen.next())
                .await
                .unwrap_or_else(|_| panic!("only {} of {N} arrived: {got:?}", got.len()))
                .expect("subscription open");
            if m.payload != READY {
                // (A late probe is not one of the batch.)
                got.push(String::from_utf8(m.payload.to_vec()).unwrap());
            }
        }
        let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
        assert_eq!(got, expected, "all of them, in order");
    }
}
