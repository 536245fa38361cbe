//! The conformance suite against a real RabbitMQ. Set `BASIDIA_TEST_AMQP_URL` (CI does); without it
//! these tests skip with a message, and with it a broker that does not answer fails them.

use std::sync::Arc;

use basidia_amqp::AmqpBroker;
use basidia_conformance::{broker_url_from_env, BrokerFuture};
use basidia_core::SharedBroker;

fn connector() -> Option<impl Fn() -> BrokerFuture + Send + Sync> {
    let url = broker_url_from_env("BASIDIA_TEST_AMQP_URL")?;
    Some(move || {
        let url = url.clone();
        Box::pin(async move {
            let b: SharedBroker = Arc::new(
                AmqpBroker::connect(&url)
                    .await
                    .expect("the broker at BASIDIA_TEST_AMQP_URL must answer"),
            );
            b
        }) as BrokerFuture
    })
}

basidia_conformance::conformance_tests!(connector());
