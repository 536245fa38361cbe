//! Logging set-up: `tracing` events to standard error, as text or JSON lines (`[log] format`),
//! filtered by `RUST_LOG` or else `[log] level`.

use serde::{Deserialize, Serialize};

/// The `[log]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (the default) or `json`: one JSON object per line, with the worker's `service`,
    /// `entrypoint`, `call_id` and `trace_id` under `span` for every line a worker writes.
    pub format: LogFormat,
    /// The filter when `RUST_LOG` is not set, in `RUST_LOG`'s syntax (`debug`,
    /// `info,basidia_core=debug`); `info` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: `2026-12-01T10:00:00Z  INFO worker{service=...}: message`.
    #[default]
    Text,
    /// For log pipelines: one JSON object per line.
    Json,
}

/// Log targets of client libraries that print whole messages, headers and all (and so context
/// data such as `auth_token`), switched off by default. lapin logs every message the broker
/// returns (a call to a service nothing serves) at warn; Basidia reports those calls itself as
/// `UnknownService`.
const MESSAGE_DUMPING_TARGETS: &[&str] = &["lapin::returned_messages"];

/// The log filter used when `RUST_LOG` is not set: `info`, or `warn` when `quiet` (while the
/// shell or expressions share the terminal), with the message-dumping targets off.
pub fn default_filter(quiet: bool) -> String {
    let mut filter = String::from(if quiet { "warn" } else { "info" });
    for target in MESSAGE_DUMPING_TARGETS {
        filter.push_str(&format!(",{target}=off"));
    }
    filter
}

/// Installs a text log subscriber on standard error with [`default_filter`], or `RUST_LOG` when
/// it is set. Does nothing if a subscriber is installed already.
pub fn init(quiet: bool) {
    init_with(quiet, &LogConfig::default());
}

/// Installs a log subscriber on standard error as `config` says: its format, and its level
/// unless `RUST_LOG` is set (with the message-dumping targets off either way, unless named).
/// Does nothing if a subscriber is installed already.
pub fn init_with(quiet: bool, config: &LogConfig) {
    install(quiet, config, None);
}

/// A layer of the process's subscriber (the log lines, the trace exporter).
pub(crate) type BoxedLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Installs the log subscriber [`init_with`] describes, with `extra` beside the log lines
/// (filtered by itself, so `RUST_LOG` governs only what is written); `false` if a subscriber
/// was installed already.
pub(crate) fn install(quiet: bool, config: &LogConfig, extra: Option<BoxedLayer>) -> bool {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let text = match &config.level {
            Some(level) if !quiet => level_filter(level),
            _ => default_filter(quiet),
        };
        tracing_subscriber::EnvFilter::try_new(&text)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(quiet)))
    });
    // Colours for a terminal only: a log file, a pipe or the journal gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let lines: BoxedLayer = match config.format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    match extra {
        // Alone, the filter is the whole subscriber's: what it leaves out is not even built.
        None => tracing_subscriber::registry()
            .with(lines)
            .with(filter)
            .try_init()
            .is_ok(),
        Some(extra) => tracing_subscriber::registry()
            .with(vec![lines.with_filter(filter).boxed(), extra])
            .try_init()
            .is_ok(),
    }
}

/// `level` with the message-dumping targets off, unless it names them itself.
fn level_filter(level: &str) -> String {
    let mut filter = level.to_string();
    for target in MESSAGE_DUMPING_TARGETS {
        if !level.contains(target) {
            filter.push_str(&format!(",{target}=off"));
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_dumping_targets_are_off_by_default() {
        assert_eq!(
            super::default_filter(false),
            "info,lapin::returned_messages=off"
        );
        assert!(super::default_filter(true).starts_with("warn,"));
        assert_eq!(
            super::level_filter("debug"),
            "debug,lapin::returned_messages=off"
        );
        assert_eq!(
            super::level_filter("lapin::returned_messages=warn"),
            "lapin::returned_messages=warn"
        );
    }

    #[test]
    fn the_section_reads_with_defaults() {
        let c: super::LogConfig = serde_json::from_str(r#"{"format": "json"}"#).unwrap();
        assert_eq!(c.format, super::LogFormat::Json);
        assert_eq!(c.level, None);
        assert!(serde_json::from_str::<super::LogConfig>(r#"{"fromat": "json"}"#).is_err());
        assert!(serde_json::from_str::<super::LogConfig>(r#"{"format": "xml"}"#).is_err());
    }
}
