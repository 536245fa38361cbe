use basidia::prelude::*;

#[service]
pub struct Api;

#[service(name = "api")]
impl Api {
    #[http(GET, "/users/{id}")]
    async fn get_user(&self, user_id: i64) -> String {
        user_id.to_string()
    }
}

fn main() {}
