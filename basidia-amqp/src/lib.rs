//! The AMQP backend (RabbitMQ through lapin), speaking Nameko 2.x's wire protocol so that
//! Basidia and Python Nameko services call each other and exchange events.
//!
//! The mapping is written down in `docs/protocol-amqp.md`. In short:
//! - RPC: topic exchange `nameko-rpc` (configurable); service queue `rpc-<service>` bound with
//!   `<service>.*`; requests routed by `<service>.<method>`, published mandatory so that an
//!   unknown service comes back at once; one reply queue per process,
//!   `rpc.reply-basidia-<uuid>`, bound by the uuid that requests carry as `reply_to`.
//! - Events: topic exchange `<source>.events`; queues named as Nameko names them per handler
//!   type; dispatch returns after the broker's publisher confirm.
//! - Context data travels as `nameko.`-prefixed headers.
//! - Retries republish with an `x-basidia-delivery-count` header; dead letters go to the
//!   exchange `basidia.dead-letter` and the queue `basidia.dead-letters`.
//! - One connection per broker handle; a supervisor reconnects with back-off after a drop,
//!   redeclares what it needs and resumes every consumer; calls in flight at the drop fail with
//!   `ConnectionLost`.

mod channels;
mod dead_letters;
mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use basidia_core::{
    event_exchange_name, redact_url, rpc_queue_name, Broker, BrokerError, ConsumeOptions, Delivery,
    EventBinding, HandlerType, Message, Settle, Subscription,
};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use wire::HEADER_PREFIX;

/// The exchange dead letters are published to.
pub const DEAD_LETTER_EXCHANGE: &str = "basidia.dead-letter";
/// The queue that keeps dead letters (bound to [`DEAD_LETTER_EXCHANGE`] with `#`).
pub const DEAD_LETTER_QUEUE: &str = "basidia.dead-letters";
/// Retries that wait are published here, routed `<delay ms>.<queue>` to the delay queue
/// `basidia.delay.<delay ms>`, whose message TTL is that delay.
pub const DELAY_EXCHANGE: &str = "basidia.delay";
/// Delay queues dead-letter their expired messages here, with the key they were published with;
/// every event queue is bound by `*.<queue>`, so a retry comes back to the queue it left.
pub const RETRY_EXCHANGE: &str = "basidia.retry";
/// Nameko's default RPC exchange.
pub const DEFAULT_RPC_EXCHANGE: &str = "nameko-rpc";
/// How long an idle reply queue lives (Nameko's value).
const REPLY_QUEUE_EXPIRES_MS: i64 = 300_000;

use basidia_core::internal::lock;

/// Options of the AMQP backend.
#[derive(Clone)]
pub struct AmqpOptions {
    /// `amqp://user:password@host:port/vhost` or `amqps://...`.
    pub url: String,
    /// The RPC exchange (Nameko's `rpc_exchange`).
    pub rpc_exchange: String,
    /// A PEM file of CA certificates to trust for `amqps://`.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The longest pause between reconnection attempts.
    pub max_reconnect_backoff: Duration,
    /// The largest message body accepted before sending.
    pub max_payload: usize,
    /// The longest a publish (an event, a retry, a dead letter) waits for the broker's confirm
    /// when the message has no earlier deadline. A broker under an alarm takes nothing until it
    /// clears; this bounds how long a dispatcher waits for that.
    pub publish_timeout: Duration,
    /// Declare durable event queues (service pool and singleton handlers) as quorum queues:
    /// replicated across a cluster's nodes, and counting deliveries themselves, so that
    /// `event_max_deliveries` holds even when a handler takes its process down each time. Off by
    /// default: an existing classic queue cannot change its type (delete it first), and Nameko
    /// peers sharing the queue must declare it the same way.
    pub quorum_event_queues: bool,
    /// The most dead letters the dead-letter queue keeps (`x-max-length`); past it RabbitMQ
    /// drops the oldest.
    pub dead_letter_max_count: i64,
    /// The most bytes of message bodies the dead-letter queue keeps (`x-max-length-bytes`);
    /// past it RabbitMQ drops the oldest.
    pub dead_letter_max_bytes: i64,
}

impl AmqpOptions {
    /// Options for `url` with Nameko's defaults.
    pub fn new(url: &str) -> Self {
        AmqpOptions {
            url: url.to_string(),
            rpc_exchange: DEFAULT_RPC_EXCHANGE.to_string(),
            tls_ca_file: None,
            max_reconnect_backoff: Duration::from_secs(5),
            max_payload: 128 * 1024 * 1024,
            publish_timeout: Duration::from_secs(10),
            quorum_event_queues: false,
            dead_letter_max_count: 100_000,
            dead_letter_max_bytes: 256 * 1024 * 1024,
        }
    }
}

