//! Layered configuration: built-in defaults < `basidia.toml` < `BASIDIA_*` environment variables
//! < command-line flags, merged with figment.
//!
//! A `basidia.toml` holds the broker, the defaults of every service, per-service overrides under
//! `[services.<name>]`, and any other table as a user section that services read through
//! `Config<T>`:
//!
//! ```toml
//! broker = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! max_workers = 20
//! rpc_timeout = "10s"
//!
//! [services.user_service]
//! max_workers = 4
//!
//! [database]
//! url = "postgres://app:secret@db/app"
//! ```
//!
//! Environment variables use the same keys with a `BASIDIA_` prefix and `__` between levels:
//! `BASIDIA_BROKER`, `BASIDIA_MAX_WORKERS`, `BASIDIA_SERVICES__USER_SERVICE__MAX_WORKERS`,
//! `BASIDIA_DATABASE__URL`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use basidia::{Format, RunnerConfig, ServiceOverrides, ServiceSettings};
use figment::providers::{Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The configuration file read from the working directory when no `--config` is given.
pub const CONFIG_FILE: &str = "basidia.toml";

/// The environment variable that names a configuration file, like `--config`.
pub const CONFIG_ENV: &str = "BASIDIA_CONFIG";

/// Top-level keys with a meaning of their own; every other top-level key is a user section.
pub const KNOWN_KEYS: &[&str] = &[
    "broker",
    "tls_ca_file",
    "nats_credentials_file",
    "amqp_quorum_queues",
    "serializer",
    "max_workers",
    "rpc_timeout",
    "shutdown_grace",
    "event_max_deliveries",
    "event_retry_delay",
    "event_retry_max_delay",
    "event_handler_timeout",
    "max_priority",
    "profile",
    "log",
    "telemetry",
    "http",
    "auth",
    "services",
];

/// How `basidia run` builds the host: `debug` (the default, quickest to build) or `release`
/// (what production runs: several times the throughput of a debug host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Unoptimised, with debug assertions.
    #[default]
    Debug,
    /// Optimised.
    Release,
}

impl Profile {
    /// The profile's name, as cargo and the configuration spell it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// Everything `basidia` reads from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The broker URL: `memory://`, `amqp://...`, `amqps://...`, `nats://...` or `tls://...`.
    pub broker: String,
    /// A PEM file of CA certificates to trust for `amqps://` and `tls://` brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// A NATS `.creds` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_credentials_file: Option<PathBuf>,
    /// On AMQP: declare the durable queues Basidia owns as quorum queues (see
    /// `AmqpOptions::quorum_queues`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub amqp_quorum_queues: bool,
    /// The format of outgoing requests and events.
    pub serializer: Format,
    /// How many workers each service runs at once.
    pub max_workers: usize,
    /// The default deadline of RPC calls (also the shell's call timeout).
    #[serde(with = "human_duration")]
    pub rpc_timeout: Duration,
    /// How long a stopping service waits for in-flight work.
    #[serde(with = "human_duration")]
    pub shutdown_grace: Duration,
    /// How many times an event reaches a failing handler before it is dead-lettered.
    pub event_max_deliveries: u32,
    /// The pause before a failed event is first retried (doubled per retry).
    #[serde(with = "human_duration")]
    pub event_retry_delay: Duration,
    /// The longest pause between two retries of an event.
    #[serde(with = "human_duration")]
    pub event_retry_max_delay: Duration,
    /// How long one run of an event handler may take.
    #[serde(with = "human_duration")]
    pub event_handler_timeout: Duration,
    /// The RPC queues' maximum priority, on brokers with priorities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority: Option<u8>,
    /// How `basidia run` builds the host (`--release` picks `release` too).
    #[serde(default)]
    pub profile: Profile,
    /// Logging: `[log]` with `format` (`text` or `json`) and `level`.
    #[serde(default)]
    pub log: crate::logging::LogConfig,
    /// Trace export: `[telemetry]` with `enabled`, `endpoint`, `service_name`,
    /// `sample_ratio`, `headers`, `timeout` (see [`crate::telemetry`]).
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The HTTP server: `[http]` with `address`, `body_limit`, `request_timeout`, `health`.
    #[cfg(feature = "http")]
    #[serde(default)]
    pub http: basidia_http::HttpConfig,
    /// How callers' tokens are verified for methods with roles: `[auth]` with `algorithm`,
    /// `secret` or `key_file` or `jwks_file`, `issuer`, `audience`, `leeway`, `roles_claim`.
    #[cfg(feature = "auth")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<basidia_auth::JwtConfig>,
    /// Overrides by service name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceOverrides>,
    /// User sections by name.
    #[serde(flatten)]
    pub sections: serde_json::Map<String, serde_json::Value>,
}

