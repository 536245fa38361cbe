//! `@service@`'s routes, in process: through the same router the server runs, without a socket.

use basidia::http::HttpConfig;
use basidia_testing::ServiceHarness;
use @lib@::@module@::@type_name@;

#[tokio::test]
async fn @module@_service_answers_over_http() {
    let harness = ServiceHarness::start::<@type_name@>().await.expect("the service starts");
    let http = harness.http(&HttpConfig::default()).expect("its routes serve");
    let response = http.get("/@module@/hello/World").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), br#"{"message":"Hello, World!"}"#);
    assert_eq!(http.get("/@module@/nowhere").await.status(), 404);
    harness.stop().await;
}
