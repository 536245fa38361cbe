use basidia::prelude::*;

#[service(name = "s")]
pub struct S {
    rpc: RpcProxy,
}

fn main() {}
