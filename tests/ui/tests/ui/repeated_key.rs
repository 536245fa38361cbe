use basidia::prelude::*;

#[service]
pub struct S {
    #[inject(timeout = "1s", timeout = "2s")]
    users: RpcProxy,
    #[inject(section = "a")]
    #[inject(section = "b")]
    settings: Config<String>,
}

#[service(name = "s", name = "t")]
impl S {
    #[rpc(name = "a", name = "b")]
    async fn hello(&self) -> u8 {
        1
    }

    #[timer(interval = "1s", interval = "2s")]
    async fn tick(&self) {}

    #[timer("1s", interval = "2s")]
    async fn tock(&self) {}

    #[event_handler("users", "created", timeout = "1s", timeout = "2s")]
    async fn created(&self, id: u64) {
        let _ = id;
    }
}

fn main() {}
