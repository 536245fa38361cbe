//! The conformance suite against a real nats-server. Set `BASIDIA_TEST_NATS_URL` (CI does); without it
//! these tests skip with a message, and with it a broker that does not answer fails them.
#![cfg(feature = "nats")]

use std::sync::Arc;

use basidia_brokers::conformance::{broker_url_from_env, BrokerFuture};
use basidia_brokers::NatsBroker;
use basidia_core::SharedBroker;

fn connector() -> Option<impl Fn() -> BrokerFuture + Send + Sync> {
    let url = broker_url_from_env("BASIDIA_TEST_NATS_URL")?;
    Some(move || {
        let url = url.clone();
        Box::pin(async move {
            let b: SharedBroker = Arc::new(
                NatsBroker::connect(&url)
                    .await
                    .expect("the broker at BASIDIA_TEST_NATS_URL must answer"),
            );
            b
        }) as BrokerFuture
    })
}

basidia_brokers::conformance_tests!(connector());

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
            let mut options = basidia_brokers::NatsOptions::new(&url);
            options.command_queue = 1;
            let b: SharedBroker = Arc::new(
                NatsBroker::connect_with(options)
                    .await
                    .expect("the broker at BASIDIA_TEST_NATS_URL must answer"),
            );
            b
        }) as BrokerFuture
    };
    basidia_brokers::conformance::concurrent_calls_get_their_own_replies(&tiny).await;
}
