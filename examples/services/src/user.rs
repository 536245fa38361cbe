//! `user_service`: greets users by looking them up in `database_service`, and creates users.

use std::sync::atomic::{AtomicI64, Ordering};

use basidia::prelude::*;
use serde::{Deserialize, Serialize};

use crate::database::{DatabaseServiceClient, User};

/// The payload of `user_service`'s `user.created` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    /// The new user's id.
    pub id: i64,
    /// The new user's name.
    pub name: String,
    /// Where to notify them.
    pub email: String,
}

/// Users: greetings and sign-ups.
#[service]
pub struct UserService {
    db: Dependency<DatabaseServiceClient>,
    events: EventDispatcher,
    #[inject(default)]
    next_id: AtomicI64,
}

#[service(name = "user_service")]
impl UserService {
    /// "Hello, User <id>!", with the name from `database_service`.
    #[rpc]
    pub async fn get_user_greeting(&self, user_id: i64) -> Result<String, RpcError> {
        let user = self.db.get_user(user_id).await?;
        Ok(format!("Hello, {}!", user.name))
    }

    /// Creates a user and dispatches `user.created`.
    #[rpc]
    pub async fn create_user(&self, name: String, email: String) -> Result<User, RpcError> {
        let id = 1000 + self.next_id.fetch_add(1, Ordering::Relaxed);
        let event = UserCreated {
            id,
            name: name.clone(),
            email,
        };
        self.events.dispatch("user.created", &event).await?;
        Ok(User { id, name })
    }
}
