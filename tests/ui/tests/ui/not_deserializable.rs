use basidia::prelude::*;

pub struct Opaque;

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[rpc]
    async fn take(&self, value: Opaque) -> u8 {
        let _ = value;
        1
    }
}

fn main() {}
