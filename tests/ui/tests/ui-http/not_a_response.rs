use basidia::prelude::*;

pub struct Opaque;

#[service]
pub struct Api;

#[service(name = "api")]
impl Api {
    #[http(GET, "/opaque")]
    async fn opaque(&self) -> Opaque {
        Opaque
    }
}

fn main() {}
