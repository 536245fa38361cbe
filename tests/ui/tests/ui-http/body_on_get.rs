use basidia::http::Json;
use basidia::prelude::*;

#[service]
pub struct Api;

#[service(name = "api")]
impl Api {
    #[http(GET, "/search")]
    async fn search(&self, body: Json<serde_json::Value>) -> String {
        body.0.to_string()
    }

    #[http(POST, "/upload")]
    async fn upload(&self, body: String, headers: basidia::http::HeaderMap) -> usize {
        body.len() + headers.len()
    }
}

fn main() {}
