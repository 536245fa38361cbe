//! The broker contract every backend implements.
//!
//! A [`Broker`] moves [`Message`]s: RPC requests to a service's queue and replies back to the
//! caller, and events from a source service to every handler queue bound to the event type.
//! Consumers receive [`Delivery`]s and settle each one (ack, requeue, dead-letter) after the work
//! is done, which gives at-least-once delivery.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::error::BrokerError;
use crate::message::Message;

/// How event handlers of several services and instances share events (Nameko's handler types).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HandlerType {
    /// One handler instance per service gets each event; instances of the service compete.
    #[default]
    ServicePool,
    /// One handler across all services gets each event.
    Singleton,
    /// Every running instance gets each event (at-most-once on most brokers).
    Broadcast,
}

impl HandlerType {
    /// The name used in configuration and introspection.
    pub const fn as_str(self) -> &'static str {
        match self {
            HandlerType::ServicePool => "service_pool",
            HandlerType::Singleton => "singleton",
            HandlerType::Broadcast => "broadcast",
        }
    }
}

impl std::str::FromStr for HandlerType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "service_pool" => Ok(HandlerType::ServicePool),
            "singleton" => Ok(HandlerType::Singleton),
            "broadcast" => Ok(HandlerType::Broadcast),
            other => Err(format!(
                "unknown handler_type {other:?}: expected service_pool, singleton or broadcast"
            )),
        }
    }
}

/// Where one event handler's queue is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBinding {
    /// The service that dispatches the events.
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// The handling service.
    pub service: String,
    /// The handling method.
    pub method: String,
    /// How handlers share the events.
    pub handler_type: HandlerType,
    /// For broadcast handlers: an id unique to this running instance.
    pub broadcast_id: String,
}

impl EventBinding {
    /// The queue name, following Nameko's naming so that mixed fleets share queues:
    /// `evt-<source>-<event_type>--<service>.<method>` (service pool),
    /// `evt-<source>-<event_type>` (singleton), and the service-pool name plus
    /// `-<broadcast_id>` (broadcast).
    pub fn queue_name(&self) -> String {
        let base = format!("evt-{}-{}", self.source, self.event_type);
        match self.handler_type {
            HandlerType::Singleton => base,
            HandlerType::ServicePool => format!("{base}--{}.{}", self.service, self.method),
            HandlerType::Broadcast => format!(
                "{base}--{}.{}-{}",
                self.service, self.method, self.broadcast_id
            ),
        }
    }
}

/// The queue of a service's RPC entrypoints: `rpc-<service>`.
pub fn rpc_queue_name(service: &str) -> String {
    format!("rpc-{service}")
}

/// The exchange (or subject prefix) a service's events are published to: `<service>.events`.
pub fn event_exchange_name(service: &str) -> String {
    format!("{service}.events")
}

/// Options for a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeOptions {
    /// At most this many deliveries are unsettled at once.
    pub prefetch: u16,
    /// For RPC queues on brokers with priorities: the queue's maximum priority.
    pub max_priority: Option<u8>,
    /// For RPC: the service's method names (brokers with a discovery API list them).
    pub endpoints: Vec<String>,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            prefetch: 10,
            max_priority: None,
            endpoints: Vec::new(),
        }
    }
}

/// Settles one delivery; implemented by each backend.
#[async_trait]
pub trait Settle: Send + Sync {
    /// Publishes a reply to the request's `reply_to`, with its correlation id.
    async fn reply(&self, request: &Message, reply: Message) -> Result<(), BrokerError>;
    /// The work is done: remove the message.
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    /// Put the message back for redelivery (its delivery count goes up), after `delay`. The
    /// broker holds the message while it waits, not the consumer: a retry that waits must not
    /// keep a worker or a prefetch place, nor hold back a stop.
    async fn requeue(self: Box<Self>, message: Message, delay: Duration)
        -> Result<(), BrokerError>;
    /// Move the message to the dead-letter queue, with a reason.
    async fn dead_letter(
        self: Box<Self>,
        message: Message,
        reason: &str,
    ) -> Result<(), BrokerError>;
    /// The delivery was dropped unsettled (its consumer went away): redeliver it. Must not block.
    fn abandon(self: Box<Self>, message: Message);
}

/// A message handed to a consumer. Settle it with [`ack`](Delivery::ack),
/// [`requeue`](Delivery::requeue) or [`dead_letter`](Delivery::dead_letter); a delivery dropped
/// unsettled is redelivered, as when a consumer's channel closes.
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// For RPC: the method; for events: the event type.
    pub routing_key: String,
    settle: Option<Box<dyn Settle>>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("routing_key", &self.routing_key)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle.abandon(std::mem::take(&mut self.message));
        }
    }
}

impl Delivery {
    /// Wraps a message and the backend's settlement handle.
    pub fn new(message: Message, routing_key: String, settle: Box<dyn Settle>) -> Self {
        Delivery {
            message,
            routing_key,
            settle: Some(settle),
        }
    }

