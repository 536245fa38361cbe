//! Command-line flags shared by the commands that read configuration.

use std::path::PathBuf;
use std::time::Duration;

use basidia::Format;

use basidia_runtime::config::{self, ConfigError, Loaded, Overrides};

/// `--config`, `--broker`, `--timeout`, `--serializer`, `--max-workers`: the configuration file,
/// and the top layer of configuration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFlags {
    /// The configuration file (default: ./basidia.toml if present, or $BASIDIA_CONFIG).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The broker URL: memory://, amqp://..., amqps://..., nats://... or tls://...
    #[arg(long, value_name = "URL", global = true)]
    pub broker: Option<String>,
    /// The RPC call timeout, such as 5s or 500ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, global = true)]
    pub timeout: Option<Duration>,
    /// The format of outgoing requests and events: msgpack or json.
    #[arg(long, value_name = "FORMAT", value_parser = parse_format, global = true)]
    pub serializer: Option<Format>,
    /// How many workers each service runs at once.
    #[arg(long, value_name = "N", global = true)]
    pub max_workers: Option<usize>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    basidia::parse_duration(s)
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse::<Format>().map_err(|e| e.to_string())
}

impl ConfigFlags {
    /// The flags as the top configuration layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            broker: self.broker.clone(),
            rpc_timeout: self.timeout,
            serializer: self.serializer,
            max_workers: self.max_workers,
        }
    }

    /// Loads the configuration with these flags on top.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        config::load(self.config.as_deref(), &self.overrides())
    }

    /// The flags again as arguments, to hand to another `basidia` process or to a host.
    pub fn to_args(&self) -> Vec<String> {
        let mut host = basidia_runtime::HostArgs::default();
        host.config = self.config.clone();
        host.overrides = self.overrides();
        host.to_args()
    }
}