impl fmt::Debug for AmqpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpOptions")
            .field("url", &redact_url(&self.url))
            .field("rpc_exchange", &self.rpc_exchange)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish_non_exhaustive()
    }
}

type PendingMap = HashMap<String, oneshot::Sender<Result<Message, BrokerError>>>;

/// A live connection and its publishing channels.
struct Live {
    connection: Connection,
    /// The two channels every publisher shares; the broker may close either with a channel
    /// error, and then it is replaced on this same connection.
    channels: channels::Shared,
    generation: u64,
    declared: Mutex<HashSet<String>>,
}

#[derive(Clone)]
enum ConsumerKind {
    Rpc { service: String },
    Event(EventBinding),
}

struct ConsumerSpec {
    kind: ConsumerKind,
    options: ConsumeOptions,
    tx: mpsc::UnboundedSender<Delivery>,
    cancel: CancellationToken,
}

struct Inner {
    options: AmqpOptions,
    reply_key: String,
    reply_queue: String,
    state: watch::Sender<Option<Arc<Live>>>,
    pending: Mutex<PendingMap>,
    consumers: Mutex<HashMap<u64, Arc<ConsumerSpec>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    /// Which of the URL's nodes to try first when connecting.
    next_node: std::sync::atomic::AtomicUsize,
    /// Set while the broker has blocked the connection, with its reason.
    blocked: AtomicBool,
    blocked_reason: Mutex<String>,
    shutdown: CancellationToken,
}

/// A connection to RabbitMQ (or any AMQP 0-9-1 broker). Cloning shares it.
#[derive(Clone)]
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("options", &self.inner.options)
            .field("reply_queue", &self.inner.reply_queue)
            .finish_non_exhaustive()
    }
}

use basidia_core::internal::{backend, lost};

impl AmqpBroker {
    /// Connects to `url` with default options.
    pub async fn connect(url: &str) -> Result<Self, BrokerError> {
        Self::connect_with(AmqpOptions::new(url)).await
    }

    /// Connects with options. Fails if the first connection cannot be made; later drops are
    /// repaired in the background.
    pub async fn connect_with(options: AmqpOptions) -> Result<Self, BrokerError> {
        let reply_key = uuid::Uuid::new_v4().to_string();
        let inner = Arc::new(Inner {
            reply_queue: format!("rpc.reply-basidia-{reply_key}"),
            reply_key,
            options,
            state: watch::channel(None).0,
            pending: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            next_node: std::sync::atomic::AtomicUsize::new(0),
            blocked: AtomicBool::new(false),
            blocked_reason: Mutex::new(String::new()),
            shutdown: CancellationToken::new(),
        });
        let live = connect_live(&inner, 1).await?;
        inner.state.send_replace(Some(Arc::clone(&live)));
        tokio::spawn(supervise(Arc::downgrade(&inner), live));
        Ok(AmqpBroker { inner })
    }

    /// The name this handle's connection carries at the broker (its `connection_name` client
    /// property, as `rabbitmqctl list_connections client_properties` shows it).
    pub fn connection_name(&self) -> String {
        format!("basidia-{}", &self.inner.reply_key[..8])
    }

    /// The queue replies to this handle's calls arrive on.
    pub fn reply_queue(&self) -> &str {
        &self.inner.reply_queue
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.state.borrow().is_some()
    }

    /// Waits until a connection is up, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.state.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn live(&self) -> Result<Arc<Live>, BrokerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        self.inner
            .state
            .borrow()
            .clone()
            .ok_or_else(|| lost("not connected to the broker; reconnecting"))
    }

    fn register(
        &self,
        kind: ConsumerKind,
        options: ConsumeOptions,
    ) -> (u64, Arc<ConsumerSpec>, mpsc::UnboundedReceiver<Delivery>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let spec = Arc::new(ConsumerSpec {
            kind,
            options,
            tx,
            cancel: self.inner.shutdown.child_token(),
        });
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.consumers).insert(id, Arc::clone(&spec));
        (id, spec, rx)
    }

    async fn start_consumer(
        &self,
        kind: ConsumerKind,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        let live = self.live()?;
        let (id, spec, rx) = self.register(kind, options);
        match open_consumer(&self.inner, &live, &spec).await {
            Ok(consumer) => {
                tokio::spawn(forward(
                    Arc::downgrade(&self.inner),
                    live,
                    Arc::clone(&spec),
                    consumer,
                ));
            }
            Err(e) => {
                lock(&self.inner.consumers).remove(&id);
                return Err(e);
            }
        }
        let guard = ConsumerGuard {
            inner: Arc::downgrade(&self.inner),
            id,
            cancel: spec.cancel.clone(),
        };
        Ok(Subscription::new(rx, Box::new(guard)))
    }
}

