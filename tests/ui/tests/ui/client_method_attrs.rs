use basidia::prelude::*;

#[client(service = "users")]
trait Users {
    #[rpc(name = "get.user")]
    async fn get(&self, id: u64) -> String;

    #[timer(interval = "1s")]
    async fn tick(&self);

    #[rpc(name = "a")]
    #[rpc(name = "b")]
    async fn twice(&self);

    #[rpc(name = "legacy", name = "legacy2")]
    async fn renamed(&self);
}

fn main() {}
