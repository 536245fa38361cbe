//! RPC calls with their replies routed by Basidia rather than by the client's request helper.
//!
//! Each connection subscribes once to `<inbox>.*`, where `<inbox>` is a fresh `_INBOX.<nuid>`,
//! and every call publishes its request with the reply subject `<inbox>.<n>`, `n` a number
//! unique on the connection. A dispatcher task hands each reply to the call waiting for `n`.
//! The server sees the same request/reply exchange as with any NATS client; what it buys is
//! that requests are ordinary publishes, which the outbox can gather into one write when many
//! calls start at once (see `outbox`), and that a dropped connection fails every call in flight
//! from one place, without each call watching the connection.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::Subject;
use basidia_core::BrokerError;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// What a call receives: the reply, or why there will be none.
pub(super) type Outcome = Result<async_nats::Message, BrokerError>;

/// How many parts the waiting calls are spread over. Callers register on every worker thread
/// while the dispatcher takes replies out on another; with one lock they contend on it (and
/// put each other to sleep in the kernel) for a good part of the calls.
const SHARDS: usize = 16;

type Shard = HashMap<u64, oneshot::Sender<Outcome>, BuildHasherDefault<IdHasher>>;

/// The calls of one connection waiting for their replies.
#[derive(Default)]
pub(super) struct Pending {
    shards: [Mutex<Shard>; SHARDS],
}

impl Pending {
    fn shard(&self, id: u64) -> &Mutex<Shard> {
        // Consecutive calls land in different parts.
        &self.shards[(id % SHARDS as u64) as usize]
    }

    fn insert(&self, id: u64, tx: oneshot::Sender<Outcome>) {
        super::lock(self.shard(id)).insert(id, tx);
    }

    fn take(&self, id: u64) -> Option<oneshot::Sender<Outcome>> {
        super::lock(self.shard(id)).remove(&id)
    }

    /// Fails every call waiting now with the error `why` makes.
    pub(super) fn fail_all(&self, why: impl Fn() -> BrokerError) {
        for shard in &self.shards {
            let waiting = std::mem::take(&mut *super::lock(shard));
            for (_, tx) in waiting {
                let _ = tx.send(Err(why()));
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
        self.shards.iter().all(|s| super::lock(s).is_empty())
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
    next: AtomicU64,
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
            .map_err(super::backend)?;
        let calls = Calls {
            prefix: prefix.clone(),
            next: AtomicU64::new(1),
            pending: Arc::clone(&pending),
        };
        tokio::spawn(async move {
            let replies = replies.take_until(stop.cancelled_owned());
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
        Ok(calls)
    }

    /// Registers a new call: its number and where its reply (or its failure) will arrive.
    pub(super) fn register(&self) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        self.pending.insert(id, tx);
        Registration {
            calls: self,
            id,
            answer,
        }
    }

    /// The reply subject of call `id`.
    pub(super) fn reply_subject(&self, id: u64) -> Subject {
        let mut subject = String::with_capacity(self.prefix.len() + 20);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_numbers_print_in_decimal() {
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
        pending.insert(1, tx1);
        pending.insert(2, tx2);
        pending.fail(1, BrokerError::Closed);
        assert!(matches!(rx1.try_recv(), Ok(Err(BrokerError::Closed))));
        assert!(rx2.try_recv().is_err(), "call 2 still waits");
        pending.fail_all(|| BrokerError::ConnectionLost("gone".into()));
        assert!(matches!(
            rx2.try_recv(),
            Ok(Err(BrokerError::ConnectionLost(_)))
        ));
        assert!(pending.is_empty());
    }
}