struct ConsumerGuard {
    inner: Weak<Inner>,
    id: u64,
    cancel: CancellationToken,
}

impl Drop for ConsumerGuard {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(inner) = self.inner.upgrade() {
            lock(&inner.consumers).remove(&self.id);
        }
    }
}

impl Inner {
    /// How long a publish of `message` may wait: until its deadline, and never longer than
    /// the publish timeout.
    fn publish_limit(&self, message: &Message) -> Duration {
        let limit = self.options.publish_timeout;
        message.deadline.map_or(limit, |at| {
            at.saturating_duration_since(tokio::time::Instant::now())
                .min(limit)
        })
    }

    /// `work` (a publish or a declaration), given up after `limit` with a clear error.
    async fn bounded<T>(
        &self,
        limit: Duration,
        work: impl std::future::Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(self.publish_timed_out(limit)))
    }

    /// The error for a publish that waited `after` in vain.
    fn publish_timed_out(&self, after: Duration) -> BrokerError {
        if self.blocked.load(Ordering::Acquire) {
            BrokerError::Blocked {
                reason: lock(&self.blocked_reason).clone(),
                after,
            }
        } else {
            BrokerError::Timeout(after)
        }
    }
}

impl Live {
    /// Publishes on the confirm channel and waits for the broker's confirm, at most `limit`.
    async fn publish_confirmed(
        &self,
        inner: &Inner,
        limit: Duration,
        exchange: &str,
        routing_key: &str,
        message: &Message,
        extra: &[(&str, AMQPValue)],
    ) -> Result<(), BrokerError> {
        inner
            .bounded(
                limit,
                self.publish_confirmed_unbounded(exchange, routing_key, message, extra),
            )
            .await
    }

    async fn publish_confirmed_unbounded(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
        extra: &[(&str, AMQPValue)],
    ) -> Result<(), BrokerError> {
        let confirm = self
            .channels
            .publish()
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                &message.body,
                wire::properties(message, extra),
            )
            .await
            .map_err(lost)?
            .await
            .map_err(lost)?;
        if confirm.is_nack() {
            return Err(backend(format!(
                "the broker refused the message to {exchange:?}"
            )));
        }
        Ok(())
    }
}

async fn connect_live(inner: &Arc<Inner>, generation: u64) -> Result<Arc<Live>, BrokerError> {
    let opts = &inner.options;
    let props = ConnectionProperties::default().with_connection_name(LongString::from(format!(
        "basidia-{}",
        &inner.reply_key[..8]
    )));
    debug_assert_eq!(inner.reply_key.len(), 36);
    let mut tls = lapin::tcp::OwnedTLSConfig::default();
    if let Some(path) = &opts.tls_ca_file {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            BrokerError::InvalidUrl(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        tls.cert_chain = Some(pem);
    }
    let runtime = lapin::runtime::default_runtime().map_err(backend)?;
    // The frame size is the server's: RabbitMQ sends a message's content header as one frame,
    // so a client that asks for smaller frames than its peers use cannot take their messages.
    //
    // A URL may name several nodes of a cluster, `amqp://a/%2f,amqp://b/%2f`: they are tried in
    // turn, starting after the one last connected to, on connecting and on every reconnection.
    let urls: Vec<&str> = opts
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(BrokerError::InvalidUrl("the URL names no broker".into()));
    }
    let first = inner.next_node.load(Ordering::Relaxed) % urls.len();
    let mut failures = Vec::new();
    let mut connected = None;
    for i in 0..urls.len() {
        let at = (first + i) % urls.len();
        match Connection::connect_with_config(urls[at], props.clone(), tls.clone(), runtime.clone())
            .await
        {
            Ok(c) => {
                // A reconnection tries the next node first: this one may be the one that went.
                inner.next_node.store(at + 1, Ordering::Relaxed);
                connected = Some(c);
                break;
            }
            Err(e) => failures.push(format!("{}: {e}", redact_url(urls[at]))),
        }
    }
    let Some(connection) = connected else {
        return Err(lost(format!("cannot connect to {}", failures.join("; "))));
    };
    let publish = channels::open_publish(&connection).await?;
    declare_exchange(&publish, &opts.rpc_exchange).await?;
    declare_exchange(&publish, DELAY_EXCHANGE).await?;
    declare_exchange(&publish, RETRY_EXCHANGE).await?;
    // Dead letters.
    declare_exchange(&publish, DEAD_LETTER_EXCHANGE).await?;
    declare_dead_letter_queue(&connection, opts).await?;
    bind_queue(&publish, DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, "#").await?;
    let replies = channels::open_replies(inner, &connection).await?;
    let rpc = channels::open_rpc(inner, &connection).await?;
    let live = Arc::new(Live {
        connection,
        channels: channels::Shared::new(publish, rpc),
        generation,
        declared: Mutex::new(HashSet::new()),
    });
    tokio::spawn(channels::route_replies(
        Arc::downgrade(inner),
        Arc::downgrade(&live),
        replies,
    ));
    Ok(live)
}

