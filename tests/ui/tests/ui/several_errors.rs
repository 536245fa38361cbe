use basidia::prelude::*;

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[rpc]
    fn one(&self) -> u8 {
        1
    }

    #[rpc]
    async fn two(self) -> u8 {
        2
    }

    #[event_handler("users")]
    async fn three(&self, a: u8, b: u8) {
        let _ = (a, b);
    }
}

fn main() {}