impl Default for Settings {
    fn default() -> Self {
        let d = ServiceSettings::default();
        Settings {
            broker: "memory://".into(),
            tls_ca_file: None,
            nats_credentials_file: None,
            amqp_quorum_queues: false,
            serializer: d.serializer,
            max_workers: d.max_workers,
            rpc_timeout: d.rpc_timeout,
            shutdown_grace: d.shutdown_grace,
            event_max_deliveries: d.event_max_deliveries,
            event_retry_delay: d.event_retry_delay,
            event_retry_max_delay: d.event_retry_max_delay,
            event_handler_timeout: d.event_handler_timeout,
            max_priority: d.max_priority,
            profile: Profile::Debug,
            log: crate::logging::LogConfig::default(),
            telemetry: crate::telemetry::TelemetryConfig::default(),
            #[cfg(feature = "http")]
            http: basidia_http::HttpConfig::default(),
            #[cfg(feature = "auth")]
            auth: None,
            services: BTreeMap::new(),
            sections: serde_json::Map::new(),
        }
    }
}

impl Settings {
    /// The runner configuration these settings describe.
    pub fn runner_config(&self) -> RunnerConfig {
        RunnerConfig {
            defaults: ServiceSettings {
                max_workers: self.max_workers,
                rpc_timeout: self.rpc_timeout,
                shutdown_grace: self.shutdown_grace,
                serializer: self.serializer,
                event_max_deliveries: self.event_max_deliveries,
                event_retry_delay: self.event_retry_delay,
                event_retry_max_delay: self.event_retry_max_delay,
                event_handler_timeout: self.event_handler_timeout,
                max_priority: self.max_priority,
            },
            services: self
                .services
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sections: self.sections.clone(),
        }
    }
}

/// Values given on the command line; each one set wins over every other layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overrides {
    /// `--broker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// `--timeout`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "human_duration::serialize_opt"
    )]
    pub rpc_timeout: Option<Duration>,
    /// `--serializer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serializer: Option<Format>,
    /// `--max-workers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<usize>,
}

/// Invalid or unreadable configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value has the wrong type or shape; the message names the key and where it was set.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A value parsed but makes no sense.
    #[error("invalid configuration: key `{key}` ({origin}): {message}")]
    Value {
        /// The offending key, dotted.
        key: String,
        /// Where it was set.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A configuration file named explicitly does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        let messages: Vec<String> = error
            .into_iter()
            .map(|e| {
                let key = e.path.join(".");
                let origin = match &e.metadata {
                    Some(md) => describe_source(md, &e.path),
                    None => "default".into(),
                };
                if key.is_empty() {
                    format!("{} ({origin})", e.kind)
                } else {
                    format!("key `{key}` ({origin}): {}", e.kind)
                }
            })
            .collect();
        ConfigError::Invalid(messages.join("; "))
    }
}

fn describe_source(md: &figment::Metadata, path: &[String]) -> String {
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    match &md.source {
        Some(figment::Source::File(file)) => format!("set in {}", file.display()),
        _ if md.name.contains("environment") => {
            format!(
                "set by {}",
                md.interpolate(&figment::Profile::Default, &parts)
            )
        }
        _ => md.name.to_string(),
    }
}

/// Merged configuration, and where it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The merged settings.
    pub settings: Settings,
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
    figment: Figment,
}

impl Loaded {
    /// Where the value at the dotted `key` came from: "default", a file, an environment variable
    /// or "command line".
    pub fn origin(&self, key: &str) -> String {
        origin_of(&self.figment, key)
    }
}

