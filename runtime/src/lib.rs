//! The Basidia host runtime: what a process that hosts services needs around them.
//!
//! - [`config`]: layered configuration (built-in defaults, `basidia.toml`, `BASIDIA_*`
//!   variables, command-line flags), merged with figment;
//! - [`logging`]: `tracing` to standard error, filtered by `RUST_LOG`;
//! - [`telemetry`]: traces to an OpenTelemetry collector (`[telemetry]`, `OTEL_*`);
//! - [`Hosted`]: configuration to broker to running services, and a graceful stop on Ctrl-C or
//!   SIGTERM;
//! - [`run`]: all of it as the `main` of a program of your own.
//!
//! `basidia run` builds its host on this crate; a program that hosts services without the CLI
//! needs only this and its service crates:
//!
//! ```no_run
//! fn register(runner: &mut basidia::Runner) {
//!     // runner.add::<MyService>();
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     basidia_runtime::run(register)
//! }
//! ```
//!
//! Such a program takes the flags [`USAGE`] lists (`--config`, `--broker`, `--service`, ...)
//! and reads `basidia.toml` from its working directory.

pub mod config;
pub mod logging;
pub mod telemetry;

mod args;
mod host;

pub use args::{ArgsError, HostArgs, Parsed, USAGE};
pub use basidia_alloc::Allocator;
pub use host::{
    close, command_line, host_main, run, tokio_runtime, HostError, Hosted, Registration,
};

/// `error` and its sources, joined by `: `, for a one-line message.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        // `#[error(transparent)]` and wrappers that print their source repeat it.
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
