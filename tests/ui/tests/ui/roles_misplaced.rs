use basidia::prelude::*;

#[client(service = "vault")]
trait Vault {
    #[rpc(roles = ["admin"])]
    async fn purge(&self) -> u8;
}

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[rpc(roles = "admin")]
    async fn one(&self) -> u8 {
        1
    }

    #[rpc(roles = ["admin", ""])]
    async fn two(&self) -> u8 {
        2
    }
}

fn main() {}
