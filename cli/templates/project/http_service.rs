//! `@service@`: an HTTP service.

use basidia::http::Json;
use basidia::prelude::*;
use serde::Serialize;

/// What `GET /@module@/hello/{name}` answers.
#[derive(Debug, Serialize)]
pub struct Message {
    /// "Hello, <name>!".
    pub message: String,
}

/// The @service@ service.
#[service]
pub struct @type_name@;

#[service(name = "@service@")]
impl @type_name@ {
    /// Answers `GET /@module@/hello/{name}` with `{"message": "Hello, <name>!"}`.
    #[http(GET, "/@module@/hello/{name}")]
    pub async fn hello(&self, name: String) -> Json<Message> {
        Json(Message {
            message: format!("Hello, {name}!"),
        })
    }
}