fn origin_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        None => "default".into(),
        Some(md) => {
            let parts: Vec<String> = key.split('.').map(str::to_string).collect();
            describe_source(md, &parts)
        }
    }
}

/// Loads the configuration: `file` (or `$BASIDIA_CONFIG`, or `./basidia.toml` if present), then
/// the environment, then `overrides`.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    load_from(file, std::env::vars(), overrides)
}

/// [`load`] with an explicit environment, for tests and embedding.
pub fn load_from(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let explicit = file.map(Path::to_path_buf).or_else(|| {
        env.iter()
            .find(|(k, _)| k == CONFIG_ENV)
            .map(|(_, v)| PathBuf::from(v))
    });
    let path = match explicit {
        Some(p) if !p.is_file() => return Err(ConfigError::MissingFile(p)),
        Some(p) => Some(p),
        None => Some(PathBuf::from(CONFIG_FILE)).filter(|p| p.is_file()),
    };

    let mut figment = Figment::from(Named(Serialized::defaults(Settings::default()), "default"));
    if let Some(p) = &path {
        figment = figment.merge(Toml::file_exact(p));
    }
    let vars: Vec<(String, String)> = env
        .into_iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("BASIDIA_")?;
            let lower = rest.to_ascii_lowercase();
            (KNOWN_KEYS.contains(&lower.as_str()) || lower.contains("__")).then_some((k, v))
        })
        .collect();
    figment = figment.merge(EnvSnapshot { vars });
    figment = figment.merge(Named(Serialized::defaults(overrides), "command line"));

    let settings: Settings = figment.extract()?;
    for (key, value) in &settings.sections {
        if !value.is_object() {
            return Err(ConfigError::Value {
                key: key.clone(),
                origin: origin_of(&figment, key),
                message: format!(
                    "unknown key; the known keys are {}, and user sections must be tables",
                    KNOWN_KEYS.join(", ")
                ),
            });
        }
    }
    if settings.max_workers == 0 {
        return Err(ConfigError::Value {
            key: "max_workers".into(),
            origin: origin_of(&figment, "max_workers"),
            message: "must be at least 1".into(),
        });
    }
    let scheme = settings.broker.split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("memory" | "amqp" | "amqps" | "nats" | "tls")) {
        return Err(ConfigError::Value {
            key: "broker".into(),
            origin: origin_of(&figment, "broker"),
            message: format!(
                "{:?} is not a broker URL: expected memory://, amqp://, amqps://, nats:// or tls://",
                basidia_core::redact_url(&settings.broker)
            ),
        });
    }
    Ok(Loaded {
        settings,
        file: path,
        figment,
    })
}

/// A provider under a name of our choosing, for the origins `show-config` and errors print.
struct Named<P>(P, &'static str);

impl<P: figment::Provider> figment::Provider for Named<P> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.1)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.0.data()
    }
}

/// figment's environment provider over a fixed set of variables, so that loading can be tested
/// without touching the process environment.
struct EnvSnapshot {
    vars: Vec<(String, String)>,
}

