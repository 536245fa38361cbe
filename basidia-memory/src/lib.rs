//! The in-memory broker: a faithful model of a message broker inside one process.
//!
//! It models what the real brokers do, so a test that passes here means the same on RabbitMQ
//! or NATS: competing consumers on one queue and fan-out across queues bound to one event type,
//! per-consumer prefetch, ack / requeue / dead-letter, the redelivered flag and delivery counts,
//! redelivery of what a vanished consumer held, durable queues that keep messages while their
//! service is down, auto-deleted broadcast queues, priorities, unroutable requests failing fast,
//! and replies routed by `reply_to` and correlation id.
//!
//! One [`MemoryBroker`] is one connection; [`MemoryBroker::connect`] opens another connection to
//! the same in-process "server", which is how several service instances are modelled.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use basidia_core::{
    event_exchange_name, rpc_queue_name, Broker, BrokerError, ConsumeOptions, Delivery,
    EventBinding, HandlerType, Message, Settle, Subscription,
};
use tokio::sync::{mpsc, oneshot};

use basidia_core::internal::lock;

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

struct Entry {
    message: Message,
    routing_key: String,
}

struct Consumer {
    id: u64,
    tx: mpsc::UnboundedSender<Delivery>,
    prefetch: u16,
    in_flight: u16,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Entry>,
    consumers: Vec<Consumer>,
    next: usize,
}

struct Queue {
    name: String,
    auto_delete: bool,
    prioritized: bool,
    state: Mutex<QueueState>,
    hub: Weak<Hub>,
}

#[derive(Default)]
struct Hub {
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// (exchange, routing key) -> queue names.
    bindings: RwLock<HashMap<(String, String), Vec<String>>>,
    replies: RwLock<HashMap<String, Weak<Pending>>>,
    dead_letters: Mutex<Vec<DeadLetter>>,
    next_dead_letter: AtomicU64,
    unroutable: AtomicU64,
    next_consumer: AtomicU64,
}

#[derive(Default)]
struct Pending {
    calls: Mutex<HashMap<String, oneshot::Sender<Message>>>,
}

/// One connection to an in-process broker. Cloning shares the connection.
#[derive(Clone)]
pub struct MemoryBroker {
    hub: Arc<Hub>,
    conn: Arc<Connection>,
}

struct Connection {
    reply_to: String,
    pending: Arc<Pending>,
    closed: AtomicBool,
    consumers: Mutex<Vec<(Weak<Queue>, u64)>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("reply_to", &self.conn.reply_to)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        MemoryBroker::new()
    }
}

impl MemoryBroker {
    /// A new, empty in-process broker and a connection to it.
    pub fn new() -> Self {
        MemoryBroker::on_hub(Arc::new(Hub::default()))
    }

