//! The channels of one connection that are not a service's consumer: the two every publisher
//! shares (publisher confirms; RPC requests and replies) and the reply queue's consumer.
//!
//! The broker closes a single channel for faults that concern only it (a publish to an exchange
//! that is gone, a message over its size limit, a consumer past `consumer_timeout`) and cancels a
//! consumer whose queue an operator deleted. Neither is a lost connection: the channel is
//! replaced, or the queue declared and consumed again, on the same connection.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use basidia_core::BrokerError;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use tokio::sync::Notify;

use crate::connect::{bind_queue, Inner, Live};
use crate::wire;
use basidia_core::internal::{backend, lock, lost};

/// How long an idle reply queue lives (Nameko's value).
const REPLY_QUEUE_EXPIRES_MS: i64 = 300_000;

/// The shared publishing channels of a connection.
pub(crate) struct Shared {
    /// Confirm mode: events, retries and dead letters, each awaited.
    publish: Mutex<Channel>,
    /// No confirms: RPC requests (mandatory) and replies, the hot path.
    rpc: Mutex<Channel>,
}

impl Shared {
    pub(crate) fn new(publish: Channel, rpc: Channel) -> Self {
        Shared {
            publish: Mutex::new(publish),
            rpc: Mutex::new(rpc),
        }
    }

    /// The confirm channel.
    pub(crate) fn publish(&self) -> Channel {
        lock(&self.publish).clone()
    }

    /// The RPC channel.
    pub(crate) fn rpc(&self) -> Channel {
        lock(&self.rpc).clone()
    }

    /// Replaces whichever of the two the broker has closed.
    pub(crate) async fn repair(&self, inner: &Arc<Inner>, connection: &Connection) {
        if !self.publish().status().connected() {
            match open_publish(connection).await {
                Ok(c) => {
                    *lock(&self.publish) = c;
                    tracing::info!("publishing channel reopened");
                }
                Err(e) => tracing::warn!("cannot reopen the publishing channel: {e}"),
            }
        }
        if !self.rpc().status().connected() {
            match open_rpc(inner, connection).await {
                Ok(c) => {
                    *lock(&self.rpc) = c;
                    tracing::info!("RPC channel reopened");
                }
                Err(e) => tracing::warn!("cannot reopen the RPC channel: {e}"),
            }
        }
    }
}

/// A channel in confirm mode.
pub(crate) async fn open_publish(connection: &Connection) -> Result<Channel, BrokerError> {
    let channel = connection.create_channel().await.map_err(lost)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(lost)?;
    Ok(channel)
}

/// A channel for requests and replies, with the task that fails calls the broker returns.
pub(crate) async fn open_rpc(
    inner: &Arc<Inner>,
    connection: &Connection,
) -> Result<Channel, BrokerError> {
    let channel = connection.create_channel().await.map_err(lost)?;
    tokio::spawn(route_returns(
        Arc::downgrade(inner),
        channel.clone(),
        Arc::clone(&inner.calls_started),
    ));
    Ok(channel)
}

/// Declares the process's reply queue (Nameko's shape: bound to the RPC exchange by the reply
/// key, expiring when unused) and consumes it.
pub(crate) async fn open_replies(
    inner: &Inner,
    connection: &Connection,
) -> Result<(Channel, lapin::Consumer), BrokerError> {
    let channel = connection.create_channel().await.map_err(lost)?;
    let mut args = FieldTable::default();
    args.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(REPLY_QUEUE_EXPIRES_MS),
    );
    // Transient: a durable classic queue is bound to the node it was declared on, and once
    // that node goes it can be declared on no other, which would leave the caller without
    // replies until the node came back. A transient one goes with its node and is declared
    // again wherever the connection lands. The replies in it would be lost with the node
    // anyway, and the calls waiting for them fail with the connection.
    channel
        .queue_declare(
            inner.reply_queue.as_str().into(),
            QueueDeclareOptions::default(),
            args,
        )
        .await
        .map_err(backend)?;
    bind_queue(
        &channel,
        &inner.reply_queue,
        &inner.options.rpc_exchange,
        &inner.reply_key,
    )
    .await?;
    let consumer = channel
        .basic_consume(
            inner.reply_queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(backend)?;
    Ok((channel, consumer))
}

