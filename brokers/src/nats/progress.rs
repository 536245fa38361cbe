//! Work-in-progress signals for the unsettled deliveries of one JetStream consumer.
//!
//! A consumer's `ack_wait` stays short, so that a delivery lost with a dead connection comes
//! back quickly; a handler that simply takes long must then tell the server it is still at work
//! (a `+WPI` to the delivery's ack subject) or the server redelivers its event. One ticker per
//! consumer does this for every delivery that has been unsettled for a while, rather than a task
//! and a timer for each delivery: a delivery costs an entry in a map, added when it arrives and
//! removed when it is settled or dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lock;

/// One unsettled delivery: where its signals go and when the server last heard of it.
struct Entry {
    ack_subject: async_nats::Subject,
    since: Instant,
}

/// The unsettled deliveries of one consumer.
#[derive(Default)]
struct Unsettled {
    next: u64,
    entries: HashMap<u64, Entry>,
}

/// The deliveries of one consumer that are still at work, and the ticker that speaks for them.
#[derive(Clone)]
pub(crate) struct Progress {
    unsettled: Arc<Mutex<Unsettled>>,
}

impl Progress {
    /// Starts the ticker of a consumer whose deliveries must be settled within `ack_wait`. Each
    /// unsettled delivery is signalled at least every half `ack_wait` (every 100 ms at the most
    /// often). The ticker lasts as long as the consumer holds this `Progress` or a delivery is
    /// unsettled, so a handler still at work while its service stops keeps its event.
    pub(crate) fn start(client: async_nats::Client, ack_wait: Duration) -> Self {
        let progress = Progress {
            unsettled: Arc::default(),
        };
        let period = (ack_wait / 3).max(Duration::from_millis(100));
        let unsettled = Arc::downgrade(&progress.unsettled);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(unsettled) = unsettled.upgrade() else {
                    break;
                };
                let due = Progress { unsettled }.due(Instant::now(), period);
                for subject in due {
                    if client.publish(subject, "+WPI".into()).await.is_err() {
                        // The connection is gone: the server redelivers what is unsettled
                        // anyway, and the next tick tries again once it is back.
                        break;
                    }
                }
            }
        });
        progress
    }

    /// Counts the delivery whose ack subject is `ack_subject` as at work until the returned
    /// guard is dropped.
    pub(crate) fn track(&self, ack_subject: async_nats::Subject) -> AtWork {
        let mut unsettled = lock(&self.unsettled);
        let key = unsettled.next;
        unsettled.next += 1;
        unsettled.entries.insert(
            key,
            Entry {
                ack_subject,
                since: Instant::now(),
            },
        );
        AtWork {
            progress: self.clone(),
            key,
        }
    }

    /// The ack subjects of the deliveries the server has not heard of for `period`, marked as
    /// heard of `now`.
    fn due(&self, now: Instant, period: Duration) -> Vec<async_nats::Subject> {
        let mut unsettled = lock(&self.unsettled);
        unsettled
            .entries
            .values_mut()
            .filter(|e| now.saturating_duration_since(e.since) >= period)
            .map(|e| {
                e.since = now;
                e.ack_subject.clone()
            })
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.unsettled).entries.len()
    }
}

/// A delivery counted as at work; dropping it (the delivery settled or given up) ends its
/// signals.
pub(crate) struct AtWork {
    progress: Progress,
    key: u64,
}

impl Drop for AtWork {
    fn drop(&mut self) {
        lock(&self.progress.unsettled).entries.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Progress {
        Progress {
            unsettled: Arc::default(),
        }
    }

    /// Against the server at `BASIDIA_TEST_NATS_URL`: a delivery still unsettled after its
    /// consumer stopped (a handler finishing during a graceful stop) is signalled, and a settled
    /// one no more.
    #[tokio::test]
    async fn deliveries_outliving_their_consumer_are_signalled_until_settled() {
        use futures_util::StreamExt;

        let Some(url) = crate::conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
            return;
        };
        let client = async_nats::connect(&url)
            .await
            .expect("the server at BASIDIA_TEST_NATS_URL must answer");
        let ack_subject = client.new_inbox();
        let mut signals = client.subscribe(ack_subject.clone()).await.unwrap();
        client.flush().await.unwrap();
        let consumer = Progress::start(client.clone(), Duration::from_millis(300));
        let at_work = consumer.track(ack_subject.into());
        drop(consumer);
        let signal = tokio::time::timeout(Duration::from_secs(2), signals.next())
            .await
            .expect("a signal within 2 s")
            .expect("the subscription is open");
        assert_eq!(&signal.payload[..], b"+WPI");
        drop(at_work);
        // A signal already on its way may still arrive; then nothing more.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(10), signals.next()).await
        {}
        let later = tokio::time::timeout(Duration::from_millis(600), signals.next()).await;
        assert!(later.is_err(), "signalled after being settled");
    }

    #[test]
    fn only_deliveries_unheard_of_for_a_period_are_due_and_each_once_per_period() {
        let p = progress();
        let start = Instant::now();
        let period = Duration::from_secs(1);
        let a = p.track("a".into());
        let b = p.track("b".into());
        assert!(p.due(start, period).is_empty(), "nothing is due at once");
        let later = start + Duration::from_millis(1500);
        let mut due: Vec<String> = p.due(later, period).iter().map(|s| s.to_string()).collect();
        due.sort();
        assert_eq!(due, ["a", "b"]);
        assert!(
            p.due(later + Duration::from_millis(500), period).is_empty(),
            "signalled half a period ago"
        );
        drop(a);
        let due = p.due(later + period, period);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].as_str(), "b");
        drop(b);
        assert_eq!(p.len(), 0, "settled deliveries leave nothing behind");
    }
}
