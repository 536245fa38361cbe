//! The connection: the state a broker handle shares, connecting to the first node of the URL
//! that answers, and the supervisor that reconnects after a drop and resumes every consumer.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use basidia_core::internal::{backend, backend_msg, lock, lost, lost_msg};
use basidia_core::{redact_url, BrokerError, Message};
use futures_util::StreamExt;
use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::consumers::{forward, open_consumer, ConsumerSpec};
use crate::dead_letters::{declare_dead_letter_queue, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE};
use crate::events::{DELAY_EXCHANGE, RETRY_EXCHANGE};
use crate::options::AmqpOptions;
use crate::rpc::PendingMap;
use crate::{channels, wire};

/// A live connection and its publishing channels.
pub(crate) struct Live {
    pub(crate) connection: Connection,
    /// The two channels every publisher shares; the broker may close either with a channel
    /// error, and then it is replaced on this same connection.
    pub(crate) channels: channels::Shared,
    pub(crate) generation: u64,
    pub(crate) declared: Mutex<HashSet<String>>,
}

/// What the clones of one broker handle share.
pub(crate) struct Inner {
    pub(crate) options: AmqpOptions,
    pub(crate) reply_key: String,
    pub(crate) reply_queue: String,
    pub(crate) state: watch::Sender<Option<Arc<Live>>>,
    pub(crate) pending: Mutex<PendingMap>,
    /// Told when a call starts while none was waiting, so that what watches for returned
    /// requests sleeps while no call can have one.
    pub(crate) calls_started: Arc<tokio::sync::Notify>,
    pub(crate) consumers: Mutex<HashMap<u64, Arc<ConsumerSpec>>>,
    pub(crate) next_id: AtomicU64,
    pub(crate) closed: AtomicBool,
    /// Which of the URL's nodes to try first when connecting.
    next_node: std::sync::atomic::AtomicUsize,
    /// Set while the broker has blocked the connection, with its reason.
    blocked: AtomicBool,
    blocked_reason: Mutex<String>,
    pub(crate) shutdown: CancellationToken,
    /// The service instances this handle hosts, for `basidia status`.
    pub(crate) instances: Mutex<Vec<basidia_core::InstanceInfo>>,
    /// Whether the status responder runs.
    pub(crate) responding: AtomicBool,
}

/// A connection to RabbitMQ (or any AMQP 0-9-1 broker). Cloning shares it.
#[derive(Clone)]
pub struct AmqpBroker {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("options", &self.inner.options)
            .field("reply_queue", &self.inner.reply_queue)
            .finish_non_exhaustive()
    }
}

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
            calls_started: Arc::new(tokio::sync::Notify::new()),
            consumers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            next_node: std::sync::atomic::AtomicUsize::new(0),
            blocked: AtomicBool::new(false),
            blocked_reason: Mutex::new(String::new()),
            shutdown: CancellationToken::new(),
            instances: Mutex::new(Vec::new()),
            responding: AtomicBool::new(false),
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

    /// The connection in use; an error while there is none, or once the handle is closed.
    pub(crate) fn live(&self) -> Result<Arc<Live>, BrokerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        self.inner
            .state
            .borrow()
            .clone()
            .ok_or_else(|| lost_msg("not connected to the broker; reconnecting"))
    }
}

impl Inner {
    /// How long a publish of `message` may wait: until its deadline, and never longer than
    /// the publish timeout.
    pub(crate) fn publish_limit(&self, message: &Message) -> Duration {
        let limit = self.options.publish_timeout;
        message.deadline.map_or(limit, |at| {
            at.saturating_duration_since(tokio::time::Instant::now())
                .min(limit)
        })
    }

    /// `work` (a publish or a declaration), given up after `limit` with a clear error.
    pub(crate) async fn bounded<T>(
        &self,
        limit: Duration,
        work: impl std::future::Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(self.publish_timed_out(limit)))
    }

    /// The error for a publish that waited `after` in vain.
    pub(crate) fn publish_timed_out(&self, after: Duration) -> BrokerError {
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
    pub(crate) async fn publish_confirmed(
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
            return Err(backend_msg(format!(
                "the broker refused the message to {exchange:?}"
            )));
        }
        Ok(())
    }
}

/// Connects to the first of the URL's nodes that answers, and declares what every connection
/// needs: the RPC, delay, retry and dead-letter exchanges, the dead-letter queue and the reply
/// queue.
async fn connect_live(inner: &Arc<Inner>, generation: u64) -> Result<Arc<Live>, BrokerError> {
    let opts = &inner.options;
    let props = ConnectionProperties::default().with_connection_name(LongString::from(format!(
        "basidia-{}",
        &inner.reply_key[..8]
    )));
    debug_assert_eq!(inner.reply_key.len(), 36);
    let tls = opts.tls_config()?;
    let runtime = lapin::runtime::default_runtime().map_err(backend)?;
    // The frame size is the server's: RabbitMQ sends a message's content header as one frame,
    // so a client that asks for smaller frames than its peers use cannot take their messages.
    //
    // A URL may name several nodes of a cluster, `amqp://a/%2f,amqp://b/%2f`: they are tried in
    // turn, starting after the one last connected to, on connecting and on every reconnection.
    let urls = opts.nodes()?;
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
        return Err(lost_msg(format!(
            "cannot connect to {}",
            failures.join("; ")
        )));
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

/// Adds the queue type `options` asks for to the arguments of a durable queue Basidia owns.
pub(crate) fn owned_queue_args(options: &AmqpOptions, mut args: FieldTable) -> FieldTable {
    if options.quorum_queues {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
    }
    args
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
pub(crate) async fn declare_exchange(channel: &Channel, name: &str) -> Result<(), BrokerError> {
    declare_exchange_of(channel, name, ExchangeKind::Topic).await
}

/// Declares a durable exchange of `kind`.
pub(crate) async fn declare_exchange_of(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            name.into(),
            kind,
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
                        let text = e.to_string();
                        if text.contains("delivery acknowledgement") {
                            // RabbitMQ's consumer_timeout: the delivery goes back to the queue
                            // while its handler may still be running.
                            tracing::warn!("the broker closed a channel: {text}; a handler held its delivery past RabbitMQ's consumer_timeout, so the broker hands it out again and it may run twice: set consumer_timeout above the longest handler timeout");
                        } else {
                            tracing::warn!("the broker closed a channel: {text}");
                        }
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
        basidia_core::metrics::registry().note_reconnect("amqp");
        tracing::info!("AMQP connection re-established");
    }
}
