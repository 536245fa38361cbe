//! Discovery for `basidia status`: RabbitMQ keeps no registry of the processes behind its
//! consumers, so every handle that hosts services answers a ping on the fanout exchange
//! `basidia.status` with its instances, and `instances()` collects the answers.
//!
//! - A hosting handle binds an exclusive, server-named queue to `basidia.status` and consumes
//!   it; it is declared again after every reconnection, and goes with its connection, so a
//!   stopped or crashed process answers no more pings.
//! - A ping is an empty message with `reply_to` naming the asker's own exclusive queue; the
//!   answer is a JSON array of [`InstanceInfo`], published to the default exchange with that
//!   queue as routing key and the ping's correlation id.
//! - The asker collects answers until they pause (300 ms for the first, 100 ms after the last),
//!   for a second at most.

use std::sync::{Arc, Weak};
use std::time::Duration;

use basidia_core::internal::{backend, lock, lost};
use basidia_core::{BrokerError, InstanceInfo};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};

use crate::connect::{declare_exchange_of, AmqpBroker, Inner};

/// The fanout exchange pings go to.
pub const STATUS_EXCHANGE: &str = "basidia.status";

/// The largest answer taken from one process; a bigger one (or one that does not decode) is
/// left out.
const MAX_ANSWER: usize = 1024 * 1024;

async fn declare_status_exchange(channel: &lapin::Channel) -> Result<(), BrokerError> {
    declare_exchange_of(channel, STATUS_EXCHANGE, ExchangeKind::Fanout).await
}

/// An exclusive, server-named queue on `channel`, consumed without acks: its name and consumer.
async fn private_queue(channel: &lapin::Channel) -> Result<(String, lapin::Consumer), BrokerError> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(backend)?;
    let name = queue.name().as_str().to_string();
    let consumer = channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(backend)?;
    Ok((name, consumer))
}

impl AmqpBroker {
    /// Keeps `instance` for status answers, starting the responder with the first one.
    pub(crate) fn announce_instance(&self, instance: &InstanceInfo) {
        let first = {
            let mut all = lock(&self.inner.instances);
            all.retain(|i| i.id != instance.id);
            all.push(instance.clone());
            !self
                .inner
                .responding
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        };
        if first {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(respond(Arc::downgrade(&self.inner)));
            }
        }
    }

    /// Forgets the instance with `id`.
    pub(crate) fn withdraw_instance(&self, id: &str) {
        lock(&self.inner.instances).retain(|i| i.id != id);
    }

    /// Pings every hosting process and gathers their instances.
    pub(crate) async fn discover_instances(&self) -> Result<Vec<InstanceInfo>, BrokerError> {
        let live = self.live()?;
        let channel = live.connection.create_channel().await.map_err(lost)?;
        let gathered = async {
            declare_status_exchange(&channel).await?;
            let (queue, mut answers) = private_queue(&channel).await?;
            let correlation_id = uuid::Uuid::new_v4().to_string();
            channel
                .basic_publish(
                    STATUS_EXCHANGE.into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    b"",
                    BasicProperties::default()
                        .with_reply_to(queue.as_str().into())
                        .with_correlation_id(correlation_id.as_str().into()),
                )
                .await
                .map_err(backend)?;
            let mut all = Vec::new();
            let give_up = tokio::time::Instant::now() + Duration::from_secs(1);
            let mut quiet = Duration::from_millis(300);
            loop {
                let wait =
                    quiet.min(give_up.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(wait, answers.next()).await {
                    Ok(Some(Ok(d))) => {
                        let ours = d.properties.correlation_id().as_ref().map(|c| c.as_str())
                            == Some(correlation_id.as_str());
                        if ours && d.data.len() <= MAX_ANSWER {
                            if let Ok(list) = serde_json::from_slice::<Vec<InstanceInfo>>(&d.data) {
                                all.extend(list);
                            }
                        }
                        quiet = Duration::from_millis(100);
                    }
                    Ok(Some(Err(_)) | None) | Err(_) => break,
                }
            }
            Ok::<_, BrokerError>(all)
        };
        let result = self.inner.bounded(Duration::from_secs(5), gathered).await;
        let _ = channel.close(200, "status gathered".into()).await;
        let mut all = result?;
        basidia_core::InstanceInfo::sort(&mut all);
        Ok(all)
    }
}

/// Answers pings for as long as the handle lives, on every connection it gets.
async fn respond(inner: Weak<Inner>) {
    let mut state = match inner.upgrade() {
        Some(i) => i.state.subscribe(),
        None => return,
    };
    loop {
        let (live, shutdown) = {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let live = state.borrow_and_update().clone();
            (live, strong.shutdown.clone())
        };
        if let Some(live) = live {
            if let Err(e) = answer_pings(&inner, &live.connection, &shutdown).await {
                tracing::debug!("status responder stopped: {e}");
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        // A new connection, or a pause before trying this one again.
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn answer_pings(
    inner: &Weak<Inner>,
    connection: &lapin::Connection,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), BrokerError> {
    let channel = connection.create_channel().await.map_err(lost)?;
    declare_status_exchange(&channel).await?;
    let (queue, mut pings) = private_queue(&channel).await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            STATUS_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(backend)?;
    loop {
        let ping = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            p = pings.next() => match p {
                Some(Ok(p)) => p,
                Some(Err(e)) => return Err(backend(e)),
                None => return Ok(()),
            },
        };
        let Some(reply_to) = ping.properties.reply_to().clone() else {
            continue;
        };
        let Some(strong) = inner.upgrade() else {
            return Ok(());
        };
        let body = serde_json::to_vec(&*lock(&strong.instances)).unwrap_or_default();
        let mut props = BasicProperties::default().with_content_type("application/json".into());
        if let Some(c) = ping.properties.correlation_id().clone() {
            props = props.with_correlation_id(c);
        }
        let publish = channel.basic_publish(
            "".into(),
            reply_to.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            props,
        );
        // A status answer waits for nobody: under an alarm it is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(2), publish).await;
    }
}
