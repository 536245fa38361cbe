use basidia::prelude::*;

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[rpc]
    fn hello(&self, name: String) -> String {
        name
    }
}

fn main() {}
