use basidia::prelude::*;

pub struct Opaque;

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[rpc]
    async fn give(&self) -> Opaque {
        Opaque
    }
}

fn main() {}
