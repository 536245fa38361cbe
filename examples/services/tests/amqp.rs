//! The sample services served over RabbitMQ and called over RabbitMQ. Needs `BASIDIA_TEST_AMQP_URL` (CI sets
//! it); skips with a message otherwise.

mod common;

#[tokio::test]
async fn sample_services_over_amqp() {
    let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_AMQP_URL") else {
        return;
    };
    common::exercise(&url).await;
}
