use basidia::prelude::*;

pub struct S;

impl S {
    #[rpc]
    async fn hello(&self) -> u8 {
        1
    }
}

fn main() {}
