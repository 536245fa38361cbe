//! RPC calls with their replies routed by Basidia rather than by the client's request helper.
//!
//! Each connection subscribes once to `<inbox>.*`, where `<inbox>` is a fresh `_INBOX.<nuid>`,
//! and every call publishes its request with the reply subject `<inbox>.<n>`, `n` a random
//! 64-bit number of its own. A dispatcher task hands each reply to the call waiting for `n`.
//! The number is random rather than counted so that a service which has seen one request from
//! a caller (and so its inbox) cannot answer that caller's next calls before their services do:
//! anything published to a subject no call is waiting for is ignored.
//! The server sees the same request/reply exchange as with any NATS client; what it buys is
//! that requests are ordinary publishes, which the outbox can gather into one write when many
//! calls start at once (see `outbox`), and that a dropped connection fails every call in flight
//! from one place, without each call watching the connection.
//!
//! Deadlines are kept here too: every registration carries its call's deadline, and one
//! watchdog task per connection fails the calls whose deadline has passed. A call therefore
//! arms no timer of its own (a timer per call is a registration and a cancellation in the
//! runtime's timer wheel on every call, on the hot path); the watchdog sleeps until the
//! earliest deadline of the calls waiting, which, as calls mostly finish long before their deadlines, means it seldom
//! wakes at all.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_nats::Subject;
use basidia_core::BrokerError;
use futures_util::StreamExt;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{outbox, Padded};
use crate::wire::{fits_subject, message_of, rpc_subject, to_nats_headers};
use basidia_core::envelope::{append_metadata, RequestMetadata};
use basidia_core::internal::{backend, backend_msg, lock, lost, lost_msg};
use basidia_core::Message;

/// What a call receives: the reply, or why there will be none.
pub(super) type Outcome = Result<async_nats::Message, BrokerError>;

/// How many parts the waiting calls are spread over. Callers register on every worker thread
/// while the dispatcher takes replies out on another; with one lock they contend on it, and
/// under load put each other to sleep in the kernel.
const SHARDS: usize = 16;

/// A waiting call: its deadline (in [`Clock`] ticks) and where its outcome goes.
struct Waiting {
    deadline: u64,
    tx: oneshot::Sender<Outcome>,
}

type Shard = HashMap<u64, Waiting, BuildHasherDefault<IdHasher>>;

/// The outcome a call whose deadline passed receives; the call reports it with its timeout.
pub(super) const DEADLINE_PASSED: BrokerError = BrokerError::Timeout(Duration::ZERO);

/// The calls of one connection waiting for their replies.
#[derive(Default)]
pub(super) struct Pending {
    shards: [Padded<Mutex<Shard>>; SHARDS],
    /// When the watchdog will next look, in [`Clock`] ticks; `u64::MAX` while it looks (or
    /// waits for calls), so that every registration then wakes it.
    watchdog_due: Padded<AtomicU64>,
    watchdog: Notify,
}

impl Pending {
    fn shard(&self, id: u64) -> &Mutex<Shard> {
        // Consecutive calls land in different parts.
        &self.shards[(id % SHARDS as u64) as usize]
    }

    fn insert(&self, id: u64, deadline: u64, tx: oneshot::Sender<Outcome>) {
        lock(self.shard(id)).insert(id, Waiting { deadline, tx });
        // The watchdog sleeps until the earliest deadline it saw; an earlier one wakes it.
        // (Most calls share one timeout, so their deadlines come after those already waiting.)
        if deadline < self.watchdog_due.load(Ordering::SeqCst) {
            self.watchdog.notify_one();
        }
    }

    fn take(&self, id: u64) -> Option<oneshot::Sender<Outcome>> {
        lock(self.shard(id)).remove(&id).map(|w| w.tx)
    }

    /// Fails every call waiting now with the error `why` makes.
    pub(super) fn fail_all(&self, why: impl Fn() -> BrokerError) {
        for shard in &self.shards {
            let waiting = std::mem::take(&mut *lock(shard));
            for (_, w) in waiting {
                let _ = w.tx.send(Err(why()));
            }
        }
    }

