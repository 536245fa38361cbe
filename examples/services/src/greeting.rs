//! `greeting_service`: says hello and goodbye.

use basidia::prelude::*;

/// Greets people.
#[service]
pub struct GreetingService;

#[service(name = "greeting_service")]
impl GreetingService {
    /// Returns "Hello, <name>!".
    #[rpc]
    pub async fn hello(&self, name: String) -> String {
        format!("Hello, {name}!")
    }

    /// Returns "Goodbye, <name>!".
    #[rpc]
    pub async fn goodbye(&self, name: String) -> String {
        format!("Goodbye, {name}!")
    }
}