/// Declares the dead-letter queue with its limits (the oldest dead letters go first once one is
/// reached). A queue declared earlier with other limits (or none) cannot take new ones by
/// declaration; it is used as it is, with a warning that an operator policy can set them.
async fn declare_dead_letter_queue(
    connection: &Connection,
    opts: &AmqpOptions,
) -> Result<(), BrokerError> {
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(opts.dead_letter_max_count),
    );
    args.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(opts.dead_letter_max_bytes),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("drop-head")),
    );
    // On a channel of its own: a refused declaration closes the channel it was made on.
    let channel = connection.create_channel().await.map_err(lost)?;
    let declared = channel
        .queue_declare(
            DEAD_LETTER_QUEUE.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await;
    match declared {
        Ok(_) => {
            let _ = channel.close(200, "declared".into()).await;
            Ok(())
        }
        Err(e) => {
            tracing::warn!(
                queue = DEAD_LETTER_QUEUE,
                "the dead-letter queue exists with other limits than configured ({e}); keeping it as it is: delete it to have it declared again, or set its limits with a policy"
            );
            let channel = connection.create_channel().await.map_err(lost)?;
            channel
                .queue_declare(
                    DEAD_LETTER_QUEUE.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(backend)?;
            let _ = channel.close(200, "declared".into()).await;
            Ok(())
        }
    }
}

/// Declares a durable queue with `args`.
pub(crate) async fn declare_durable_queue(
    channel: &Channel,
    queue: &str,
    args: FieldTable,
) -> Result<(), BrokerError> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .map(|_| ())
        .map_err(backend)
}

/// Binds `queue` to `exchange` with `key`.
pub(crate) async fn bind_queue(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), BrokerError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(backend)
}

/// Declares a durable topic exchange, with the flags Nameko uses.
async fn declare_exchange(channel: &Channel, name: &str) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(backend)
}

/// Watches the connection; after a drop, fails calls in flight and reconnects with back-off.
async fn supervise(inner: Weak<Inner>, mut live: Arc<Live>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let shutdown = strong.shutdown.clone();
        drop(strong);
        let mut events = live.connection.events_listener();
        let failure = loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                ev = events.next() => match ev {
                    Some(lapin::Event::Error(e)) => {
                        // A channel the broker closed is reported here as well; the connection's
                        // state tells the two apart.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if !live.connection.status().connected() {
                            break e.to_string();
                        }
                        tracing::warn!("the broker closed a channel: {e}");
                        if let Some(strong) = inner.upgrade() {
                            live.channels.repair(&strong, &live.connection).await;
                        }
                    }
                    Some(lapin::Event::ConnectionBlocked(reason)) => {
                        if let Some(strong) = inner.upgrade() {
                            tracing::warn!(%reason, "the broker blocked the connection: publishes wait until it unblocks or their deadline passes");
                            *lock(&strong.blocked_reason) = reason;
                            strong.blocked.store(true, Ordering::Release);
                        }
                    }
                    Some(lapin::Event::ConnectionUnblocked) => {
                        if let Some(strong) = inner.upgrade() {
                            strong.blocked.store(false, Ordering::Release);
                            tracing::info!("the broker unblocked the connection");
                        }
                    }
                    Some(_) => {}
                    None => break "connection closed".to_string(),
                },
            }
        };
        let Some(strong) = inner.upgrade() else {
            return;
        };
        tracing::warn!("AMQP connection lost ({failure}); reconnecting");
        strong.state.send_replace(None);
        // Whatever is left of the old connection goes before a new one is made, so that the
        // broker never holds two for this process.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            live.connection.close(200, "replaced".into()),
        )
        .await;
        strong.blocked.store(false, Ordering::Release);
        // Dropping the senders fails every call in flight with ConnectionLost.
        lock(&strong.pending).clear();
        let mut backoff = Duration::from_millis(100);
        let generation = live.generation + 1;
        live = loop {
            if strong.closed.load(Ordering::Acquire) {
                return;
            }
            match connect_live(&strong, generation).await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::debug!("reconnect failed: {e}");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(strong.options.max_reconnect_backoff);
                }
            }
        };
        let specs: Vec<Arc<ConsumerSpec>> = lock(&strong.consumers).values().cloned().collect();
        for spec in specs {
            match open_consumer(&strong, &live, &spec).await {
                Ok(c) => {
                    tokio::spawn(forward(Arc::downgrade(&strong), Arc::clone(&live), spec, c));
                }
                Err(e) => tracing::error!("cannot resume a consumer after reconnecting: {e}"),
            }
        }
        strong.state.send_replace(Some(Arc::clone(&live)));
        tracing::info!("AMQP connection re-established");
    }
}

