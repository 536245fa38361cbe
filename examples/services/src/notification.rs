//! `notification_service`: welcomes new users and sends notifications.

use std::sync::Mutex;

use basidia::prelude::*;

use crate::user::UserCreated;

/// Notifications.
#[service]
pub struct NotificationService {
    #[inject(default)]
    sent: Mutex<Vec<String>>,
    #[inject(default)]
    digests: Mutex<Vec<usize>>,
}

impl NotificationService {
    fn record(&self, line: String) {
        tracing::info!("{line}");
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }
}

#[service(name = "notification_service")]
impl NotificationService {
    /// Welcomes every new user.
    #[event_handler("user_service", "user.created")]
    pub async fn on_user_created(&self, user: UserCreated) {
        self.record(format!("to {}: Welcome, {}!", user.email, user.name));
    }

    /// Sends a message; returns whether it was sent.
    #[rpc]
    pub async fn send_notification(&self, message: String, recipient: String) -> bool {
        self.record(format!("to {recipient}: {message}"));
        true
    }

    /// The notifications sent so far.
    #[rpc]
    pub async fn sent(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every minute, notes how many notifications were sent.
    #[timer(interval = "60s")]
    pub async fn digest(&self) {
        let count = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        self.digests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(count);
    }

    /// The counts the digest timer recorded.
    #[rpc]
    pub async fn digests(&self) -> Vec<usize> {
        self.digests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
