//! Logging set-up: `tracing` events to standard error, filtered by `RUST_LOG`.

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

/// Installs a log subscriber on standard error with [`default_filter`], or `RUST_LOG` when it is
/// set. Does nothing if a subscriber is installed already.
pub fn init(quiet: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(quiet)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
    }
}