fn queue_of(kind: &ConsumerKind) -> String {
    match kind {
        ConsumerKind::Rpc { service } => rpc_queue_name(service),
        ConsumerKind::Event(b) => b.queue_name(),
    }
}

async fn open_consumer(
    inner: &Inner,
    live: &Live,
    spec: &ConsumerSpec,
) -> Result<(Channel, lapin::Consumer), BrokerError> {
    let channel = live.connection.create_channel().await.map_err(lost)?;
    channel
        .basic_qos(spec.options.prefetch, BasicQosOptions::default())
        .await
        .map_err(backend)?;
    let queue = queue_of(&spec.kind);
    match &spec.kind {
        ConsumerKind::Rpc { service } => {
            let mut args = FieldTable::default();
            if let Some(p) = spec.options.max_priority {
                args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(p));
            }
            declare_durable_queue(&channel, &queue, args).await?;
            let key = format!("{service}.*");
            bind_queue(&channel, &queue, &inner.options.rpc_exchange, &key).await?;
        }
        ConsumerKind::Event(binding) => {
            let exchange = event_exchange_name(&binding.source);
            declare_exchange(&channel, &exchange).await?;
            let broadcast = binding.handler_type == HandlerType::Broadcast;
            let mut args = FieldTable::default();
            if inner.options.quorum_event_queues && !broadcast {
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString(LongString::from("quorum")),
                );
            }
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: !broadcast,
                        auto_delete: broadcast,
                        exclusive: broadcast,
                        ..QueueDeclareOptions::default()
                    },
                    args,
                )
                .await
                .map_err(backend)?;
            bind_queue(&channel, &queue, &exchange, &binding.event_type).await?;
            bind_queue(&channel, &queue, RETRY_EXCHANGE, &format!("*.{queue}")).await?;
        }
    }
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(backend)?;
    Ok((channel, consumer))
}

/// A consumer's channel, closed once nothing needs it any more: neither the consumer's task nor
/// any delivery still to be settled. Deliveries settle on the channel they came on, so a stop
/// that cancels the consumer keeps the channel for the workers still at work; closing it then
/// puts whatever was prefetched and never started back on the queue, once.
struct ConsumerChannel {
    channel: Channel,
    /// Cancelled when the consumer stops (its subscription dropped, or the broker closed).
    stopped: CancellationToken,
}

impl Drop for ConsumerChannel {
    fn drop(&mut self) {
        let channel = self.channel.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = channel.close(200, "consumer stopped".into()).await;
            });
        }
    }
}

/// Why [`forward_deliveries`] ended.
#[derive(PartialEq, Eq)]
enum Ended {
    /// The subscription was dropped or the broker handle closed.
    Stopped,
    /// The consumer's stream ended from the broker's side: the consumer cancelled (its queue
    /// deleted), its channel closed, or the connection lost.
    ByBroker,
}

