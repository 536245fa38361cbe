//! `@service@` in-process, on the in-memory broker.

use basidia_testing::ServiceHarness;
use @lib@::@module@::{@type_name@, @type_name@Client};

#[tokio::test]
async fn @module@_service_answers() {
    let harness = ServiceHarness::start::<@type_name@>().await.expect("the service starts");
    let client = harness.client::<@type_name@Client>();
    assert_eq!(client.@call@.await.expect("the call succeeds"), @expected@);
    harness.stop().await;
}
