use basidia::prelude::*;
use serde::{Deserialize, Serialize};

/// A type of the user's own that happens to be called `Result`.
#[derive(Serialize, Deserialize)]
pub enum Result<T> {
    Found(T),
    Missing,
}

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[rpc]
    async fn find(&self, id: u64) -> Result<u64> {
        Result::Found(id)
    }
}

#[client(service = "s")]
trait Finder {
    async fn find(&self, id: u64) -> Result<u64>;
}

fn main() {}
