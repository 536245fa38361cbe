use basidia::prelude::*;

#[service]
pub struct S;

#[service(name = "s")]
impl S {
    #[event_handler("users", "created", handler_type = "everyone")]
    async fn on_created(&self, id: u64) {
        let _ = id;
    }
}

fn main() {}
