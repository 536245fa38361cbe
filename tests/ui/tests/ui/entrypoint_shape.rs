use basidia::prelude::*;

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[rpc]
    #[timer(interval = "1s")]
    async fn both(&self) {}

    #[on_start(eager)]
    async fn begin(&self) {}

    #[on_stop]
    async fn end(&self) {}

    #[on_stop]
    async fn end_again(&self) {}
}

fn main() {}
