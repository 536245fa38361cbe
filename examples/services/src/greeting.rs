//! `greeting_service`: says hello and goodbye.

use basidia::prelude::*;
use serde::Deserialize;

/// The `[greeting]` configuration section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GreetingSettings {
    /// The word `hello` greets with.
    pub salutation: String,
}

impl Default for GreetingSettings {
    fn default() -> Self {
        GreetingSettings {
            salutation: "Hello".into(),
        }
    }
}

/// Greets people.
#[service]
pub struct GreetingService {
    greeting: Config<GreetingSettings>,
}

#[service(name = "greeting_service")]
impl GreetingService {
    /// Returns "Hello, <name>!" (the salutation comes from the `[greeting]` section).
    #[rpc]
    pub async fn hello(&self, name: String) -> String {
        format!("{}, {name}!", self.greeting.salutation)
    }

    /// Returns "Goodbye, <name>!".
    #[rpc]
    pub async fn goodbye(&self, name: String) -> String {
        format!("Goodbye, {name}!")
    }
}
