//! The conformance suite and memory-specific behaviour on the memory broker.

use std::sync::Arc;
use std::time::Duration;

use basidia_conformance::{self as conformance, BrokerFuture};
use basidia_core::{Broker, ConsumeOptions, EventBinding, HandlerType, Message, SharedBroker};
use basidia_memory::MemoryBroker;

fn connector(server: &MemoryBroker) -> impl Fn() -> BrokerFuture + Send + Sync {
    let server = server.clone();
    move || {
        let b: SharedBroker = Arc::new(server.connect());
        Box::pin(async move { b })
    }
}

basidia_conformance::conformance_tests!(Some(connector(&MemoryBroker::new())));

#[tokio::test]
async fn the_whole_suite_runs_on_one_server() {
    let server = MemoryBroker::new();
    conformance::run_all(&connector(&server)).await;
}

fn binding(handler_type: HandlerType) -> EventBinding {
    EventBinding {
        source: "src".into(),
        event_type: "evt".into(),
        service: "svc".into(),
        method: "on_evt".into(),
        handler_type,
        broadcast_id: "b1".into(),
    }
}

#[tokio::test]
async fn dead_letters_are_kept_with_their_reason() {
    let broker = MemoryBroker::new();
    let mut sub = broker
        .subscribe(
            &binding(HandlerType::ServicePool),
            ConsumeOptions::default(),
        )
        .await
        .unwrap();
    broker
        .publish_event(
            "src",
            "evt",
            Message::new(b"1".to_vec(), "application/json"),
        )
        .await
        .unwrap();
    let d = sub.next().await.unwrap();
    d.dead_letter("handler kept failing").await.unwrap();
    let dl = broker.dead_letters();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].queue, "evt-src-evt--svc.on_evt");
    assert_eq!(dl[0].routing_key, "evt");
    assert_eq!(dl[0].reason, "handler kept failing");
    assert_eq!(&dl[0].message.body[..], b"1");
}

#[tokio::test]
async fn queue_names_follow_nameko() {
    let broker = MemoryBroker::new();
    let _a = broker
        .subscribe(
            &binding(HandlerType::ServicePool),
            ConsumeOptions::default(),
        )
        .await
        .unwrap();
    let _b = broker
        .subscribe(&binding(HandlerType::Singleton), ConsumeOptions::default())
        .await
        .unwrap();
    let c = broker
        .subscribe(&binding(HandlerType::Broadcast), ConsumeOptions::default())
        .await
        .unwrap();
    let _r = broker
        .serve("svc", ConsumeOptions::default())
        .await
        .unwrap();
    assert_eq!(
        broker.queue_names(),
        vec![
            "evt-src-evt",
            "evt-src-evt--svc.on_evt",
            "evt-src-evt--svc.on_evt-b1",
            "rpc-svc"
        ]
    );
    drop(c);
    assert!(
        !broker.queue_names().iter().any(|q| q.ends_with("-b1")),
        "broadcast queues are deleted with their consumer"
    );
}

#[tokio::test]
async fn events_without_handlers_are_counted_as_unroutable() {
    let broker = MemoryBroker::new();
    broker
        .publish_event(
            "nobody",
            "listens",
            Message::new(b"1".to_vec(), "application/json"),
        )
        .await
        .unwrap();
    assert_eq!(broker.unroutable_events(), 1);
}

#[tokio::test]
async fn higher_priority_requests_are_delivered_first() {
    let broker = MemoryBroker::new();
    let options = ConsumeOptions {
        prefetch: 1,
        max_priority: Some(10),
        ..ConsumeOptions::default()
    };
    let mut sub = broker.serve("prio", options).await.unwrap();
    // Occupy the consumer so that later requests queue up.
    let client = broker.connect();
    let mut calls = Vec::new();
    for p in [0u8, 1, 9, 5] {
        let c = client.clone();
        calls.push(tokio::spawn(async move {
            let mut m = Message::new(vec![p], "application/json");
            m.priority = Some(p);
            c.call("prio", "m", m, Duration::from_secs(5)).await
        }));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        let d = sub.next().await.unwrap();
        order.push(d.message.body[0]);
        d.reply(Message::new(b"null".to_vec(), "application/json"))
            .await
            .unwrap();
        d.ack().await.unwrap();
    }
    assert_eq!(order, vec![0, 9, 5, 1]);
    for c in calls {
        c.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_crashed_consumers_delivery_comes_back_flagged() {
    let broker = MemoryBroker::new();
    let b = binding(HandlerType::ServicePool);
    let mut sub = broker
        .subscribe(&b, ConsumeOptions::default())
        .await
        .unwrap();
    broker
        .publish_event(
            "src",
            "evt",
            Message::new(b"1".to_vec(), "application/json"),
        )
        .await
        .unwrap();
    drop(sub.next().await.unwrap());
    drop(sub);
    let mut again = broker
        .connect()
        .subscribe(&b, ConsumeOptions::default())
        .await
        .unwrap();
    let d = again.next().await.unwrap();
    assert!(d.message.redelivered);
    // Dropped once by its first holder, and again when its subscription closed with it queued.
    assert!(
        d.message.delivery_count >= 2,
        "{}",
        d.message.delivery_count
    );
}
