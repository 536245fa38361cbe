//! The sample services served over NATS and called over NATS. Needs `BASIDIA_TEST_NATS_URL` (CI sets
//! it); skips with a message otherwise.

mod common;

#[tokio::test]
async fn sample_services_over_nats() {
    let Some(url) = basidia_conformance::broker_url_from_env("BASIDIA_TEST_NATS_URL") else {
        return;
    };
    common::exercise(&url).await;
}
