//! Headers from the wire, as a hostile or merely unusual peer sends them.
//!
//! - Header blocks over 16 KiB (a 3,000-entry call-id stack, a thousand context headers, one
//!   20 KB token) are taken and answered: the client takes frames as large as RabbitMQ's own
//!   (before, lapin refused the frame, the connection dropped and the message came back about
//!   25 times a second).
//! - Basidia's own bookkeeping headers from a peer change nothing: `x-basidia-routing-key` does
//!   not pick the method, and `x-basidia-delivery-count` at its extremes neither panics nor
//!   stops the consumer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use basidia::prelude::*;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::amqp_wire::{start, url, RawPeer};

static GOODBYES: AtomicUsize = AtomicUsize::new(0);
static EVENTS: AtomicUsize = AtomicUsize::new(0);

/// A service with a method no forged header may select.
#[service]
pub struct Forged;

#[service(name = "t_forged")]
impl Forged {
    #[rpc]
    async fn hello(&self) -> String {
        "hello".into()
    }

    #[rpc]
    async fn goodbye(&self) -> String {
        GOODBYES.fetch_add(1, Ordering::SeqCst);
        "goodbye".into()
    }

    #[event_handler("t_forged_src", "ping")]
    async fn on_ping(&self, _n: u32) {
        EVENTS.fetch_add(1, Ordering::SeqCst);
    }
}

const EMPTY_REQUEST: &[u8] = br#"{"args": [], "kwargs": {}}"#;

fn with_headers(props: BasicProperties, headers: Vec<(String, AMQPValue)>) -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert(ShortString::from(k), v);
    }
    props.with_headers(table)
}

fn text(s: impl Into<String>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.into()))
}

/// Sends `hello` with `headers` and expects its answer.
async fn hello_answers(peer: &mut RawPeer, label: &str, headers: Vec<(String, AMQPValue)>) {
    let props = with_headers(peer.props(Some("application/json"), label), headers);
    peer.publish("t_forged.hello", EMPTY_REQUEST, props).await;
    let (_, reply) = peer.reply().await;
    assert_eq!(reply["result"], "hello", "{label}: {reply}");
}

