use basidia::prelude::*;

#[service]
pub struct S {
    #[inject(deadline = "1s")]
    users: RpcProxy,
}

#[service(nmae = "s")]
impl S {
    #[rpc(rename = "hi")]
    async fn hello(&self) -> u8 {
        1
    }

    #[timer(every = "1s")]
    async fn tick(&self) {}

    #[event_handler("users", "created", handler = "broadcast")]
    async fn created(&self, id: u64) {
        let _ = id;
    }
}

#[client(servce = "users")]
trait Users {
    async fn get(&self, id: u64) -> String;
}

fn main() {}
