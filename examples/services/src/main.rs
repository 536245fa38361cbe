//! Hosts every sample service in one process on the in-memory broker until Ctrl-C.

use std::sync::Arc;

use basidia::{MemoryBroker, Runner};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut runner = Runner::new(Arc::new(MemoryBroker::new()));
    basidia_example_services::register(&mut runner);
    runner.run().await?;
    Ok(())
}