    fn on_hub(hub: Arc<Hub>) -> Self {
        let pending = Arc::new(Pending::default());
        let reply_to = format!("rpc.reply-{}", uuid::Uuid::new_v4().simple());
        hub.replies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(reply_to.clone(), Arc::downgrade(&pending));
        MemoryBroker {
            hub,
            conn: Arc::new(Connection {
                reply_to,
                pending,
                closed: AtomicBool::new(false),
                consumers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Another connection to the same broker (another "process").
    pub fn connect(&self) -> MemoryBroker {
        MemoryBroker::on_hub(Arc::clone(&self.hub))
    }

    /// The messages dead-lettered so far.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.hub.dead_letters).clone()
    }

    /// How many events were published with no queue bound to receive them.
    pub fn unroutable_events(&self) -> u64 {
        self.hub.unroutable.load(Ordering::Relaxed)
    }

    /// The number of messages waiting (not delivered) in a queue; `None` if it does not exist.
    pub fn queue_depth(&self, queue: &str) -> Option<usize> {
        self.hub.queue(queue).map(|q| lock(&q.state).ready.len())
    }

    /// The names of all queues.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = read(&self.hub.queues).keys().cloned().collect();
        names.sort();
        names
    }

    /// Publishes a message straight onto a queue, as AMQP's default exchange does: no reply
    /// address or correlation id is added. For tests that hand a service a message as an
    /// arbitrary peer would.
    pub fn publish_to_queue(
        &self,
        queue: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<(), BrokerError> {
        self.check_open()?;
        let queue = self
            .hub
            .queue(queue)
            .ok_or_else(|| BrokerError::Backend(format!("no queue {queue:?}")))?;
        publish_to(&queue, message, routing_key);
        Ok(())
    }

    fn check_open(&self) -> Result<(), BrokerError> {
        if self.conn.closed.load(Ordering::Acquire) {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    fn add_consumer(&self, queue: &Arc<Queue>, prefetch: u16) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.hub.next_consumer.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = lock(&queue.state);
            st.consumers.push(Consumer {
                id,
                tx,
                prefetch,
                in_flight: 0,
            });
            pump(queue, &mut st);
        }
        {
            let mut list = lock(&self.conn.consumers);
            // Forget consumers that were cancelled since, so the list does not grow forever.
            list.retain(|(q, cid)| {
                q.upgrade()
                    .is_some_and(|q| lock(&q.state).consumers.iter().any(|c| c.id == *cid))
            });
            list.push((Arc::downgrade(queue), id));
        }
        Subscription::new(
            rx,
            Box::new(ConsumerGuard {
                queue: Arc::clone(queue),
                id,
            }),
        )
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        read(&self.queues).get(name).cloned()
    }

    fn declare(self: &Arc<Self>, name: &str, auto_delete: bool, prioritized: bool) -> Arc<Queue> {
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

    fn bind(&self, exchange: &str, key: &str, queue: &str) {
        let mut b = write(&self.bindings);
        let list = b
            .entry((exchange.to_string(), key.to_string()))
            .or_default();
        if !list.iter().any(|q| q == queue) {
            list.push(queue.to_string());
        }
    }

    fn delete_queue(&self, name: &str) {
        write(&self.queues).remove(name);
        write(&self.bindings).retain(|_, qs| {
            qs.retain(|q| q != name);
            !qs.is_empty()
        });
    }

    fn dead_letter(&self, queue: &str, routing_key: String, message: Message, reason: &str) {
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
}

/// Puts an entry into the ready list, by priority where the queue has priorities.
fn enqueue(queue: &Queue, st: &mut QueueState, entry: Entry, front: bool) {
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
fn publish_to(queue: &Arc<Queue>, mut message: Message, routing_key: &str) {
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
fn pump(queue: &Arc<Queue>, st: &mut QueueState) {
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
            Err(mpsc::error::SendError(d)) => {
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

struct ConsumerGuard {
    queue: Arc<Queue>,
    id: u64,
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

struct MemorySettle {
    queue: Arc<Queue>,
    consumer: u64,
    routing_key: String,
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

#[async_trait]
impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn call(
        &self,
        service: &str,
        method: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BrokerError> {
        self.check_open()?;
        let queue = self
            .hub
            .queue(&rpc_queue_name(service))
            .ok_or_else(|| BrokerError::UnknownService(service.to_string()))?;
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.conn.pending.calls).insert(correlation_id.clone(), tx);
        let mut message = request;
        message.correlation_id = Some(correlation_id.clone());
        message.reply_to = Some(self.conn.reply_to.clone());
        publish_to(&queue, message, method);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(BrokerError::ConnectionLost(
                "the connection closed while the call was in flight".into(),
            )),
            Err(_) => {
                lock(&self.conn.pending.calls).remove(&correlation_id);
                Err(BrokerError::Timeout(timeout))
            }
        }
    }

    async fn serve(
        &self,
        service: &str,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.check_open()?;
        let queue = self.hub.declare(
            &rpc_queue_name(service),
            false,
            options.max_priority.is_some(),
        );
        Ok(self.add_consumer(&queue, options.prefetch))
    }

    async fn services(&self) -> Result<Option<Vec<String>>, BrokerError> {
        self.check_open()?;
        let mut names: Vec<String> = read(&self.hub.queues)
            .values()
            .filter(|q| !lock(&q.state).consumers.is_empty())
            .filter_map(|q| q.name.strip_prefix("rpc-").map(str::to_string))
            .collect();
        names.sort();
        Ok(Some(names))
    }

    async fn publish_event(
        &self,
        source: &str,
        event_type: &str,
        message: Message,
    ) -> Result<(), BrokerError> {
        self.check_open()?;
        let exchange = event_exchange_name(source);
        let targets = read(&self.hub.bindings)
            .get(&(exchange, event_type.to_string()))
            .cloned()
            .unwrap_or_default();
        if targets.is_empty() {
            self.hub.unroutable.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(source, event_type, "event published with no handler bound");
            return Ok(());
        }
        for name in targets {
            if let Some(queue) = self.hub.queue(&name) {
                publish_to(&queue, message.clone(), event_type);
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        binding: &EventBinding,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.check_open()?;
        let name = binding.queue_name();
        let auto_delete = binding.handler_type == HandlerType::Broadcast;
        let queue = self.hub.declare(&name, auto_delete, false);
        self.hub.bind(
            &event_exchange_name(&binding.source),
            &binding.event_type,
            &name,
        );
        Ok(self.add_consumer(&queue, options.prefetch))
    }

    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<basidia_core::StoredDeadLetter>, BrokerError> {
        self.check_open()?;
        Ok(lock(&self.hub.dead_letters)
            .iter()
            .take(limit)
            .map(|d| {
                let mut message = d.message.clone();
                basidia_core::message::mask_secrets(&mut message.headers);
                basidia_core::StoredDeadLetter::new(
                    d.id.to_string(),
                    d.queue.clone(),
                    d.routing_key.clone(),
                    d.reason.clone(),
                    d.message.delivery_count,
                    None,
                    message,
                )
            })
            .collect())
    }

    async fn replay_dead_letters(
        &self,
        which: basidia_core::Replay<'_>,
    ) -> Result<usize, BrokerError> {
        self.check_open()?;
        let taken: Vec<DeadLetter> = {
            let mut kept = lock(&self.hub.dead_letters);
            let (go, stay) = std::mem::take(&mut *kept)
                .into_iter()
                .partition(|d| match which {
                    basidia_core::Replay::All => true,
                    basidia_core::Replay::One(id) => d.id.to_string() == id,
                });
            *kept = stay;
            go
        };
        let mut replayed = 0;
        for d in taken {
            match self.hub.queue(&d.queue) {
                Some(queue) => {
                    publish_to(&queue, d.message, &d.routing_key);
                    replayed += 1;
                }
                None => {
                    tracing::warn!(queue = %d.queue, "the queue of a dead letter is gone; it stays");
                    lock(&self.hub.dead_letters).push(d);
                }
            }
        }
        Ok(replayed)
    }

    async fn close(&self) {
        if self.conn.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.conn.pending.calls).clear();
        write(&self.hub.replies).remove(&self.conn.reply_to);
        let consumers = std::mem::take(&mut *lock(&self.conn.consumers));
        for (queue, id) in consumers {
            if let Some(queue) = queue.upgrade() {
                let mut st = lock(&queue.state);
                st.consumers.retain(|c| c.id != id);
                st.next = 0;
                pump(&queue, &mut st);
            }
        }
    }
}