    /// Takes the delivery apart without settling it (for backends that failed to hand it over).
    pub fn into_parts(mut self) -> (Message, String, Box<dyn Settle>) {
        let settle = self
            .settle
            .take()
            .expect("a delivery is settled at most once");
        (
            std::mem::take(&mut self.message),
            std::mem::take(&mut self.routing_key),
            settle,
        )
    }

    /// Sends a reply to this request.
    pub async fn reply(&self, reply: Message) -> Result<(), BrokerError> {
        if self.message.reply_to.is_none() {
            return Err(BrokerError::NoReplyTo);
        }
        match &self.settle {
            Some(s) => s.reply(&self.message, reply).await,
            None => Err(BrokerError::Closed),
        }
    }

    /// Acknowledges the delivery.
    pub async fn ack(self) -> Result<(), BrokerError> {
        let (_, _, settle) = self.into_parts();
        settle.ack().await
    }

    /// Returns the delivery to its queue for redelivery.
    pub async fn requeue(self) -> Result<(), BrokerError> {
        self.requeue_after(Duration::ZERO).await
    }

    /// Returns the delivery to its queue, to be redelivered once `delay` has passed; the broker
    /// keeps it meanwhile.
    pub async fn requeue_after(self, delay: Duration) -> Result<(), BrokerError> {
        let (message, _, settle) = self.into_parts();
        settle.requeue(message, delay).await
    }

    /// Dead-letters the delivery. Its secret context data (`auth_token` and the like, see
    /// [`crate::message::mask_secrets`]) is masked first: dead letters are kept for days and
    /// shown to operators, and a token kept there outlives its purpose.
    pub async fn dead_letter(self, reason: &str) -> Result<(), BrokerError> {
        let (mut message, _, settle) = self.into_parts();
        crate::message::mask_secrets(&mut message.headers);
        settle.dead_letter(message, reason).await
    }
}

/// A stream of deliveries for one consumer. Dropping it cancels the consumer; deliveries not yet
/// taken from it go back to the queue.
pub struct Subscription {
    // Dropped first: the guard tells the backend the consumer is stopping before the deliveries
    // still queued here are dropped, so that the backend can leave them to its own redelivery
    // instead of sending them straight back to this consumer.
    _guard: Box<dyn Send + Sync>,
    source: Source,
}

enum Source {
    Channel(DeliveryReceiver),
    Stream(Pin<Box<dyn Stream<Item = Delivery> + Send>>),
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// A channel from a backend's consume loop to a [`Subscription`]: unbounded, because the backend
/// bounds what is unsettled itself (a prefetch count, `max_ack_pending`).
pub fn delivery_channel() -> (DeliverySender, DeliveryReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (DeliverySender(tx), DeliveryReceiver(rx))
}

/// The backend's end of a [`delivery_channel`].
#[derive(Debug, Clone)]
pub struct DeliverySender(mpsc::UnboundedSender<Delivery>);

impl DeliverySender {
    /// Hands `delivery` to the subscription; gives it back if the subscription is gone.
    pub fn send(&self, delivery: Delivery) -> Result<(), Box<Delivery>> {
        self.0.send(delivery).map_err(|e| Box::new(e.0))
    }

    /// Whether the subscription is gone.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Waits until the subscription is gone.
    pub async fn closed(&self) {
        self.0.closed().await;
    }
}

/// The subscription's end of a [`delivery_channel`]; see [`Subscription::new`].
#[derive(Debug)]
pub struct DeliveryReceiver(mpsc::UnboundedReceiver<Delivery>);

impl Subscription {
    /// A subscription fed by `rx`; `guard` is dropped when the subscription is, and should
    /// cancel the consumer at the broker.
    pub fn new(rx: DeliveryReceiver, guard: Box<dyn Send + Sync>) -> Self {
        Subscription {
            source: Source::Channel(rx),
            _guard: guard,
        }
    }

    /// A subscription that takes its deliveries straight from `stream`, with no task between
    /// the backend's client and the consumer; the stream should end when the consumer is
    /// cancelled. `guard` is dropped when the subscription is.
    pub fn from_stream(
        stream: impl Stream<Item = Delivery> + Send + 'static,
        guard: Box<dyn Send + Sync>,
    ) -> Self {
        Subscription {
            source: Source::Stream(Box::pin(stream)),
            _guard: guard,
        }
    }

    /// The next delivery; `None` once the consumer is cancelled or the broker is closed.
    pub async fn next(&mut self) -> Option<Delivery> {
        match &mut self.source {
            Source::Channel(rx) => rx.0.recv().await,
            Source::Stream(stream) => stream.next().await,
        }
    }
}

/// The broker contract. Every backend (memory, AMQP, NATS) implements it and passes the
/// conformance suite in `basidia-conformance`.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// A short name of the backend: `memory`, `amqp`, `nats`.
    fn kind(&self) -> &'static str;