/// Moves deliveries of one consumer into its subscription until the subscription stops. When
/// the broker ends the consumer while the connection stays up (an operator deleted the queue,
/// or a channel error), the queue is declared and consumed again; after a lost connection the
/// supervisor resumes every consumer.
async fn forward(
    inner: Weak<Inner>,
    live: Arc<Live>,
    spec: Arc<ConsumerSpec>,
    first: (Channel, lapin::Consumer),
) {
    let queue = queue_of(&spec.kind);
    let mut current = first;
    loop {
        let (channel, consumer) = current;
        if forward_deliveries(&inner, &live, &spec, &queue, channel, consumer).await
            == Ended::Stopped
        {
            return;
        }
        match inner.upgrade() {
            Some(strong) if channels::still_current(&strong, &live) => {}
            _ => return,
        }
        tracing::warn!(
            queue,
            "the broker stopped this consumer (its queue deleted, or its channel closed); declaring and consuming it again"
        );
        let stopped = || spec.cancel.is_cancelled() || spec.tx.is_closed();
        let next = channels::reopen(
            &inner,
            &Arc::downgrade(&live),
            &queue,
            stopped,
            |strong, l| {
                let spec = Arc::clone(&spec);
                async move { open_consumer(&strong, &l, &spec).await }
            },
        )
        .await;
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
}

async fn forward_deliveries(
    inner: &Weak<Inner>,
    live: &Arc<Live>,
    spec: &ConsumerSpec,
    queue: &str,
    channel: Channel,
    mut consumer: lapin::Consumer,
) -> Ended {
    let shared = Arc::new(ConsumerChannel {
        channel,
        stopped: spec.cancel.clone(),
    });
    loop {
        let item = tokio::select! {
            () = spec.cancel.cancelled() => break,
            () = spec.tx.closed() => break,
            item = consumer.next() => item,
        };
        let d = match item {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::debug!(queue, "consumer stream error: {e}");
                return Ended::ByBroker;
            }
            None => return Ended::ByBroker,
        };
        // The method (RPC) or event type is the routing key the broker delivered with; a
        // republished retry names its queue there, and its event type is the binding's.
        let routing_key = match &spec.kind {
            ConsumerKind::Rpc { service } => d
                .routing_key
                .as_str()
                .strip_prefix(service.as_str())
                .and_then(|k| k.strip_prefix('.'))
                .unwrap_or(d.routing_key.as_str())
                .to_string(),
            ConsumerKind::Event(binding) => binding.event_type.clone(),
        };
        let original_key = match &spec.kind {
            ConsumerKind::Rpc { service } => format!("{service}.{routing_key}"),
            ConsumerKind::Event(_) => routing_key.clone(),
        };
        let republished = matches!(d.exchange.as_str(), "" | RETRY_EXCHANGE);
        let message = wire::message_of(&d.properties, d.data, d.redelivered, republished);
        let settle = AmqpSettle {
            inner: inner.clone(),
            live: Arc::clone(live),
            channel: Arc::clone(&shared),
            tag: d.delivery_tag,
            queue: queue.to_string(),
            original_key,
            rpc: matches!(spec.kind, ConsumerKind::Rpc { .. }),
        };
        if let Err(unsent) = spec
            .tx
            .send(Delivery::new(message, routing_key, Box::new(settle)))
        {
            // The subscription is gone; what it did not take stays unacked until the channel
            // closes, and goes back to the queue then.
            drop(unsent);
            break;
        }
    }
    // No new deliveries; the channel stays open while deliveries already handed over are
    // settled. Anything the broker sent before the cancel took effect is left unacked for the
    // close to requeue.
    let _ = shared
        .channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    Ended::Stopped
}

struct AmqpSettle {
    inner: Weak<Inner>,
    live: Arc<Live>,
    channel: Arc<ConsumerChannel>,
    tag: u64,
    queue: String,
    original_key: String,
    /// A request rather than an event: requeued in place, keeping the routing key that names
    /// its method.
    rpc: bool,
}

