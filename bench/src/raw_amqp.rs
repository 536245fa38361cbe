//! The raw-lapin baseline: an echo server and a client with one reply queue and a map of
//! pending correlation ids, the same request/reply pattern without any framework.
//!
//! Two topologies: `Topology::Direct` publishes straight to queues through the default exchange
//! (the simplest raw client), `Topology::Nameko` routes requests and replies through a topic
//! exchange by routing keys, as the Nameko protocol (and so Basidia) must.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::ExchangeKind;

/// How requests and replies are routed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Topology {
    /// The default exchange, straight to queues.
    Direct,
    /// A topic exchange and routing keys, as in the Nameko protocol.
    Nameko,
}

const EXCHANGE: &str = "basidia-bench-raw";

async fn declare_exchange(channel: &Channel) -> anyhow::Result<()> {
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

async fn bind(channel: &Channel, queue: &str, key: &str) -> anyhow::Result<()> {
    declare_exchange(channel).await?;
    channel
        .queue_bind(
            queue.into(),
            EXCHANGE.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

fn exchange_of(topology: Topology) -> &'static str {
    match topology {
        Topology::Direct => "",
        Topology::Nameko => EXCHANGE,
    }
}
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::oneshot;

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// A raw echo server on its own connection.
pub struct RawServer {
    _conn: Connection,
    pub queue: String,
}

impl RawServer {
    pub async fn start(url: &str, topology: Topology) -> anyhow::Result<RawServer> {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel.basic_qos(64, BasicQosOptions::default()).await?;
        let queue = format!("bench-raw-echo-{}", uuid::Uuid::new_v4().simple());
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        if topology == Topology::Nameko {
            bind(&channel, &queue, &format!("{queue}.*")).await?;
        }
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let ch = channel.clone();
        let exchange = exchange_of(topology);
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let ch = ch.clone();
                tokio::spawn(async move {
                    let (Some(reply_to), Some(id)) = (
                        d.properties.reply_to().clone(),
                        d.properties.correlation_id().clone(),
                    ) else {
                        return;
                    };
                    let props = BasicProperties::default()
                        .with_correlation_id(id)
                        .with_content_type("application/x-msgpack".into());
                    if let Ok(c) = ch
                        .basic_publish(
                            exchange.into(),
                            reply_to,
                            BasicPublishOptions::default(),
                            &d.data,
                            props,
                        )
                        .await
                    {
                        drop(c);
                    }
                    let _ = d.ack(BasicAckOptions::default()).await;
                });
            }
        });
        Ok(RawServer { _conn: conn, queue })
    }
}

/// A raw client: one connection, one channel, one reply queue.
#[derive(Clone)]
pub struct RawClient {
    channel: Channel,
    reply_to: String,
    exchange: &'static str,
    pending: Pending,
    target: String,
    _conn: Arc<Connection>,
}

impl RawClient {
    pub async fn connect(
        url: &str,
        server: &RawServer,
        topology: Topology,
    ) -> anyhow::Result<RawClient> {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        let q = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let reply_queue = q.name().as_str().to_string();
        let reply_to = match topology {
            Topology::Direct => reply_queue.clone(),
            Topology::Nameko => {
                let key = uuid::Uuid::new_v4().to_string();
                bind(&channel, &reply_queue, &key).await?;
                key
            }
        };
        let target = match topology {
            Topology::Direct => server.queue.clone(),
            Topology::Nameko => format!("{}.echo", server.queue),
        };
        let replies = conn.create_channel().await?;
        let mut consumer = replies
            .basic_consume(
                reply_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let pending: Pending = Arc::default();
        let p = pending.clone();
        tokio::spawn(async move {
            let _keep = replies;
            while let Some(Ok(d)) = consumer.next().await {
                if let Some(id) = d.properties.correlation_id() {
                    if let Some(tx) = p.lock().unwrap().remove(id.as_str()) {
                        let _ = tx.send(d.data);
                    }
                }
            }
        });
        Ok(RawClient {
            channel,
            reply_to,
            exchange: exchange_of(topology),
            pending,
            target,
            _conn: Arc::new(conn),
        })
    }

    pub async fn echo(&self, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.clone(), tx);
        let props = BasicProperties::default()
            .with_correlation_id(id.as_str().into())
            .with_reply_to(self.reply_to.as_str().into())
            .with_content_type("application/x-msgpack".into());
        self.channel
            .basic_publish(
                self.exchange.into(),
                self.target.as_str().into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?;
        Ok(tokio::time::timeout(std::time::Duration::from_secs(30), rx).await??)
    }
}