    /// Fails the calls whose deadline is at or before `now`; returns the earliest deadline of
    /// the calls still waiting, if any wait.
    fn expire(&self, now: u64) -> Option<u64> {
        let mut earliest = None::<u64>;
        let mut passed = Vec::new();
        let mut ids = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            for (id, w) in shard.iter() {
                if w.deadline <= now {
                    ids.push(*id);
                } else {
                    earliest = Some(earliest.map_or(w.deadline, |e| e.min(w.deadline)));
                }
            }
            // Failed outside the lock: sending wakes the call.
            passed.extend(
                ids.drain(..)
                    .filter_map(|id| shard.remove(&id))
                    .map(|w| w.tx),
            );
        }
        for tx in passed {
            let _ = tx.send(Err(DEADLINE_PASSED));
        }
        earliest
    }

    /// Fails calls as their deadlines pass, until `stop`.
    async fn watch_deadlines(self: Arc<Self>, stop: CancellationToken) {
        loop {
            // Registrations from here until the next plan wake the watchdog (see `insert`).
            self.watchdog_due.store(u64::MAX, Ordering::SeqCst);
            let earliest = self.expire(Clock::now());
            let wake = async {
                match earliest {
                    Some(due) => {
                        self.watchdog_due.store(due, Ordering::SeqCst);
                        tokio::select! {
                            () = tokio::time::sleep_until(Clock::instant(due)) => {}
                            () = self.watchdog.notified() => {}
                        }
                    }
                    None => self.watchdog.notified().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = wake => {}
            }
        }
    }

    /// Fails the call `id`, if it still waits.
    pub(super) fn fail(&self, id: u64, error: BrokerError) {
        if let Some(tx) = self.take(id) {
            let _ = tx.send(Err(error));
        }
    }

    fn deliver(&self, id: u64, reply: async_nats::Message) {
        if let Some(tx) = self.take(id) {
            let _ = tx.send(Ok(reply));
        }
    }

    fn forget(&self, id: u64) {
        self.take(id);
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| lock(s).is_empty())
    }
}

/// Deadlines as nanoseconds since a fixed instant, so that one fits an atomic.
struct Clock;

impl Clock {
    fn base() -> Instant {
        static BASE: OnceLock<Instant> = OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    fn ticks(at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(Self::base()).as_nanos()).unwrap_or(u64::MAX)
    }

    fn now() -> u64 {
        Self::ticks(Instant::now())
    }

    fn instant(ticks: u64) -> Instant {
        Self::base() + Duration::from_nanos(ticks)
    }
}

/// Call numbers are unique and sequential: they are their own hash.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Spread sequential numbers over the table's high bits too.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The reply side of a connection's calls.
pub(super) struct Calls {
    /// `<inbox>.`, the reply subject without the call number.
    prefix: String,
    pub(super) pending: Arc<Pending>,
}

impl Calls {
    /// Subscribes to the connection's reply subjects and starts the task that hands replies to
    /// their calls; it stops when `stop` is cancelled or the client closes, failing the calls
    /// still waiting.
    pub(super) async fn start(
        client: &async_nats::Client,
        pending: Arc<Pending>,
        stop: CancellationToken,
    ) -> Result<Self, BrokerError> {
        let mut prefix = client.new_inbox();
        prefix.push('.');
        let replies = client
            .subscribe(format!("{prefix}*"))
            .await
            .map_err(backend)?;
        let calls = Calls {
            prefix: prefix.clone(),
            pending: Arc::clone(&pending),
        };
        let stop_watchdog = stop.clone();
        tokio::spawn(async move {
            let replies = crate::connect::until_cancelled(replies, stop);
            futures_util::pin_mut!(replies);
            while let Some(reply) = replies.next().await {
                let id = reply
                    .subject
                    .as_str()
                    .strip_prefix(prefix.as_str())
                    .and_then(|n| n.parse().ok());
                match id {
                    Some(id) => pending.deliver(id, reply),
                    None => tracing::debug!("ignoring a reply to {}", reply.subject),
                }
            }
            pending.fail_all(|| BrokerError::Closed);
        });
        tokio::spawn(Arc::clone(&calls.pending).watch_deadlines(stop_watchdog));
        Ok(calls)
    }