    /// Sends an RPC request to `service.method` and waits for the reply at most `timeout`.
    ///
    /// The request's deadline and context come as [`Message::deadline`] and
    /// [`Message::headers`]; where they travel is the backend's choice: as message headers, or,
    /// where headers are dear, inside the request envelope (`"deadline"` and `"context"`
    /// entries, added with [`append_metadata`](crate::envelope::append_metadata)). Servers read
    /// them from either place.
    ///
    /// Fails at once with [`BrokerError::UnknownService`] when nothing serves `service`.
    async fn call(
        &self,
        service: &str,
        method: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BrokerError>;

    /// Starts consuming the RPC requests of `service`.
    async fn serve(
        &self,
        service: &str,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError>;

    /// Publishes an event; returns once the broker has accepted it.
    async fn publish_event(
        &self,
        source: &str,
        event_type: &str,
        message: Message,
    ) -> Result<(), BrokerError>;

    /// Starts consuming the events of one handler.
    async fn subscribe(
        &self,
        binding: &EventBinding,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError>;

    /// The largest payload the broker accepts, if it has a limit.
    fn max_payload(&self) -> Option<usize> {
        None
    }

    /// The names of the services that answer RPC calls right now, sorted, or `None` when the
    /// backend has no way to list them (AMQP: RabbitMQ does not list queues over AMQP).
    async fn services(&self) -> Result<Option<Vec<String>>, BrokerError> {
        Ok(None)
    }

    /// Every running service instance the broker can see, or `None` when the backend has no
    /// way to find them (AMQP: RabbitMQ keeps no registry of its consumers' processes).
    async fn instances(&self) -> Result<Option<Vec<InstanceInfo>>, BrokerError> {
        Ok(None)
    }

    /// Tells the broker that `instance` runs in this process (a backend that answers
    /// [`Broker::instances`] from what processes tell it keeps it until [`Broker::withdraw`]).
    fn announce(&self, instance: &InstanceInfo) {
        let _ = instance;
    }

    /// The instance with `id` stopped.
    fn withdraw(&self, id: &str) {
        let _ = id;
    }

    /// Up to `limit` of the dead letters kept, oldest first, without taking them out of the
    /// store.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<StoredDeadLetter>, BrokerError> {
        let _ = limit;
        Err(crate::internal::backend_msg(format!(
            "the {} backend keeps no dead letters that can be listed",
            self.kind()
        )))
    }

    /// Puts dead letters back where they came from, with their delivery count reset, and takes
    /// them out of the store; returns how many went back.
    async fn replay_dead_letters(&self, which: Replay<'_>) -> Result<usize, BrokerError> {
        let _ = which;
        Err(crate::internal::backend_msg(format!(
            "the {} backend keeps no dead letters that can be replayed",
            self.kind()
        )))
    }

    /// Whether the connection to the broker is up now (readiness reports it). A backend that
    /// reconnects says `false` between losing its connection and having it back.
    fn is_connected(&self) -> bool {
        true
    }

    /// Closes the broker handle; calls in flight fail with [`BrokerError::Closed`].
    async fn close(&self);
}

/// A dead letter as its store keeps it: where it came from, why it is there, and the message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoredDeadLetter {
    /// How to name it to [`Broker::replay_dead_letters`].
    pub id: String,
    /// The queue (or consumer) it was taken from.
    pub queue: String,
    /// Its method or event type.
    pub routing_key: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// How many times it had been delivered.
    pub delivery_count: u32,
    /// How long ago it was dead-lettered, where the store knows.
    pub age: Option<Duration>,
    /// The message, its secret context data masked.
    pub message: Message,
}

impl StoredDeadLetter {
    /// A dead letter with these parts.
    pub fn new(
        id: String,
        queue: String,
        routing_key: String,
        reason: String,
        delivery_count: u32,
        age: Option<Duration>,
        message: Message,
    ) -> Self {
        StoredDeadLetter {
            id,
            queue,
            routing_key,
            reason,
            delivery_count,
            age,
            message,
        }
    }
}

/// Which dead letters to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay<'a> {
    /// The one with this id.
    One(&'a str),
    /// Every one the store holds when the replay starts.
    All,
}

/// A shared broker handle.
pub type SharedBroker = Arc<dyn Broker>;

/// One running instance of a service, as `basidia status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceInfo {
    /// The service name.
    pub service: String,
    /// This instance's id, unique among the service's instances.
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// The Basidia version it runs.
    pub version: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// Its entrypoints (RPC methods, event handlers, timers, HTTP routes), by name.
    pub entrypoints: Vec<String>,
}

impl InstanceInfo {
    /// A new instance of `service` in this process, starting now.
    pub fn starting_now(service: &str, entrypoints: Vec<String>) -> Self {
        InstanceInfo {
            service: service.to_string(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            host: host_name(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_ms: crate::context::now_epoch_ms(),
            entrypoints,
        }
    }

    /// Sorts `instances` by service, then by start, then by id: the order listings use.
    pub fn sort(instances: &mut [InstanceInfo]) {
        instances.sort_by(|a, b| {
            (&a.service, a.started_ms, &a.id).cmp(&(&b.service, b.started_ms, &b.id))
        });
    }
}

/// This machine's name: the kernel's, else `$HOSTNAME`, else `unknown`; read once.
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unknown".to_string())
    })
    .clone()
}
