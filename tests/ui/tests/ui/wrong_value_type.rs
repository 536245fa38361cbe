use basidia::prelude::*;

#[service]
pub struct S {
    #[inject(timeout = 2)]
    users: RpcProxy,
    #[inject(default = true)]
    count: u64,
}

#[service(name = "s")]
impl S {
    #[rpc(name = hello)]
    async fn hello(&self) -> u8 {
        1
    }

    #[timer(interval = 30)]
    async fn tick(&self) {}

    #[timer(interval = "1s", eager = true)]
    async fn tock(&self) {}

    #[event_handler("users", "created", handler_type = broadcast)]
    async fn created(&self, id: u64) {
        let _ = id;
    }

    #[event_handler("users", 7)]
    async fn deleted(&self, id: u64) {
        let _ = id;
    }
}

fn main() {}
