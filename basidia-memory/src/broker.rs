//! A connection to the in-process broker, and the [`Broker`] implementation on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use basidia_core::internal::{backend_msg, lock, lost_msg};
use basidia_core::{
    event_exchange_name, rpc_queue_name, Broker, BrokerError, ConsumeOptions, EventBinding,
    HandlerType, Message, Subscription,
};
use tokio::sync::oneshot;

use crate::dead_letters::DeadLetter;
use crate::hub::{publish_to, pump, read, write, Consumer, ConsumerGuard, Hub, Pending, Queue};

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
            .ok_or_else(|| backend_msg(format!("no queue {queue:?}")))?;
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
        let (tx, rx) = basidia_core::delivery_channel();
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
            Ok(Err(_)) => Err(lost_msg(
                "the connection closed while the call was in flight",
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

    async fn instances(&self) -> Result<Option<Vec<basidia_core::InstanceInfo>>, BrokerError> {
        self.check_open()?;
        let mut all = lock(&self.hub.instances).clone();
        basidia_core::InstanceInfo::sort(&mut all);
        Ok(Some(all))
    }

    fn announce(&self, instance: &basidia_core::InstanceInfo) {
        let mut all = lock(&self.hub.instances);
        all.retain(|i| i.id != instance.id);
        all.push(instance.clone());
    }

    fn withdraw(&self, id: &str) {
        lock(&self.hub.instances).retain(|i| i.id != id);
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
        Ok(self.hub.stored_dead_letters(limit))
    }

    async fn replay_dead_letters(
        &self,
        which: basidia_core::Replay<'_>,
    ) -> Result<usize, BrokerError> {
        self.check_open()?;
        Ok(self.hub.replay_dead_letters(which))
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
