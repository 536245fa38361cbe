//! The Basidia shell: a small expression language for calling services and dispatching events
//! (`greeting_service.hello("World")`, `emit svc.event {...}`, `help`), evaluated against a
//! broker, with a line editor that completes services, methods and parameters from the
//! services' own descriptions.
//!
//! `basidia shell` opens it on a broker; a host that `basidia run` builds for `--shell` or
//! `--exec` links it to use it in the same process as the services (the only way to reach them
//! on the in-memory broker). A plain service host does not link it.

pub mod expr;

mod host;
mod repl;
mod session;

pub use host::host_main;
pub use repl::{exec, history_path, repl};
pub use session::{
    complete, describe_rpc_error, printable, render_description, render_value, Catalog, Output,
    Session, ShellError,
};