    /// Registers a new call: its number and where its reply (or its failure, among them
    /// [`DEADLINE_PASSED`] once `deadline` passes) will arrive.
    pub(super) fn register(&self, deadline: Instant) -> Registration<'_> {
        let id = unguessable_id();
        let (tx, answer) = oneshot::channel();
        self.pending.insert(id, Clock::ticks(deadline), tx);
        Registration {
            calls: self,
            id,
            answer,
        }
    }

    /// The reply subject of call `id`.
    pub(super) fn reply_subject(&self, id: u64) -> Subject {
        // Exactly as long as it must be: the client takes such a buffer over as it is, where
        // spare room would cost it a shared header of its own.
        let mut subject = String::with_capacity(self.prefix.len() + decimal_len(id));
        subject.push_str(&self.prefix);
        push_decimal(&mut subject, id);
        Subject::from(subject)
    }
}

/// A registered call. Dropped before its reply (or a failure) came through `answer` (a
/// timeout, a dropped caller, a call the client's own request helper answered), it forgets
/// the registration.
pub(super) struct Registration<'a> {
    calls: &'a Calls,
    pub(super) id: u64,
    pub(super) answer: oneshot::Receiver<Outcome>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if !self.answer.is_terminated() {
            // Closed first, the receiver is not woken by its sender's drop.
            self.answer.close();
            self.calls.pending.forget(self.id);
        }
    }
}

/// A call number nobody can predict from the ones seen before: 64 bits from a
/// cryptographically secure generator (the one behind uuid's v4).
fn unguessable_id() -> u64 {
    let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
    // The version and variant bits are fixed; folding both halves keeps 64 random ones.
    low ^ high.rotate_left(32)
}

/// How many digits `n` has in decimal.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Appends `n` in decimal, without the formatting machinery.
pub(super) fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// How a call was answered.
enum Answer {
    Reply(async_nats::Message),
    /// The server's no-responders status: no instance of the service listens.
    NoResponders,
}

const NO_RESPONDERS: async_nats::StatusCode = async_nats::StatusCode::NO_RESPONDERS;

/// Counts a call out of the outbox's in-flight figure when it ends, however it ends.
struct FinishOnDrop<'a>(&'a outbox::Outbox);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finished();
    }
}

