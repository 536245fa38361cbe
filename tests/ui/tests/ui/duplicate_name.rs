use basidia::prelude::*;

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[rpc]
    async fn hello(&self) -> u8 {
        1
    }

    #[rpc(name = "hello")]
    async fn hello_again(&self) -> u8 {
        2
    }
}

fn main() {}
