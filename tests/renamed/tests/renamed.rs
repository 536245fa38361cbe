//! The renamed-crate service runs and answers.

use std::sync::Arc;

use bas::Client;
use basidia_renamed_test::{Echo, Echo2Client, EchoClient};

#[tokio::test]
async fn a_service_under_a_renamed_crate_runs() {
    let mut runner = bas::Runner::new(Arc::new(bas::MemoryBroker::new()));
    runner.add::<Echo>();
    let running = runner.start().await.unwrap();
    let client = EchoClient::connect(&running.rpc_proxy());
    assert_eq!(client.echo("ab".into(), Some(2)).await.unwrap(), "abab");
    let other = Echo2Client::connect(&running.rpc_proxy());
    assert_eq!(other.echo("x".into(), None).await.unwrap(), "x");
    running.stop().await;
}
