use basidia::prelude::*;

#[service]
pub struct Api;

#[service(name = "api")]
impl Api {
    #[http(GET, "/users/{id}")]
    async fn by_id(&self, id: i64) -> String {
        id.to_string()
    }

    #[http(GET, POST, "/users/{name}")]
    async fn by_name(&self, name: String) -> String {
        name
    }
}

fn main() {}