async fn publish_event(peer: &RawPeer, exchange: &str, key: &str, count: AMQPValue) {
    let props = with_headers(
        BasicProperties::default().with_content_type("application/json".into()),
        vec![("x-basidia-delivery-count".into(), count)],
    );
    peer.channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"7",
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn events_reach(n: usize) {
    for _ in 0..200 {
        if EVENTS.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the handler ran {} times, expected {n}",
        EVENTS.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn large_header_blocks_are_taken() {
    let Some(url) = url() else { return };
    let _serial = crate::child::serial().await;
    let running = start::<Forged>(&url, None, 4).await;
    let mut peer = RawPeer::new(&url).await;

    let stack: Vec<AMQPValue> = (0..3000).map(|i| text(format!("s.m.{i:06}"))).collect();
    hello_answers(
        &mut peer,
        "a 30 KB call-id stack",
        vec![(
            "nameko.call_id_stack".into(),
            AMQPValue::FieldArray(FieldArray::from(stack)),
        )],
    )
    .await;
    let many = (0..1000)
        .map(|i| (format!("nameko.key{i}"), text(format!("value {i}"))))
        .collect();
    hello_answers(&mut peer, "a thousand context headers", many).await;
    hello_answers(
        &mut peer,
        "a 20 KB token",
        vec![("nameko.auth_token".into(), text("t".repeat(20 * 1024)))],
    )
    .await;
    // And the service is still there for everyone else.
    let answer: String = running
        .rpc_proxy()
        .call(
            "t_forged",
            "hello",
            &crate::child::NO_ARGS,
            &crate::child::NO_KWARGS,
        )
        .await
        .expect("the service still answers");
    assert_eq!(answer, "hello");
    running.stop().await;
}

#[tokio::test]
async fn forged_bookkeeping_headers_change_nothing() {
    let Some(url) = url() else { return };
    let _serial = crate::child::serial().await;
    let running = start::<Forged>(&url, None, 4).await;
    let mut peer = RawPeer::new(&url).await;

    hello_answers(
        &mut peer,
        "a forged routing key",
        vec![("x-basidia-routing-key".into(), text("t_forged.goodbye"))],
    )
    .await;
    assert_eq!(GOODBYES.load(Ordering::SeqCst), 0, "the routed method runs");

    let extremes = [
        AMQPValue::LongUInt(u32::MAX),
        AMQPValue::LongLongInt(4_294_967_295),
        AMQPValue::LongLongInt(i64::MAX),
        AMQPValue::LongLongInt(i64::MIN),
        AMQPValue::LongLongInt(-1),
        text("4294967295"),
        text("many"),
    ];
    for (i, count) in extremes.iter().enumerate() {
        hello_answers(
            &mut peer,
            &format!("delivery count {count:?}"),
            vec![("x-basidia-delivery-count".into(), count.clone())],
        )
        .await;
        let deadline = match i {
            0 => AMQPValue::LongLongInt(i64::MAX),
            1 => AMQPValue::LongLongInt(i64::MIN),
            2 => AMQPValue::LongUInt(u32::MAX),
            3 => text("tomorrow"),
            _ => AMQPValue::Double(f64::MAX),
        };
        let props = with_headers(
            peer.props(Some("application/json"), "deadline"),
            vec![("nameko.deadline".into(), deadline.clone())],
        );
        peer.publish("t_forged.hello", EMPTY_REQUEST, props).await;
        let (_, reply) = peer.reply().await;
        assert!(
            reply["result"] == "hello" || reply["error"]["exc_type"] == "Timeout",
            "deadline {deadline:?}: {reply}"
        );
    }

    // Events: through the source's exchange a forged count is not believed; straight to the
    // queue it saturates. Either way the consumer goes on.
    let before = EVENTS.load(Ordering::SeqCst);
    let queue = "evt-t_forged_src-ping--t_forged.on_ping";
    for count in extremes {
        publish_event(&peer, "t_forged_src.events", "ping", count.clone()).await;
        publish_event(&peer, "", queue, count).await;
    }
    events_reach(before + 7).await;
    publish_event(
        &peer,
        "t_forged_src.events",
        "ping",
        AMQPValue::LongLongInt(0),
    )
    .await;
    events_reach(before + 8).await;
    running.stop().await;
}

/// Every AMQP field type RabbitMQ passes on, at its extremes, where Basidia reads headers: in context headers, in
/// the call-id stack, as Basidia's own bookkeeping headers, nested, and as text that is not
/// UTF-8. Each request is answered and each event handled once; nothing drops the connection.
/// (RabbitMQ itself closes a publisher's connection for a NaN or an infinite float in a header,
/// and reads the short-string type `s` as a short integer, so no peer can send those.)
#[tokio::test]
async fn every_field_type_is_taken() {
    let Some(url) = url() else { return };
    let _serial = crate::child::serial().await;
    let running = start::<Forged>(&url, None, 4).await;
    let mut peer = RawPeer::new(&url).await;

    let mut nested = FieldTable::default();
    nested.insert("deeper".into(), AMQPValue::Double(f64::MAX));
    let values = || -> Vec<(&'static str, AMQPValue)> {
        vec![
            ("bool", AMQPValue::Boolean(true)),
            ("i8", AMQPValue::ShortShortInt(i8::MIN)),
            ("u8", AMQPValue::ShortShortUInt(u8::MAX)),
            ("i16", AMQPValue::ShortInt(i16::MIN)),
            ("u16", AMQPValue::ShortUInt(u16::MAX)),
            ("i32", AMQPValue::LongInt(i32::MIN)),
            ("u32", AMQPValue::LongUInt(u32::MAX)),
            ("i64", AMQPValue::LongLongInt(i64::MIN)),
            ("f32", AMQPValue::Float(-1.5e38)),
            ("f64", AMQPValue::Double(f64::MIN)),
            (
                "decimal",
                AMQPValue::DecimalValue(lapin::types::DecimalValue {
                    scale: u8::MAX,
                    value: u32::MAX,
                }),
            ),
            (
                "not utf-8",
                AMQPValue::LongString(LongString::from(vec![0xff, 0xfe, 0x00, 0xc3])),
            ),
            ("timestamp", AMQPValue::Timestamp(u64::MAX)),
            ("bytes", AMQPValue::ByteArray(vec![0u8, 0xff, 0x80].into())),
            ("void", AMQPValue::Void),
            ("table", AMQPValue::FieldTable(nested.clone())),
            (
                "array",
                AMQPValue::FieldArray(FieldArray::from(vec![
                    AMQPValue::Void,
                    AMQPValue::LongLongInt(i64::MAX),
                    AMQPValue::FieldTable(nested.clone()),
                ])),
            ),
        ]
    };
    for (kind, value) in values() {
        for key in [
            format!("nameko.{kind}"),
            "nameko.call_id_stack".to_string(),
            "nameko.auth_token".to_string(),
            "x-basidia-delivery-count".to_string(),
            "x-basidia-deadline".to_string(),
            "x-death".to_string(),
        ] {
            hello_answers(
                &mut peer,
                &format!("{key} as {kind}"),
                vec![(key.clone(), value.clone())],
            )
            .await;
        }
    }
    // Events carrying the same headers are each handled once.
    let before = EVENTS.load(Ordering::SeqCst);
    let mut sent = 0;
    for (_, value) in values() {
        publish_event(&peer, "t_forged_src.events", "ping", value).await;
        sent += 1;
    }
    events_reach(before + sent).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(EVENTS.load(Ordering::SeqCst), before + sent);
    assert_eq!(GOODBYES.load(Ordering::SeqCst), 0);
    running.stop().await;
}
