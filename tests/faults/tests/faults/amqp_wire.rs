//! What arrives on a service's RabbitMQ queue from arbitrary peers: malformed messages never
//! crash or stall the consumer; an error reply goes back where a reply is possible, otherwise
//! the message is dead-lettered. Also priorities. Needs `BASIDIA_TEST_AMQP_URL`.

use std::time::Duration;

use basidia::prelude::*;
use basidia::{ErrorKind, RunnerConfig, ServiceOverrides};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

pub fn url() -> Option<String> {
    basidia_conformance::broker_url_from_env("BASIDIA_TEST_AMQP_URL")
}

#[service]
struct Probe;

#[service(name = "t_probe")]
impl Probe {
    #[rpc]
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[rpc]
    async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

#[service]
struct Prio;

#[service(name = "t_prio")]
impl Prio {
    #[rpc]
    async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

/// A raw AMQP peer with its own reply queue bound to `nameko-rpc`.
pub struct RawPeer {
    /// Its channel, for publishing what it likes.
    pub channel: Channel,
    reply_key: String,
    replies: lapin::Consumer,
    _conn: Connection,
}

impl RawPeer {
    /// Connects, with a reply queue of its own.
    pub async fn new(url: &str) -> RawPeer {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
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
            .await
            .unwrap();
        let reply_key = uuid::Uuid::new_v4().to_string();
        channel
            .queue_bind(
                q.name().clone(),
                "nameko-rpc".into(),
                reply_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let replies = channel
            .basic_consume(
                q.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        RawPeer {
            channel,
            reply_key,
            replies,
            _conn: conn,
        }
    }

    /// Publishes to `nameko-rpc` and waits for the confirm-less publish to be written.
    pub async fn publish(&self, routing_key: &str, body: &[u8], props: BasicProperties) {
        self.channel
            .basic_publish(
                "nameko-rpc".into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Request properties: reply-to its queue, the correlation id and content type given.
    pub fn props(&self, content_type: Option<&str>, correlation_id: &str) -> BasicProperties {
        let mut p = BasicProperties::default()
            .with_reply_to(self.reply_key.as_str().into())
            .with_correlation_id(correlation_id.into());
        if let Some(ct) = content_type {
            p = p.with_content_type(ct.into());
        }
        p
    }

    /// The next reply, within 10 s: content type and body as JSON.
    pub async fn reply(&mut self) -> (Option<String>, serde_json::Value) {
        let d = tokio::time::timeout(Duration::from_secs(10), self.replies.next())
            .await
            .expect("a reply within 10 s")
            .unwrap()
            .unwrap();
        let ct = d
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_string());
        let format = ct
            .as_deref()
            .and_then(basidia::Format::from_content_type)
            .expect("a known reply format");
        let value: basidia::Value = format.decode(&d.data).unwrap();
        (ct, basidia_serializers::value_to_json(&value))
    }
}

/// A private queue that receives copies of the dead letters whose routing key matches `pattern`
/// (dead letters are published to `basidia.dead-letter` with key `<queue>.<routing key>`).
async fn dead_letter_tap(channel: &Channel, pattern: &str) -> String {
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
        .await
        .unwrap();
    channel
        .queue_bind(
            q.name().clone(),
            "basidia.dead-letter".into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    q.name().as_str().to_string()
}

/// Waits for a message with this body on the tap; returns its headers.
async fn await_dead_letter(channel: &Channel, tap: &str, body: &[u8]) -> FieldTable {
    for _ in 0..200 {
        match channel
            .basic_get(tap.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(d) => {
                d.ack(BasicAckOptions::default()).await.unwrap();
                if d.data == body {
                    return d.properties.headers().clone().unwrap_or_default();
                }
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("no dead letter arrived on {tap}");
}

/// Starts `S` alone on the AMQP broker at `url`.
pub async fn start<S: Service + basidia::NamedService + basidia::Inject>(
    url: &str,
    max_priority: Option<u8>,
    max_workers: usize,
) -> basidia::RunningServices {
    let mut config = RunnerConfig::default();
    config.services.insert(
        S::NAME.into(),
        ServiceOverrides {
            max_priority,
            max_workers: Some(max_workers),
            ..ServiceOverrides::default()
        },
    );
    let mut runner = Runner::new(basidia::connect(url).await.unwrap()).with_config(config);
    runner.add::<S>();
    runner.start().await.unwrap()
}

#[tokio::test]
async fn malformed_messages_get_error_replies_or_are_dead_lettered() {
    let Some(url) = url() else { return };
    let _serial = crate::child::serial().await;
    let running = start::<Probe>(&url, None, 4).await;
    let mut peer = RawPeer::new(&url).await;
    let ok = br#"{"args": [1, 2], "kwargs": {}}"#;

    // Neither msgpack nor JSON, under a content type Basidia does not speak.
    peer.publish("t_probe.add", b"a=1", peer.props(Some("text/plain"), "c1"))
        .await;
    let (ct, v) = peer.reply().await;
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(v["error"]["exc_type"], "MalformedRequest", "{v}");
    // No content type at all.
    peer.publish("t_probe.add", ok, peer.props(None, "c2"))
        .await;
    assert_eq!(
        peer.reply().await.1["error"]["exc_type"],
        "MalformedRequest"
    );
    // Claims msgpack, is garbage.
    peer.publish(
        "t_probe.add",
        b"\xc1\xc1",
        peer.props(Some("application/x-msgpack"), "c3"),
    )
    .await;
    let (ct, v) = peer.reply().await;
    assert_eq!(ct.as_deref(), Some("application/x-msgpack"));
    assert_eq!(v["error"]["exc_type"], "MalformedRequest");
    // Missing kwargs.
    peer.publish(
        "t_probe.add",
        br#"{"args": [1, 2]}"#,
        peer.props(Some("application/json"), "c4"),
    )
    .await;
    assert_eq!(
        peer.reply().await.1["error"]["exc_type"],
        "MalformedRequest"
    );
    // Unknown method.
    peer.publish(
        "t_probe.sub",
        ok,
        peer.props(Some("application/json"), "c5"),
    )
    .await;
    assert_eq!(peer.reply().await.1["error"]["exc_type"], "MethodNotFound");
    // No reply_to: dropped unrun (counted in a rate-limited log line), not stored.
    let tap = dead_letter_tap(&peer.channel, "rpc-t_probe.#").await;
    for _ in 0..20 {
        peer.publish(
            "t_probe.add",
            ok,
            BasicProperties::default().with_content_type("application/json".into()),
        )
        .await;
    }
    // Through all of that the consumer kept serving.
    peer.publish(
        "t_probe.add",
        ok,
        peer.props(Some("application/json"), "c6"),
    )
    .await;
    let (_, v) = peer.reply().await;
    assert_eq!(v["result"], 3);
    // Served in order: the requests without reply_to were settled before it, none was kept.
    let kept = peer
        .channel
        .basic_get(tap.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap();
    assert!(
        kept.is_none(),
        "a request without reply_to was dead-lettered"
    );
    running.stop().await;
}

#[tokio::test]
async fn priorities_order_waiting_requests() {
    let Some(url) = url() else { return };
    let _serial = crate::child::serial().await;
    // A queue declared with priorities keeps its arguments: start from a fresh queue.
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let _ = ch
        .queue_delete("rpc-t_prio".into(), QueueDeleteOptions::default())
        .await;
    let running = start::<Prio>(&url, Some(10), 1).await;
    let proxy = basidia::RpcProxy::new(basidia::connect(&url).await.unwrap());
    let client = PrioClient::connect(&proxy);
    // Occupy the single worker, then queue requests of rising priority.
    let busy = {
        let c = client.clone();
        tokio::spawn(async move { c.slow(800).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut calls = Vec::new();
    for p in [1u8, 5, 9] {
        let c = client.with_priority(p);
        let order = order.clone();
        calls.push(tokio::spawn(async move {
            c.slow(10).await.unwrap();
            order.lock().unwrap().push(p);
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    busy.await.unwrap().unwrap();
    for c in calls {
        c.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![9, 5, 1]);
    running.stop().await;
    ch.queue_delete("rpc-t_prio".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let err = client.slow(1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownService);
}

#[service]
struct Doomed;

#[service(name = "t_doomed")]
impl Doomed {
    #[event_handler("t_doomed_src", "boom")]
    async fn on_boom(&self, marker: String) -> Result<(), String> {
        Err(format!("cannot handle {marker}"))
    }
}

/// The arguments RabbitMQ holds for the dead-letter queue, as `rabbitmqctl` prints them.
fn dead_letter_queue_arguments() -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "arguments"])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("basidia.dead-letters\t"))
        .unwrap_or_default()
        .to_string()
}

/// Dead letters are kept within limits, and without the secrets of their context.
#[tokio::test]
async fn a_failing_event_handler_is_retried_then_dead_lettered() {
    let Some(url) = url() else { return };
    let _serial = crate::child::serial().await;
    if !dead_letter_queue_arguments().contains("x-max-length") {
        // Declared before it had limits: let the service declare it again, as documented.
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "delete_queue", "basidia.dead-letters"])
            .output();
    }
    let mut config = RunnerConfig::default();
    config.defaults.event_max_deliveries = 3;
    config.defaults.event_retry_delay = Duration::from_millis(10);
    let mut runner = Runner::new(basidia::connect(&url).await.unwrap()).with_config(config);
    runner.add::<Doomed>();
    let running = runner.start().await.unwrap();
    let peer = RawPeer::new(&url).await;
    let tap = dead_letter_tap(&peer.channel, "evt-t_doomed_src-boom--t_doomed.on_boom.#").await;
    let marker = format!("boom-{}", uuid::Uuid::new_v4());
    let dispatcher = basidia::EventDispatcher::new(
        basidia::connect(&url).await.unwrap(),
        "t_doomed_src",
        basidia::Format::Json,
    );
    let ctx = std::sync::Arc::new(
        basidia::Context::new()
            .with("auth_token", "eyJ-a-real-looking-token")
            .with("user_id", "42"),
    );
    basidia::Context::scope(ctx, dispatcher.dispatch("boom", &marker))
        .await
        .unwrap();
    let expected_body = serde_json::to_vec(&marker).unwrap();
    let headers = await_dead_letter(&peer.channel, &tap, &expected_body).await;
    let text = |k: &str| match headers.inner().get(k) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("{k}: {other:?}"),
    };
    assert!(
        text("x-basidia-reason").contains("failed 3 times"),
        "{}",
        text("x-basidia-reason")
    );
    assert_eq!(
        text("x-basidia-queue"),
        "evt-t_doomed_src-boom--t_doomed.on_boom"
    );
    assert_eq!(text("x-basidia-routing-key"), "boom");
    assert_eq!(
        headers.inner().get("x-basidia-delivery-count"),
        Some(&AMQPValue::LongLongInt(3))
    );
    assert_eq!(text("nameko.auth_token"), "***", "the token is not kept");
    assert_eq!(text("nameko.user_id"), "42", "the rest of the context is");
    let arguments = dead_letter_queue_arguments();
    assert!(
        arguments.contains("x-max-length") && arguments.contains("x-max-length-bytes"),
        "the dead-letter queue has limits: {arguments}"
    );
    running.stop().await;
}
