//! The sample services: greeting, database, user, notification, and the HTTP api.
//!
//! [`register`] adds all of them to a runner; `basidia run examples/services` hosts them in one
//! process.

pub mod api;
pub mod database;
pub mod greeting;
pub mod notification;
pub mod user;

pub use api::{ApiService, ApiServiceClient, Greeting, NewUser};
pub use database::{DatabaseService, DatabaseServiceClient, User, UserNotFound};
pub use greeting::{GreetingService, GreetingServiceClient};
pub use notification::{NotificationService, NotificationServiceClient};
pub use user::{UserCreated, UserService, UserServiceClient};

/// Adds every sample service to `runner`.
pub fn register(runner: &mut basidia::Runner) {
    runner
        .add::<GreetingService>()
        .add::<DatabaseService>()
        .add::<UserService>()
        .add::<NotificationService>()
        .add::<ApiService>();
}