impl AmqpSettle {
    async fn ack_original(&self) -> Result<(), BrokerError> {
        self.channel
            .channel
            .basic_ack(self.tag, BasicAckOptions::default())
            .await
            .map_err(lost)
    }
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn reply(&self, request: &Message, reply: Message) -> Result<(), BrokerError> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(BrokerError::Closed);
        };
        let (Some(reply_to), Some(correlation_id)) = (&request.reply_to, &request.correlation_id)
        else {
            return Err(BrokerError::NoReplyTo);
        };
        let mut reply = reply;
        reply.correlation_id = Some(correlation_id.clone());
        let props = wire::properties(&reply, &[]).with_delivery_mode(wire::TRANSIENT);
        // The reply is not confirmed: the request is acked right after, and a caller that misses
        // its reply through a broker failure sees ConnectionLost or its deadline.
        self.live
            .channels
            .rpc()
            .basic_publish(
                inner.options.rpc_exchange.as_str().into(),
                reply_to.as_str().into(),
                BasicPublishOptions::default(),
                &reply.body,
                props,
            )
            .await
            .map_err(lost)?;
        Ok(())
    }

    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.ack_original().await
    }

    async fn requeue(
        self: Box<Self>,
        message: Message,
        delay: Duration,
    ) -> Result<(), BrokerError> {
        if self.rpc {
            return self
                .channel
                .channel
                .basic_nack(
                    self.tag,
                    BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    },
                )
                .await
                .map_err(lost);
        }
        let extra = [
            (
                wire::DELIVERY_COUNT_HEADER,
                AMQPValue::LongLongInt(i64::from(message.delivery_count)),
            ),
            (
                wire::ROUTING_KEY_HEADER,
                AMQPValue::LongString(LongString::from(self.original_key.as_str())),
            ),
        ];
        let Some(inner) = self.inner.upgrade() else {
            return Err(BrokerError::Closed);
        };
        let (exchange, key) = if delay.is_zero() {
            (String::new(), self.queue.clone())
        } else {
            let ms = delay_queue(&inner, &self.live, delay).await?;
            (DELAY_EXCHANGE.to_string(), format!("{ms}.{}", self.queue))
        };
        // Republish first, then ack: a failure in between duplicates, never loses.
        self.live
            .publish_confirmed(
                &inner,
                inner.options.publish_timeout,
                &exchange,
                &key,
                &message,
                &extra,
            )
            .await?;
        self.ack_original().await
    }

    async fn dead_letter(
        self: Box<Self>,
        message: Message,
        reason: &str,
    ) -> Result<(), BrokerError> {
        tracing::warn!(queue = %self.queue, routing_key = %self.original_key, reason, "message dead-lettered");
        let extra = [
            (
                wire::DELIVERY_COUNT_HEADER,
                AMQPValue::LongLongInt(i64::from(message.delivery_count)),
            ),
            (
                wire::ROUTING_KEY_HEADER,
                AMQPValue::LongString(LongString::from(self.original_key.as_str())),
            ),
            (
                wire::REASON_HEADER,
                AMQPValue::LongString(LongString::from(reason)),
            ),
            (
                wire::QUEUE_HEADER,
                AMQPValue::LongString(LongString::from(self.queue.as_str())),
            ),
            (
                wire::DEAD_LETTER_ID_HEADER,
                AMQPValue::LongString(LongString::from(uuid::Uuid::new_v4().simple().to_string())),
            ),
            (
                wire::DEAD_LETTERED_AT_HEADER,
                AMQPValue::LongLongInt(basidia_core::context::epoch_ms_after(Duration::ZERO)),
            ),
        ];
        let key = format!("{}.{}", self.queue, self.original_key);
        let Some(inner) = self.inner.upgrade() else {
            return Err(BrokerError::Closed);
        };
        self.live
            .publish_confirmed(
                &inner,
                inner.options.publish_timeout,
                DEAD_LETTER_EXCHANGE,
                &key,
                &message,
                &extra,
            )
            .await?;
        self.ack_original().await
    }

    fn abandon(self: Box<Self>, _message: Message) {
        if self.channel.stopped.is_cancelled() {
            // The consumer is stopping: a requeue now could come straight back to it. The
            // channel's close requeues this delivery with the others left unsettled.
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = self
                    .channel
                    .channel
                    .basic_nack(
                        self.tag,
                        BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        },
                    )
                    .await;
            });
        }
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    async fn call(
        &self,
        service: &str,
        method: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BrokerError> {
        let live = self.live()?;
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(correlation_id.clone(), tx);
        // However the call ends, even with its future dropped by the caller, its entry goes.
        let registration = Registration {
            pending: &self.inner.pending,
            id: correlation_id,
        };
        let mut message = request;
        message.correlation_id = Some(registration.id.clone());
        message.reply_to = Some(self.inner.reply_key.clone());
        let props = wire::properties(&message, &[]).with_delivery_mode(wire::TRANSIENT);
        // The deadline covers the publish too: a connection the broker has blocked (a memory or
        // disk alarm) takes no frames, and the publish would wait for the alarm to clear.
        let exchange = self.inner.options.rpc_exchange.as_str();
        let routing_key = format!("{service}.{method}");
        let exchange_call = async {
            live.channels
                .rpc()
                .basic_publish(
                    exchange.into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    props,
                )
                .await
                .map_err(lost)?;
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(lost("the connection dropped while the call was in flight")),
            }
        };
        match tokio::time::timeout(timeout, exchange_call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.inner.publish_timed_out(timeout)),
        }
    }

    async fn serve(
        &self,
        service: &str,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.start_consumer(
            ConsumerKind::Rpc {
                service: service.to_string(),
            },
            options,
        )
        .await
    }

    async fn publish_event(
        &self,
        source: &str,
        event_type: &str,
        message: Message,
    ) -> Result<(), BrokerError> {
        let live = self.live()?;
        let exchange = event_exchange_name(source);
        let limit = self.inner.publish_limit(&message);
        let known = lock(&live.declared).contains(&exchange);
        if !known {
            let channel = live.channels.publish();
            self.inner
                .bounded(limit, declare_exchange(&channel, &exchange))
                .await?;
            lock(&live.declared).insert(exchange.clone());
        }
        let published = live
            .publish_confirmed(&self.inner, limit, &exchange, event_type, &message, &[])
            .await;
        if published.is_err() {
            // Perhaps the exchange is gone (an operator deleted it, and the broker closed the
            // channel for it): declare it again next time.
            lock(&live.declared).remove(&exchange);
        }
        published
    }

    async fn subscribe(
        &self,
        binding: &EventBinding,
        options: ConsumeOptions,
    ) -> Result<Subscription, BrokerError> {
        self.start_consumer(ConsumerKind::Event(binding.clone()), options)
            .await
    }

    fn max_payload(&self) -> Option<usize> {
        Some(self.inner.options.max_payload)
    }

    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<basidia_core::StoredDeadLetter>, BrokerError> {
        dead_letters::list(&*self.live()?, limit).await
    }

    async fn replay_dead_letters(
        &self,
        which: basidia_core::Replay<'_>,
    ) -> Result<usize, BrokerError> {
        dead_letters::replay(&*self.live()?, which).await
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.shutdown.cancel();
        lock(&self.inner.pending).clear();
        let live = self.inner.state.send_replace(None);
        if let Some(live) = live {
            // A blocked connection takes no close either; the socket goes with the process.
            let limit = self.inner.options.publish_timeout;
            let _ = tokio::time::timeout(limit, live.connection.close(200, "closed".into())).await;
        }
    }
}

