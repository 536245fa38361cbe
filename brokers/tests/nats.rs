//! The conformance suite against a real nats-server. Set `BASIDIA_TEST_NATS_URL` (CI does); without
//! it these tests skip with a message, and with it a broker that does not answer fails them.
#![cfg(feature = "nats")]

use std::sync::Arc;

use basidia_brokers::conformance::{self, BrokerFuture};
use basidia_brokers::NatsBroker;
use basidia_core::SharedBroker;

fn url() -> Option<String> {
    match std::env::var("BASIDIA_TEST_NATS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set BASIDIA_TEST_NATS_URL"
            );
            eprintln!("skipped: BASIDIA_TEST_NATS_URL is not set");
            None
        }
    }
}

fn connector(url: String) -> impl Fn() -> BrokerFuture + Send + Sync {
    move || {
        let url = url.clone();
        Box::pin(async move {
            let b: SharedBroker = Arc::new(
                NatsBroker::connect(&url)
                    .await
                    .expect("nats-server at BASIDIA_TEST_NATS_URL must answer"),
            );
            b
        })
    }
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(url) = url() else { return };
            conformance::$name(&connector(url)).await;
        }
    )*};
}

conformance_tests!(
    rpc_round_trip,
    unknown_service_fails_fast,
    call_times_out,
    replies_keep_their_content_type,
    requests_compete_across_instances,
    requeue_redelivers_with_flag_and_count,
    dropped_delivery_is_redelivered,
    dead_lettered_delivery_is_not_redelivered,
    prefetch_bounds_unsettled_deliveries,
    service_pool_events_fan_out_across_services_and_compete_within,
    singleton_events_reach_one_handler,
    broadcast_events_reach_every_instance,
    events_wait_in_durable_queues_while_the_handler_is_down,
    close_fails_calls_in_flight,
);
