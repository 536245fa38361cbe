//! `database_service`: looks users up.

use basidia::prelude::*;
use serde::{Deserialize, Serialize};

/// A user record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct User {
    /// The user id.
    pub id: i64,
    /// The display name.
    pub name: String,
}

/// No user has this id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNotFound {
    /// The id asked for.
    pub user_id: i64,
}

impl std::fmt::Display for UserNotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no user with id {}", self.user_id)
    }
}

/// A stand-in database: every positive id is a user named "User <id>".
#[service]
pub struct DatabaseService;

#[service(name = "database_service")]
impl DatabaseService {
    /// The user with this id.
    #[rpc]
    pub async fn get_user(&self, user_id: i64) -> Result<User, UserNotFound> {
        if user_id <= 0 {
            return Err(UserNotFound { user_id });
        }
        Ok(User {
            id: user_id,
            name: format!("User {user_id}"),
        })
    }
}
