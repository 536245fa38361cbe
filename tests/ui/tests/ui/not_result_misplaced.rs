use basidia::prelude::*;

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[rpc(not_result)]
    async fn count(&self) -> u64 {
        1
    }
}

fn main() {}
