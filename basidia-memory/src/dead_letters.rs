//! The dead letters the broker keeps, up to a limit: for inspection, and to replay onto the
//! queues they came from.

use std::sync::atomic::Ordering;

use basidia_core::internal::lock;
use basidia_core::{Message, Replay, StoredDeadLetter};

use crate::hub::{publish_to, Hub};

/// A message that was dead-lettered, kept for inspection.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its id, for replaying it.
    pub id: u64,
    /// The queue it was taken from.
    pub queue: String,
    /// Its routing key (method or event type).
    pub routing_key: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// The message.
    pub message: Message,
}

/// The most dead letters the broker keeps; past it the oldest go first.
pub const DEAD_LETTER_LIMIT: usize = 10_000;

impl Hub {
    /// Keeps a dead letter; once the limit is reached, the oldest goes.
    pub(crate) fn dead_letter(
        &self,
        queue: &str,
        routing_key: String,
        message: Message,
        reason: &str,
    ) {
        tracing::warn!(queue, routing_key, reason, "message dead-lettered");
        let mut kept = lock(&self.dead_letters);
        if kept.len() >= DEAD_LETTER_LIMIT {
            // As the brokers' stores do once full: the oldest goes.
            kept.remove(0);
        }
        let id = self.next_dead_letter.fetch_add(1, Ordering::Relaxed);
        kept.push(DeadLetter {
            id,
            queue: queue.to_string(),
            routing_key,
            reason: reason.to_string(),
            message,
        });
    }

    /// The first `limit` dead letters, their secrets masked.
    pub(crate) fn stored_dead_letters(&self, limit: usize) -> Vec<StoredDeadLetter> {
        lock(&self.dead_letters)
            .iter()
            .take(limit)
            .map(|d| {
                let mut message = d.message.clone();
                basidia_core::message::mask_secrets(&mut message.headers);
                StoredDeadLetter::new(
                    d.id.to_string(),
                    d.queue.clone(),
                    d.routing_key.clone(),
                    d.reason.clone(),
                    d.message.delivery_count,
                    None,
                    message,
                )
            })
            .collect()
    }

    /// Puts the dead letters `which` names back on their queues, and says how many went; those
    /// whose queue is gone stay.
    pub(crate) fn replay_dead_letters(&self, which: Replay<'_>) -> usize {
        let taken: Vec<DeadLetter> = {
            let mut kept = lock(&self.dead_letters);
            let (go, stay) = std::mem::take(&mut *kept)
                .into_iter()
                .partition(|d| match which {
                    Replay::All => true,
                    Replay::One(id) => d.id.to_string() == id,
                });
            *kept = stay;
            go
        };
        let mut replayed = 0;
        for d in taken {
            match self.queue(&d.queue) {
                Some(queue) => {
                    publish_to(&queue, d.message, &d.routing_key);
                    replayed += 1;
                }
                None => {
                    tracing::warn!(queue = %d.queue, "the queue of a dead letter is gone; it stays");
                    lock(&self.dead_letters).push(d);
                }
            }
        }
        replayed
    }
}
