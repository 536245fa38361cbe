//! The model of the broker's server: queues with their ready messages and consumers, the
//! bindings of event exchanges to queues, and the reply addresses of connections.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock, Weak};

use basidia_core::internal::lock;
use basidia_core::{Delivery, Message};
use tokio::sync::oneshot;

use crate::dead_letters::DeadLetter;
use crate::settle::MemorySettle;

/// A message waiting in a queue, with the routing key it was published with.
pub(crate) struct Entry {
    pub(crate) message: Message,
    pub(crate) routing_key: String,
}

/// A consumer of a queue, and how many of its deliveries are still unsettled.
pub(crate) struct Consumer {
    pub(crate) id: u64,
    pub(crate) tx: basidia_core::DeliverySender,
    pub(crate) prefetch: u16,
    pub(crate) in_flight: u16,
}

/// What a queue holds, behind one lock: its ready messages and its consumers.
#[derive(Default)]
pub(crate) struct QueueState {
    pub(crate) ready: VecDeque<Entry>,
    pub(crate) consumers: Vec<Consumer>,
    pub(crate) next: usize,
}

/// A queue of the in-process server.
pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) auto_delete: bool,
    pub(crate) prioritized: bool,
    pub(crate) state: Mutex<QueueState>,
    pub(crate) hub: Weak<Hub>,
}

/// The in-process server that every connection to it shares.
#[derive(Default)]
pub(crate) struct Hub {
    pub(crate) queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// (exchange, routing key) -> queue names.
    pub(crate) bindings: RwLock<HashMap<(String, String), Vec<String>>>,
    pub(crate) replies: RwLock<HashMap<String, Weak<Pending>>>,
    pub(crate) dead_letters: Mutex<Vec<DeadLetter>>,
    pub(crate) next_dead_letter: AtomicU64,
    pub(crate) unroutable: AtomicU64,
    pub(crate) next_consumer: AtomicU64,
    /// The service instances running on this hub, as they announced themselves.
    pub(crate) instances: Mutex<Vec<basidia_core::InstanceInfo>>,
}

/// The calls of one connection waiting for their replies, by correlation id.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) calls: Mutex<HashMap<String, oneshot::Sender<Message>>>,
}

/// Reads `l`, whether or not a panic poisoned it.
pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `l`, whether or not a panic poisoned it.
pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    pub(crate) fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        read(&self.queues).get(name).cloned()
    }

    pub(crate) fn declare(
        self: &Arc<Self>,
        name: &str,
        auto_delete: bool,
        prioritized: bool,
    ) -> Arc<Queue> {
        if let Some(q) = self.queue(name) {
            return q;
        }
        let mut queues = write(&self.queues);
        Arc::clone(queues.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Queue {
                name: name.to_string(),
                auto_delete,
                prioritized,
                state: Mutex::new(QueueState::default()),
                hub: Arc::downgrade(self),
            })
        }))
    }

    pub(crate) fn bind(&self, exchange: &str, key: &str, queue: &str) {
        let mut b = write(&self.bindings);
        let list = b
            .entry((exchange.to_string(), key.to_string()))
            .or_default();
        if !list.iter().any(|q| q == queue) {
            list.push(queue.to_string());
        }
    }

    pub(crate) fn delete_queue(&self, name: &str) {
        write(&self.queues).remove(name);
        write(&self.bindings).retain(|_, qs| {
            qs.retain(|q| q != name);
            !qs.is_empty()
        });
    }
}

/// Puts an entry into the ready list, by priority where the queue has priorities.
pub(crate) fn enqueue(queue: &Queue, st: &mut QueueState, entry: Entry, front: bool) {
    if queue.prioritized {
        let p = entry.message.priority.unwrap_or(0);
        let pos = if front {
            st.ready
                .iter()
                .position(|e| e.message.priority.unwrap_or(0) <= p)
                .unwrap_or(st.ready.len())
        } else {
            st.ready
                .iter()
                .position(|e| e.message.priority.unwrap_or(0) < p)
                .unwrap_or(st.ready.len())
        };
        st.ready.insert(pos, entry);
    } else if front {
        st.ready.push_front(entry);
    } else {
        st.ready.push_back(entry);
    }
}

/// Puts a newly published message at the back of a queue and hands out what can be.
pub(crate) fn publish_to(queue: &Arc<Queue>, mut message: Message, routing_key: &str) {
    message.delivery_count = 0;
    message.redelivered = false;
    let mut st = lock(&queue.state);
    enqueue(
        queue,
        &mut st,
        Entry {
            message,
            routing_key: routing_key.to_string(),
        },
        false,
    );
    pump(queue, &mut st);
}

/// Hands ready messages to consumers with room under their prefetch, round-robin.
pub(crate) fn pump(queue: &Arc<Queue>, st: &mut QueueState) {
    while !st.ready.is_empty() && !st.consumers.is_empty() {
        let n = st.consumers.len();
        let Some(idx) = (0..n).map(|i| (st.next + i) % n).find(|&i| {
            let c = &st.consumers[i];
            (c.prefetch == 0 || c.in_flight < c.prefetch) && !c.tx.is_closed()
        }) else {
            break;
        };
        st.next = (idx + 1) % n;
        let Some(mut entry) = st.ready.pop_front() else {
            break;
        };
        entry.message.delivery_count += 1;
        entry.message.redelivered = entry.message.delivery_count > 1;
        let consumer = &mut st.consumers[idx];
        let settle = MemorySettle {
            queue: Arc::clone(queue),
            consumer: consumer.id,
            routing_key: entry.routing_key.clone(),
        };
        let delivery = Delivery::new(entry.message, entry.routing_key, Box::new(settle));
        match consumer.tx.send(delivery) {
            Ok(()) => consumer.in_flight += 1,
            Err(d) => {
                // The consumer went away between the check and the send: take the delivery back
                // without triggering its redelivery (we hold the lock) and try another consumer.
                let (mut message, routing_key, _) = d.into_parts();
                message.delivery_count -= 1;
                message.redelivered = message.delivery_count > 1;
                st.consumers.remove(idx);
                st.next = 0;
                st.ready.push_front(Entry {
                    message,
                    routing_key,
                });
            }
        }
    }
}

/// Ends a consumer when its subscription is dropped; an auto-deleted queue goes with its last
/// consumer.
pub(crate) struct ConsumerGuard {
    pub(crate) queue: Arc<Queue>,
    pub(crate) id: u64,
}

impl Drop for ConsumerGuard {
    fn drop(&mut self) {
        let empty = {
            let mut st = lock(&self.queue.state);
            st.consumers.retain(|c| c.id != self.id);
            st.next = 0;
            pump(&self.queue, &mut st);
            st.consumers.is_empty()
        };
        if empty && self.queue.auto_delete {
            if let Some(hub) = self.queue.hub.upgrade() {
                hub.delete_queue(&self.queue.name);
            }
        }
    }
}