impl figment::Provider for EnvSnapshot {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment").interpolater(|_, keys: &[&str]| {
            let upper: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
            format!("BASIDIA_{}", upper.join("__"))
        })
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (k, v) in &self.vars {
            let Some(rest) = k.strip_prefix("BASIDIA_") else {
                continue;
            };
            let path = rest.to_ascii_lowercase().replace("__", ".");
            let value: figment::value::Value = v.parse().expect("figment values parse infallibly");
            if let figment::value::Value::Dict(_, d) = figment::util::nest(&path, value) {
                merge_dict(&mut dict, d);
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

fn merge_dict(into: &mut figment::value::Dict, from: figment::value::Dict) {
    use figment::value::Value;
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => {
                merge_dict(existing, incoming)
            }
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Connects to the configured broker, with its TLS and credentials files.
pub async fn connect(settings: &Settings) -> Result<basidia::SharedBroker, basidia::BrokerError> {
    let url = settings.broker.as_str();
    let scheme = url.split_once("://").map_or(url, |(s, _)| s);
    match scheme {
        "amqp" | "amqps" if settings.tls_ca_file.is_some() || settings.amqp_quorum_queues => {
            let mut options = basidia::AmqpOptions::new(url);
            options.tls_ca_file = settings.tls_ca_file.clone();
            options.quorum_queues = settings.amqp_quorum_queues;
            Ok(std::sync::Arc::new(
                basidia::AmqpBroker::connect_with(options).await?,
            ))
        }
        "nats" | "tls"
            if settings.tls_ca_file.is_some() || settings.nats_credentials_file.is_some() =>
        {
            let mut options = basidia::NatsOptions::new(url);
            options.tls_ca_file = settings.tls_ca_file.clone();
            options.credentials_file = settings.nats_credentials_file.clone();
            Ok(std::sync::Arc::new(
                basidia::NatsBroker::connect_with(options).await?,
            ))
        }
        _ => basidia::connect(url).await,
    }
}

/// What a secret reads as in `show-config`.
pub const MASK: &str = "***";

/// Words in a key that mark its value as secret in `show-config`.
const SECRET_WORDS: &[&str] = &["password", "passwd", "secret", "token", "key", "credential"];

/// The merged configuration as TOML, with passwords, tokens and URL credentials masked.
pub fn render(loaded: &Loaded) -> String {
    let s = &loaded.settings;
    let mut out = String::new();
    let line = |out: &mut String, key: &str, value: toml::Value| {
        out.push_str(&format!("{key} = {value}  # {}\n", loaded.origin(key)));
    };
    line(
        &mut out,
        "broker",
        toml::Value::String(basidia_core::redact_url(&s.broker)),
    );
    if let Some(p) = &s.tls_ca_file {
        line(
            &mut out,
            "tls_ca_file",
            toml::Value::String(p.display().to_string()),
        );
    }
    if let Some(p) = &s.nats_credentials_file {
        line(
            &mut out,
            "nats_credentials_file",
            toml::Value::String(p.display().to_string()),
        );
    }
    if s.amqp_quorum_queues {
        line(&mut out, "amqp_quorum_queues", toml::Value::Boolean(true));
    }
    line(
        &mut out,
        "serializer",
        toml::Value::String(s.serializer.name().into()),
    );
    line(
        &mut out,
        "max_workers",
        toml::Value::Integer(s.max_workers as i64),
    );
    line(
        &mut out,
        "rpc_timeout",
        toml::Value::String(human_duration::format(s.rpc_timeout)),
    );
    line(
        &mut out,
        "shutdown_grace",
        toml::Value::String(human_duration::format(s.shutdown_grace)),
    );
    line(
        &mut out,
        "event_max_deliveries",
        toml::Value::Integer(s.event_max_deliveries.into()),
    );
    line(
        &mut out,
        "event_retry_delay",
        toml::Value::String(human_duration::format(s.event_retry_delay)),
    );
    line(
        &mut out,
        "event_retry_max_delay",
        toml::Value::String(human_duration::format(s.event_retry_max_delay)),
    );
    line(
        &mut out,
        "event_handler_timeout",
        toml::Value::String(human_duration::format(s.event_handler_timeout)),
    );
    if let Some(p) = s.max_priority {
        line(&mut out, "max_priority", toml::Value::Integer(p.into()));
    }
    line(
        &mut out,
        "profile",
        toml::Value::String(s.profile.name().into()),
    );
    #[cfg(feature = "http")]
    {
        let h = &s.http;
        out.push_str(&format!("\n[http]  # {}\n", loaded.origin("http")));
        let mut t = toml::Table::new();
        t.insert("address".into(), toml::Value::String(h.address.to_string()));
        t.insert(
            "body_limit".into(),
            toml::Value::Integer(h.body_limit as i64),
        );
        t.insert(
            "request_timeout".into(),
            toml::Value::String(human_duration::format(h.request_timeout)),
        );
        if let Some(health) = h.health {
            t.insert("health".into(), toml::Value::Boolean(health));
        }
        if h.gateway.enabled() {
            let mut g = toml::Table::new();
            g.insert(
                "allow".into(),
                toml::Value::Array(
                    h.gateway
                        .allow
                        .iter()
                        .cloned()
                        .map(toml::Value::String)
                        .collect(),
                ),
            );
            if let Some(timeout) = h.gateway.timeout {
                g.insert(
                    "timeout".into(),
                    toml::Value::String(human_duration::format(timeout)),
                );
            }
            t.insert("gateway".into(), toml::Value::Table(g));
        }
        if let Some(tls) = &h.tls {
            let mut g = toml::Table::new();
            for (key, path) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
                g.insert(key.into(), toml::Value::String(path.display().to_string()));
            }
            g.insert(
                "handshake_timeout".into(),
                toml::Value::String(human_duration::format(tls.handshake_timeout)),
            );
            t.insert("tls".into(), toml::Value::Table(g));
        }
        out.push_str(&toml::to_string(&t).unwrap_or_default());
    }
    {
        out.push_str(&format!("\n[log]  # {}\n", loaded.origin("log")));
        let mut t = toml::Table::new();
        let format = match s.log.format {
            crate::logging::LogFormat::Text => "text",
            crate::logging::LogFormat::Json => "json",
        };
        t.insert("format".into(), toml::Value::String(format.into()));
        if let Some(level) = &s.log.level {
            t.insert("level".into(), toml::Value::String(level.clone()));
        }
        out.push_str(&toml::to_string(&t).unwrap_or_default());
    }
    {
        let tel = &s.telemetry;
        out.push_str(&format!(
            "\n[telemetry]  # {}\n",
            loaded.origin("telemetry")
        ));
        let mut t = toml::Table::new();
        if let Some(on) = tel.enabled {
            t.insert("enabled".into(), toml::Value::Boolean(on));
        }
        if let Some(endpoint) = &tel.endpoint {
            let shown = basidia_core::redact_url(endpoint);
            t.insert("endpoint".into(), toml::Value::String(shown));
        }
        if let Some(name) = &tel.service_name {
            t.insert("service_name".into(), toml::Value::String(name.clone()));
        }
        if let Some(r) = tel.sample_ratio {
            t.insert("sample_ratio".into(), toml::Value::Float(r));
        }
        t.insert(
            "timeout".into(),
            toml::Value::String(human_duration::format(tel.timeout)),
        );
        t.insert("metrics".into(), toml::Value::Boolean(tel.metrics));
        t.insert(
            "metrics_interval".into(),
            toml::Value::String(human_duration::format(tel.metrics_interval)),
        );
        out.push_str(&toml::to_string(&t).unwrap_or_default());
        if !tel.headers.is_empty() {
            // Export headers carry credentials (API keys): their names only, as an inline
            // table so that it stays in this section.
            let names: Vec<String> = tel
                .headers
                .keys()
                .map(|k| format!("{} = \"{MASK}\"", toml::Value::String(k.clone())))
                .collect();
            out.push_str(&format!("headers = {{ {} }}\n", names.join(", ")));
        }
    }
    #[cfg(feature = "auth")]
    if let Some(a) = &s.auth {
        out.push_str(&format!("\n[auth]  # {}\n", loaded.origin("auth")));
        let mut t = toml::Table::new();
        t.insert("algorithm".into(), toml::Value::String(a.algorithm.clone()));
        if a.secret.is_some() {
            t.insert(
                "secret".into(),
                toml::Value::String(crate::config::MASK.into()),
            );
        }
        for (key, path) in [("key_file", &a.key_file), ("jwks_file", &a.jwks_file)] {
            if let Some(p) = path {
                t.insert(key.into(), toml::Value::String(p.display().to_string()));
            }
        }
        for (key, value) in [("issuer", &a.issuer), ("audience", &a.audience)] {
            if let Some(v) = value {
                t.insert(key.into(), toml::Value::String(v.clone()));
            }
        }
        t.insert(
            "leeway".into(),
            toml::Value::String(human_duration::format(a.leeway)),
        );
        t.insert(
            "roles_claim".into(),
            toml::Value::String(a.roles_claim.clone()),
        );
        out.push_str(&toml::to_string(&t).unwrap_or_default());
    }
    for (name, o) in &s.services {
        let mut t = toml::Table::new();
        if let Some(v) = o.max_workers {
            t.insert("max_workers".into(), toml::Value::Integer(v as i64));
        }
        if let Some(v) = o.rpc_timeout {
            t.insert(
                "rpc_timeout".into(),
                toml::Value::String(human_duration::format(v)),
            );
        }
        if let Some(v) = o.shutdown_grace {
            t.insert(
                "shutdown_grace".into(),
                toml::Value::String(human_duration::format(v)),
            );
        }
        if let Some(v) = o.serializer {
            t.insert("serializer".into(), toml::Value::String(v.name().into()));
        }
        if let Some(v) = o.event_max_deliveries {
            t.insert(
                "event_max_deliveries".into(),
                toml::Value::Integer(v.into()),
            );
        }
        if let Some(v) = o.max_priority {
            t.insert("max_priority".into(), toml::Value::Integer(v.into()));
        }
        out.push_str(&format!(
            "\n[services.{}]  # {}\n{}",
            toml_key(name),
            loaded.origin(&format!("services.{name}")),
            toml::to_string(&t).unwrap_or_default()
        ));
    }
    for (name, value) in &s.sections {
        out.push_str(&format!("\n[{}]\n", toml_key(name)));
        let serde_json::Value::Object(map) = mask(name, value) else {
            continue;
        };
        let mut nested = toml::Table::new();
        for (k, v) in map {
            match v {
                serde_json::Value::Object(_) => {
                    nested.insert(k, json_to_toml(&v));
                }
                v => out.push_str(&format!(
                    "{} = {}  # {}\n",
                    toml_key(&k),
                    json_to_toml(&v),
                    loaded.origin(&format!("{name}.{k}"))
                )),
            }
        }
        if !nested.is_empty() {
            let mut doc = toml::Table::new();
            doc.insert(name.clone(), toml::Value::Table(nested));
            out.push_str(&toml::to_string(&doc).unwrap_or_default());
        }
    }
    out
}

fn toml_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| k.contains(w))
}

