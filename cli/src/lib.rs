//! The `basidia` command line as a library: layered configuration, the shell's expression
//! language and REPL, the host program `basidia run` builds around service crates, and project
//! scaffolding.

pub use basidia_alloc::Allocator;

pub mod config;
pub mod dead_letters;
pub mod expr;
pub mod flags;
pub mod host;
pub mod project;
pub mod scaffold;
pub mod shell;
mod template;