/// Declares (once per connection) the delay queue for `delay`, rounded to milliseconds, and
/// returns those milliseconds.
async fn delay_queue(inner: &Inner, live: &Live, delay: Duration) -> Result<u128, BrokerError> {
    let ms = delay.as_millis().max(1);
    let name = format!("{DELAY_EXCHANGE}.{ms}");
    if lock(&live.declared).contains(&name) {
        return Ok(ms);
    }
    let mut args = FieldTable::default();
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(ms).unwrap_or(i64::MAX)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(RETRY_EXCHANGE)),
    );
    let channel = live.channels.publish();
    let declare = async {
        declare_durable_queue(&channel, &name, args).await?;
        bind_queue(&channel, &name, DELAY_EXCHANGE, &format!("{ms}.#")).await
    };
    inner
        .bounded(inner.options.publish_timeout, declare)
        .await?;
    lock(&live.declared).insert(name);
    Ok(ms)
}

/// A call's place in the pending map, given up when the call ends however it ends.
struct Registration<'a> {
    pending: &'a Mutex<PendingMap>,
    id: String,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://app:s3cret@rabbit:5672/%2f"),
            "amqp://app:***@rabbit:5672/%2f"
        );
        assert_eq!(redact_url("amqp://rabbit/"), "amqp://rabbit/");
        let opts = AmqpOptions::new("amqps://app:s3cret@rabbit/");
        assert!(!format!("{opts:?}").contains("s3cret"));
    }

    /// A call whose future the caller drops (a `tokio::time::timeout` around it, a cancelled
    /// task) leaves nothing in the pending map, nor do calls that time out or are answered.
    #[tokio::test]
    async fn dropped_calls_leave_no_registration_behind() {
        let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_AMQP_URL") else {
            return;
        };
        let broker = AmqpBroker::connect(&url).await.expect("connect");
        let service = format!("t_dropped_{}", std::process::id());
        // Served but never answered: requests are routed and wait.
        let sub = broker
            .serve(&service, ConsumeOptions::default())
            .await
            .expect("serve");
        let request = || Message::new(b"{}".to_vec(), "application/json");
        for _ in 0..20 {
            let call = broker.call(&service, "m", request(), Duration::from_secs(30));
            let dropped = tokio::time::timeout(Duration::from_millis(20), call).await;
            assert!(dropped.is_err(), "the call was cut short");
        }
        let timed_out = broker
            .call(&service, "m", request(), Duration::from_millis(50))
            .await;
        assert!(
            matches!(timed_out, Err(BrokerError::Timeout(_))),
            "{timed_out:?}"
        );
        assert_eq!(
            lock(&broker.inner.pending).len(),
            0,
            "calls left registered"
        );
        drop(sub);
        broker.close().await;
    }
}
