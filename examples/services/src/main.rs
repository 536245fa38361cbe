//! Hosts every sample service in one process until Ctrl-C.
//!
//! `basidia-example-services [--broker URL]`: the broker defaults to `$BASIDIA_BROKER`, then to
//! `memory://`.

use basidia::Runner;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut url = std::env::var("BASIDIA_BROKER").unwrap_or_else(|_| "memory://".into());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--broker" => {
                url = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--broker needs a URL"))?
            }
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: basidia-example-services [--broker URL]"
            ),
        }
    }
    let broker = basidia::connect(&url).await?;
    let mut runner = Runner::new(broker);
    basidia_example_services::register(&mut runner);
    runner.run().await?;
    Ok(())
}
