//! A service written against `basidia` renamed to `bas`.

/// Echoes.
#[bas::service(crate = "bas")]
pub struct Echo {
    events: bas::EventDispatcher,
}

#[bas::service(crate = "bas", name = "echo")]
impl Echo {
    /// Echoes the text, and tells about it.
    #[rpc]
    pub async fn echo(&self, text: String, times: Option<usize>) -> Result<String, bas::RpcError> {
        self.events.dispatch("echoed", &text).await?;
        Ok(text.repeat(times.unwrap_or(1)))
    }

    /// Counts echo events.
    #[event_handler("echo", "echoed")]
    pub async fn heard(&self, text: String) {
        let _ = text;
    }

    /// Ticks.
    #[timer(interval = "1h")]
    pub async fn tick(&self) {}
}

/// A declared client under the renamed crate.
#[bas::client(crate = "bas", service = "echo")]
pub trait Echo2 {
    /// Echoes.
    async fn echo(&self, text: String, times: Option<usize>) -> String;
}
