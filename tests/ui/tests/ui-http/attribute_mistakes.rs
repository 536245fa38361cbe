use basidia::prelude::*;

#[service]
pub struct Api;

#[service(name = "api")]
impl Api {
    #[http(get, "/a")]
    async fn lower(&self) -> String {
        String::new()
    }

    #[http(GET, "/users/:id")]
    async fn colon(&self, id: i64) -> i64 {
        id
    }

    #[http(POST, "/b", errors(Conflict = 200))]
    async fn mapped(&self) -> String {
        String::new()
    }

    #[http(PUT)]
    async fn no_path(&self) -> String {
        String::new()
    }
}

fn main() {}
