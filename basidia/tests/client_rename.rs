//! A `#[client]` trait method whose Rust name differs from the wire method it calls.

use basidia::prelude::*;
use basidia_testing::ServiceHarness;

#[service]
struct Legacy;

#[service(name = "legacy")]
impl Legacy {
    /// The method as older peers know it.
    #[rpc]
    async fn legacy_name(&self, n: i64) -> i64 {
        n * 2
    }
}

/// The client newer code writes against.
#[client(service = "legacy")]
trait Modern {
    /// Doubles `n`, through the wire method `legacy_name`.
    #[rpc(name = "legacy_name")]
    async fn modern(&self, n: i64) -> i64;
}

#[tokio::test]
async fn a_renamed_client_method_calls_the_wire_name() {
    let h = ServiceHarness::builder()
        .service::<Legacy>()
        .start()
        .await
        .unwrap();
    let c = h.client::<ModernClient>();
    assert_eq!(c.modern(21).await.unwrap(), 42);
    // The generated service client keeps the Rust name, which is the wire name here.
    assert_eq!(h.client::<LegacyClient>().legacy_name(4).await.unwrap(), 8);
    let d = h.proxy().describe("legacy").await.unwrap();
    let names: Vec<&str> = d.rpc.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["legacy_name"]);
    h.stop().await;
}
