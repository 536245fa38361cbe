//! The conformance suite against a real nats-server. Set `BASIDIA_TEST_NATS_URL` (CI does); without it
//! these tests skip with a message, and with it a broker that does not answer fails them.

use std::sync::Arc;

use basidia_conformance::{broker_url_from_env, BrokerFuture};
use basidia_core::SharedBroker;
use basidia_nats::{NatsBroker, NatsOptions};

fn connector() -> Option<impl Fn() -> BrokerFuture + Send + Sync> {
    let url = broker_url_from_env("BASIDIA_TEST_NATS_URL")?;
    Some(move || {
        let url = url.clone();
        Box::pin(async move {
            // A short ack_wait, so that the suite sees within seconds what a consumer that went
            // away left unacked come back.
            let mut options = NatsOptions::new(&url);
            options.ack_wait = std::time::Duration::from_secs(1);
            let b: SharedBroker = Arc::new(
                NatsBroker::connect_with(options)
                    .await
                    .expect("the broker at BASIDIA_TEST_NATS_URL must answer"),
            );
            b
        }) as BrokerFuture
    })
}

basidia_conformance::conformance_tests!(connector());

/// With a command queue of one message, nearly every request and reply finds the client's queue
/// full and waits for room: none may be lost or left waiting.
#[tokio::test]
async fn a_full_command_queue_makes_publishers_wait_and_loses_nothing() {
    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let tiny = move || {
        let url = url.clone();
        Box::pin(async move {
            let mut options = basidia_nats::NatsOptions::new(&url);
            options.command_queue = 1;
            let b: SharedBroker = Arc::new(
                NatsBroker::connect_with(options)
                    .await
                    .expect("the broker at BASIDIA_TEST_NATS_URL must answer"),
            );
            b
        }) as BrokerFuture
    };
    basidia_conformance::concurrent_calls_get_their_own_replies(&tiny).await;
}

/// A handler that holds a JetStream delivery for three times the consumer's `ack_wait` does not
/// see its event again: while the delivery is unsettled the broker tells the server it is at
/// work. Once acknowledged, the event stays settled.
#[tokio::test]
async fn a_delivery_held_past_ack_wait_is_not_redelivered() {
    use std::time::Duration;

    use basidia_core::{Broker, ConsumeOptions, EventBinding, HandlerType, Message};

    let Some(url) = broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    let mut options = basidia_nats::NatsOptions::new(&url);
    options.ack_wait = Duration::from_secs(1);
    let broker = NatsBroker::connect_with(options)
        .await
        .expect("the broker at BASIDIA_TEST_NATS_URL must answer");
    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let source = format!("t_slow_src_{id}");
    let binding = EventBinding {
        source: source.clone(),
        event_type: "slow".into(),
        service: format!("t_slow_sink_{id}"),
        method: "on_slow".into(),
        handler_type: HandlerType::ServicePool,
        broadcast_id: String::new(),
    };
    let mut sub = broker
        .subscribe(&binding, ConsumeOptions::default())
        .await
        .unwrap();
    broker
        .publish_event(
            &source,
            "slow",
            Message::new(b"1".to_vec(), "application/json"),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("the event arrives")
        .expect("the subscription is open");
    assert_eq!(first.message.delivery_count, 1);
    let again = tokio::time::timeout(Duration::from_secs(3), sub.next()).await;
    assert!(
        again.is_err(),
        "redelivered while its handler was at work: {:?}",
        again.map(|d| d.map(|d| d.message.delivery_count))
    );
    first.ack().await.unwrap();
    let after = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await;
    assert!(after.is_err(), "redelivered after its ack");
    drop(sub);
    let js = async_nats::jetstream::new(broker.unstable_raw_client().clone());
    let _ = js.delete_stream(basidia_nats::event_stream(&source)).await;
}