impl crate::NatsBroker {
    pub(crate) async fn rpc_call(
        &self,
        service: &str,
        method: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BrokerError> {
        let state = self.check()?;
        let request = metadata_into_envelope(request);
        if !fits_subject(service) || !fits_subject(method) {
            return Err(backend_msg(format!(
                "cannot call {service:?}.{method:?} over NATS: service and method names must be \
                 non-empty, without whitespace, `*` or `>`"
            )));
        }
        let size = request.body.len();
        let max = self.inner.max_payload.load(Ordering::Relaxed);
        if max > 0 && size > max {
            return Err(BrokerError::PayloadTooLarge { size, max });
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let inner = &self.inner;
        // A responder that subscribed a moment ago may not be visible to this connection's first
        // request yet (the server answers "no responders"): ask once more after a short pause
        // before declaring the service unknown.
        let mut retried = false;
        loop {
            let mut call = inner.calls.register(deadline);
            let alone = inner.outbox.started() == 0;
            let _counted = FinishOnDrop(&inner.outbox);
            // A drop noticed between `check` and the registration failed nothing of this call.
            if self.link_state().generation != state.generation {
                return Err(lost_msg("the connection dropped; reconnecting"));
            }
            let headers = to_nats_headers(&request);
            // No timer of the call's own: the registration fails the call when its deadline
            // passes (see `calls`), as it does when the connection drops.
            let answered = if alone {
                // Nothing to gather with: the client's own request helper answers this call
                // without a hop through the dispatcher.
                let mut req = async_nats::Request::new()
                    .payload(request.body.clone())
                    .timeout(None);
                if !headers.is_empty() {
                    req = req.headers(headers);
                }
                // Boxed: the helper's future is large, and would otherwise make every call's
                // future (moved and boxed whole) larger by as much.
                let subject = async_nats::Subject::from(rpc_subject(service, method));
                let sent = Box::pin(inner.client.send_request(subject, req));
                tokio::select! {
                    r = sent => match r {
                        Ok(reply) => Ok(Answer::Reply(reply)),
                        Err(e) => match e.kind() {
                            async_nats::client::RequestErrorKind::NoResponders => {
                                Ok(Answer::NoResponders)
                            }
                            async_nats::client::RequestErrorKind::MaxPayloadExceeded => {
                                Err(BrokerError::PayloadTooLarge { size, max })
                            }
                            _ => Err(lost(e)),
                        },
                    },
                    failed = &mut call.answer => Err(match failed {
                        Ok(Err(e)) => e,
                        _ => BrokerError::Closed,
                    }),
                }
            } else {
                let out = outbox::Outgoing {
                    // Built for each attempt (there is seldom a second): a clone would cost the
                    // subject's buffer a shared header of its own.
                    subject: async_nats::Subject::from(rpc_subject(service, method)),
                    call: Some((inner.calls.reply_subject(call.id), call.id)),
                    headers,
                    body: request.body.clone(),
                };
                outbox::send(inner, out).await;
                match (&mut call.answer).await {
                    Ok(Ok(reply)) if reply.status == Some(NO_RESPONDERS) => {
                        Ok(Answer::NoResponders)
                    }
                    Ok(Ok(reply)) => Ok(Answer::Reply(reply)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(BrokerError::Closed),
                }
            };
            match answered {
                // The registration's deadline passed.
                Err(BrokerError::Timeout(_)) => return Err(BrokerError::Timeout(timeout)),
                Err(e) => return Err(e),
                Ok(Answer::Reply(mut reply)) => return Ok(message_of(&mut reply, 1)),
                Ok(Answer::NoResponders) if retried => {
                    return Err(BrokerError::UnknownService(service.to_string()))
                }
                Ok(Answer::NoResponders) => {
                    retried = true;
                    drop(call);
                    let pause = tokio::time::Instant::now() + Duration::from_millis(25);
                    tokio::time::sleep_until(pause.min(deadline)).await;
                    if pause >= deadline {
                        return Err(BrokerError::Timeout(timeout));
                    }
                }
            }
        }
    }
}

/// The request with its deadline and context moved into its envelope, where the service reads
/// them as well as from headers: a header block costs the server and both clients a parse into
/// a map for every message, which a small request need not pay. A body that is not an envelope
/// Basidia wrote keeps its metadata in headers.
fn metadata_into_envelope(mut request: Message) -> Message {
    if request.headers.is_empty() && request.deadline.is_none() {
        return request;
    }
    let format = request.content_type.as_deref().map_or(
        Some(basidia_core::Format::MsgPack),
        basidia_core::Format::from_content_type,
    );
    let Some(format) = format else {
        return request;
    };
    let metadata = RequestMetadata {
        deadline_ms: request
            .deadline
            .map(basidia_core::context::epoch_ms_from_instant),
        context: std::mem::take(&mut request.headers),
    };
    match append_metadata(format, &request.body, &metadata) {
        Some(body) => {
            request.body = body.into();
            request.deadline = None;
        }
        None => request.headers = metadata.context,
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DEFAULT_CONTENT_TYPE;
    use crate::NatsBroker;
    use basidia_core::{Broker, ConsumeOptions};

    #[tokio::test]
    async fn finished_calls_leave_no_registration_behind() {
        let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
            return;
        };
        let server = NatsBroker::connect(&url).await.expect("connect");
        let client = NatsBroker::connect(&url).await.expect("connect");
        let service = format!("t_forget_{}", std::process::id());
        let mut sub = server
            .serve(&service, ConsumeOptions::default())
            .await
            .expect("serve");
        let echo = tokio::spawn(async move {
            while let Some(d) = sub.next().await {
                if d.routing_key == "echo" {
                    let body = d.message.body.clone();
                    let _ = d.reply(Message::new(body, DEFAULT_CONTENT_TYPE)).await;
                }
                // "silent" requests are left unanswered, to time out.
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let call = |method: &'static str, timeout: Duration| {
            let client = client.clone();
            let service = service.clone();
            async move {
                let body = bytes::Bytes::from_static(b"\x91\xa1x");
                client
                    .call(
                        &service,
                        method,
                        Message::new(body, DEFAULT_CONTENT_TYPE),
                        timeout,
                    )
                    .await
            }
        };
        call("echo", Duration::from_secs(5))
            .await
            .expect("a lone call");
        let many: Vec<_> = (0..32)
            .map(|_| tokio::spawn(call("echo", Duration::from_secs(5))))
            .collect();
        for c in many {
            c.await.expect("caller").expect("one of many calls");
        }
        let silent = call("silent", Duration::from_millis(200)).await;
        assert!(matches!(silent, Err(BrokerError::Timeout(_))), "{silent:?}");
        let unknown = client
            .call(
                "t_nobody_here",
                "m",
                Message::new(bytes::Bytes::new(), DEFAULT_CONTENT_TYPE),
                Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(unknown, Err(BrokerError::UnknownService(_))),
            "{unknown:?}"
        );
        assert!(
            client.inner.calls.pending.is_empty(),
            "finished calls are still registered"
        );
        server.close().await;
        client.close().await;
        echo.abort();
    }

    #[test]
    fn call_numbers_print_in_decimal() {
        for n in [0, 7, 9, 10, 99, 100, 12_345, u64::MAX / 10, u64::MAX] {
            assert_eq!(decimal_len(n), n.to_string().len(), "{n}");
        }
        for n in [0u64, 7, 10, 12_345, u64::MAX] {
            let mut s = String::from("x.");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("x.{n}"));
        }
    }

    #[test]
    fn failing_reaches_only_waiting_calls() {
        let pending = Pending::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        pending.insert(1, u64::MAX, tx1);
        pending.insert(2, u64::MAX, tx2);
        pending.fail(1, BrokerError::Closed);
        assert!(matches!(rx1.try_recv(), Ok(Err(BrokerError::Closed))));
        assert!(rx2.try_recv().is_err(), "call 2 still waits");
        pending.fail_all(|| lost_msg("gone"));
        assert!(matches!(
            rx2.try_recv(),
            Ok(Err(BrokerError::ConnectionLost { .. }))
        ));
        assert!(pending.is_empty());
    }

    #[tokio::test]
    async fn the_watchdog_fails_calls_as_their_deadlines_pass() {
        let pending = Arc::new(Pending::default());
        let stop = CancellationToken::new();
        let watchdog = tokio::spawn(Arc::clone(&pending).watch_deadlines(stop.clone()));
        let start = Instant::now();
        let (tx_far, mut rx_far) = oneshot::channel();
        pending.insert(1, Clock::ticks(start + Duration::from_secs(30)), tx_far);
        // The watchdog now sleeps until the far deadline; a nearer one must wake it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (tx_near, rx_near) = oneshot::channel();
        pending.insert(2, Clock::ticks(start + Duration::from_millis(80)), tx_near);
        let got = tokio::time::timeout(Duration::from_secs(5), rx_near)
            .await
            .expect("failed at its deadline, not the far one")
            .expect("an outcome");
        assert!(matches!(got, Err(BrokerError::Timeout(_))), "{got:?}");
        assert!(
            Instant::now() >= start + Duration::from_millis(80),
            "not early"
        );
        assert!(rx_far.try_recv().is_err(), "the far call still waits");
        // A call answered before its deadline is gone; the watchdog finds nothing to fail.
        let (tx_done, _rx_done) = oneshot::channel();
        pending.insert(
            3,
            Clock::ticks(Instant::now() + Duration::from_millis(30)),
            tx_done,
        );
        pending.forget(3);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(rx_far.try_recv().is_err());
        pending.forget(1);
        assert!(pending.is_empty());
        stop.cancel();
        watchdog.await.expect("the watchdog stops");
    }
}
