    /// Answers `pong from @service@`.
    #[rpc]
    pub async fn ping(&self) -> String {
        "pong from @service@".to_string()
    }
