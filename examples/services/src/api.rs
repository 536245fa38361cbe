//! `api_service`: the HTTP face of the sample fleet. `GET /users/{user_id}` greets a user
//! through `user_service`, `POST /users` creates one (and so `notification_service` welcomes
//! them), `GET /admin/me` is for admins, and `GET /whoami` reads the request head.

use basidia::http::{HeaderMap, Json, StatusCode};
use basidia::prelude::*;
use serde::{Deserialize, Serialize};

use crate::database::User;
use crate::user::UserServiceClient;

/// What `GET /users/{user_id}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Greeting {
    /// "Hello, User <id>!".
    pub message: String,
}

/// What `POST /users` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewUser {
    /// The display name.
    pub name: String,
    /// Where to send the welcome.
    pub email: String,
}

/// What `GET /admin/me` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Caller {
    /// The verified token's subject.
    pub user_id: String,
}

/// The HTTP routes of the sample services.
#[service]
pub struct ApiService {
    users: Dependency<UserServiceClient>,
}

#[service(name = "api_service")]
impl ApiService {
    /// Greets user `user_id`; a user that does not exist is a 404.
    #[http(GET, "/users/{user_id}", errors(UserNotFound = 404))]
    pub async fn get_user(&self, user_id: i64) -> Result<Json<Greeting>, RpcError> {
        let message = self.users.get_user_greeting(user_id).await?;
        Ok(Json(Greeting { message }))
    }

    /// Creates a user: 201 with the user.
    #[http(POST, "/users")]
    pub async fn create_user(
        &self,
        body: Json<NewUser>,
    ) -> Result<(StatusCode, Json<User>), RpcError> {
        let Json(new) = body;
        let user = self.users.create_user(new.name, new.email).await?;
        Ok((StatusCode::CREATED, Json(user)))
    }

    /// Who the caller is, by their verified token: for admins only (a bearer token that
    /// `[auth]` verifies and that grants `admin`; 401 without one, 403 with another role).
    #[http(GET, "/admin/me", roles = ["admin"])]
    pub async fn admin_me(&self) -> Json<Caller> {
        let user_id = Context::current()
            .and_then(|c| c.get("user_id").map(str::to_string))
            .unwrap_or_default();
        Json(Caller { user_id })
    }

    /// Who is asking: the caller's user agent, from the request head.
    #[http(GET, "/whoami")]
    pub async fn whoami(&self, headers: HeaderMap) -> String {
        headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown")
            .to_string()
    }
}
