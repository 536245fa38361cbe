//! Which return types are results, end to end through a broker.

use std::fmt;

use basidia::prelude::*;
use serde::{Deserialize, Serialize};

/// An application error and the usual one-argument alias.
mod app {
    use super::*;

    #[derive(Debug, Serialize)]
    pub struct AppError(pub String);

    impl fmt::Display for AppError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    pub type Result<T> = std::result::Result<T, AppError>;
}

/// A type of one's own named `Result`, sent as a plain value.
mod lookup {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub enum Result<T> {
        Found(T),
        Missing,
    }
}

#[service]
pub struct Results;

#[service(name = "results")]
impl Results {
    #[rpc]
    async fn alias(&self, ok: bool) -> app::Result<u8> {
        if ok {
            Ok(1)
        } else {
            Err(app::AppError("refused".into()))
        }
    }

    #[rpc]
    async fn std_path(&self) -> std::result::Result<String, RpcError> {
        Ok("std".into())
    }

    #[rpc]
    async fn core_path(&self) -> core::result::Result<u8, String> {
        Err("core".into())
    }

    #[rpc(not_result)]
    async fn lookup(&self, id: u64) -> lookup::Result<u64> {
        if id == 0 {
            lookup::Result::Missing
        } else {
            lookup::Result::Found(id)
        }
    }
}

#[client(service = "results")]
trait Declared {
    async fn alias(&self, ok: bool) -> app::Result<u8>;

    #[rpc(not_result)]
    async fn lookup(&self, id: u64) -> lookup::Result<u64>;

    #[rpc(name = "std_path")]
    async fn renamed(&self) -> String;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let broker = MemoryBroker::new();
    let mut runner = Runner::new(std::sync::Arc::new(broker.clone()));
    runner.add::<Results>();
    let running = runner.start().await.unwrap();

    let c = ResultsClient::connect(&running.rpc_proxy());
    assert_eq!(c.alias(true).await.unwrap(), 1u8);
    let err = c.alias(false).await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(c.std_path().await.unwrap(), "std");
    let err = c.core_path().await.unwrap_err();
    assert!(err.to_string().contains("core"), "{err}");
    assert_eq!(c.lookup(7).await.unwrap(), lookup::Result::Found(7));
    assert_eq!(c.lookup(0).await.unwrap(), lookup::Result::Missing);

    let d = DeclaredClient::connect(&running.rpc_proxy());
    assert_eq!(d.alias(true).await.unwrap(), 1u8);
    assert_eq!(d.lookup(3).await.unwrap(), lookup::Result::Found(3));
    assert_eq!(d.renamed().await.unwrap(), "std");

    let described = running.rpc_proxy().describe("results").await.unwrap();
    let returns: Vec<&str> = described.rpc.iter().map(|m| m.returns.as_str()).collect();
    assert_eq!(returns, ["u8", "String", "u8", "lookup::Result<u64>"]);
    running.stop().await;
}
