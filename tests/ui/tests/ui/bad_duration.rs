use basidia::prelude::*;

#[service]
pub struct S {
    #[inject(timeout = "5x")]
    users: RpcProxy,
}

#[service(name = "s")]
impl S {
    #[timer(interval = "30 seconds")]
    async fn a(&self) {}

    #[timer(interval = "1m30")]
    async fn b(&self) {}

    #[timer(interval = "0s")]
    async fn c(&self) {}

    #[timer(interval = "1e30")]
    async fn d(&self) {}

    #[timer(interval = "100000000000000000s")]
    async fn e(&self) {}

    #[event_handler("users", "created", timeout = "")]
    async fn created(&self, id: u64) {
        let _ = id;
    }
}

fn main() {}