/// Masks secrets in a user section: values under secret-sounding keys, and credentials in URLs.
pub fn mask(key: &str, value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), mask(k, v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| mask(key, v)).collect()),
        Value::Null => Value::Null,
        _ if is_secret_key(key) => Value::String(MASK.into()),
        Value::String(s) if s.contains("://") => Value::String(basidia_core::redact_url(s)),
        other => other.clone(),
    }
}

fn json_to_toml(value: &serde_json::Value) -> toml::Value {
    use serde_json::Value;
    match value {
        Value::Null => toml::Value::String("null".into()),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => n
            .as_i64()
            .map(toml::Value::Integer)
            .or_else(|| n.as_f64().map(toml::Value::Float))
            .unwrap_or_else(|| toml::Value::String(n.to_string())),
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(items.iter().map(json_to_toml).collect()),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_toml(v)))
                .collect(),
        ),
    }
}

/// Durations written the way people write them: `"30s"`, `"250ms"`, `"1m30s"`, or a number of
/// seconds.
pub mod human_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// `"30s"`, `"1500ms"`.
    pub fn format(d: Duration) -> String {
        let ms = d.as_millis();
        if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }

    /// Writes the duration with [`format`].
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Writes a set duration with [`format`].
    pub fn serialize_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads `"30s"`, `"500ms"` or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        basidia_core::config::duration_serde::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"broker = "memory://"
serializer = "msgpack"
max_workers = 1
rpc_timeout = "1s"
shutdown_grace = "1s"
event_max_deliveries = 1
event_retry_delay = "1s"
event_retry_max_delay = "1s"
event_handler_timeout = "1s"
"#;

    #[test]
    fn the_profile_is_a_configuration_key() {
        let s: Settings = toml::from_str(&format!("{BASE}profile = \"release\"")).unwrap();
        assert_eq!(s.profile, Profile::Release);
        let s: Settings = toml::from_str(BASE).unwrap();
        assert_eq!(s.profile, Profile::Debug, "debug unless said otherwise");
        assert!(
            toml::from_str::<Settings>(&format!("{BASE}profile = \"fast\"")).is_err(),
            "an unknown profile is refused"
        );
        assert!(KNOWN_KEYS.contains(&"profile"));
    }
}