/// Whether `live` is still the connection in use and up: if not, the supervisor is replacing
/// it, and resumes what it needs itself.
pub(crate) fn still_current(inner: &Inner, live: &Live) -> bool {
    live.connection.status().connected()
        && inner
            .state
            .borrow()
            .as_ref()
            .is_none_or(|current| current.generation == live.generation)
}

/// Runs `open` until it succeeds, backing off between tries, as long as `live` is current and
/// `stopped` does not say otherwise; `None` if it gave up for either reason.
pub(crate) async fn reopen<T, F, Fut>(
    inner: &Weak<Inner>,
    live: &Weak<Live>,
    what: &str,
    stopped: impl Fn() -> bool,
    open: F,
) -> Option<T>
where
    F: Fn(Arc<Inner>, Arc<Live>) -> Fut,
    Fut: std::future::Future<Output = Result<T, BrokerError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let (Some(strong), Some(l)) = (inner.upgrade(), live.upgrade()) else {
            return None;
        };
        if stopped() || !still_current(&strong, &l) {
            return None;
        }
        let max = strong.options.max_reconnect_backoff;
        match open(strong, l).await {
            Ok(t) => {
                tracing::info!("{what} consumed again");
                return Some(t);
            }
            Err(e) => tracing::warn!("cannot consume {what} again yet: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

/// Hands replies to the calls waiting for them. Should the broker cancel the consumer (the
/// reply queue deleted) or close its channel, the queue is declared and consumed again, so
/// that calls do not all time out from then on.
pub(crate) async fn route_replies(
    inner: Weak<Inner>,
    live: Weak<Live>,
    (mut channel, mut consumer): (Channel, lapin::Consumer),
) {
    loop {
        while let Some(item) = consumer.next().await {
            let Ok(d) = item else { break };
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let Some(id) = d
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str().to_string())
            else {
                tracing::warn!("reply without correlation id dropped");
                continue;
            };
            let waiter = lock(&strong.pending).remove(&id);
            match waiter {
                Some(tx) => {
                    let _ = tx.send(Ok(wire::message_of(&d.properties, d.data, false, false)));
                }
                None => {
                    tracing::debug!(correlation_id = %id, "late reply dropped: its caller gave up");
                }
            }
        }
        let closed = !channel.status().connected();
        if let (Some(strong), Some(l)) = (inner.upgrade(), live.upgrade()) {
            if !still_current(&strong, &l) {
                return;
            }
            tracing::warn!(
                queue = %strong.reply_queue,
                channel_closed = closed,
                "the broker stopped the reply consumer (its queue deleted?); declaring it again"
            );
        }
        let what = "the reply queue";
        let Some(next) = reopen(
            &inner,
            &live,
            what,
            || false,
            |strong, l| async move { open_replies(&strong, &l.connection).await },
        )
        .await
        else {
            return;
        };
        let _ = channel.close(200, "replaced".into()).await;
        (channel, consumer) = next;
    }
}

/// Requests are published `mandatory` on a channel without publisher confirms; the broker
/// returns a request nothing is bound for, and this task fails its call with `UnknownService`.
///
/// lapin keeps returned messages until asked for them and tells no one when one arrives (it
/// would, per publish, with confirms on, which would cost every call a broker acknowledgement),
/// so this looks every 5 ms, but only while calls wait for replies: with none in flight nothing
/// can come back, and the task sleeps until a call starts (waking once a second to notice a
/// closed channel or a dropped broker handle).
async fn route_returns(inner: Weak<Inner>, rpc: Channel, calls_started: Arc<Notify>) {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let waiting = match inner.upgrade() {
            Some(inner) => !lock(&inner.pending).is_empty(),
            None => return,
        };
        if !waiting {
            let _ = tokio::time::timeout(Duration::from_secs(1), calls_started.notified()).await;
            if !rpc.status().connected() {
                return;
            }
            continue;
        }
        tick.tick().await;
        if !rpc.status().connected() {
            return;
        }
        let Ok(returned) = rpc.wait_for_confirms().await else {
            return;
        };
        let Some(inner) = inner.upgrade() else { return };
        for r in returned {
            let Some(id) = r.properties.correlation_id().as_ref() else {
                continue;
            };
            let waiter = lock(&inner.pending).remove(id.as_str());
            if let Some(tx) = waiter {
                let service = r
                    .routing_key
                    .as_str()
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(Err(BrokerError::UnknownService(service)));
            }
        }
    }
}
