    /// Returns a greeting for `name`.
    #[rpc]
    pub async fn hello(&self, name: String) -> String {
        format!("Hello, {name}!")
    }
