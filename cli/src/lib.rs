//! The `basidia` command line as a library: its configuration flags, the projects `basidia run`
//! builds hosts for, standalone builds for deployment, scaffolding, the dead-letter commands and `basidia status`. Configuration and hosting are
//! [`basidia_runtime`]'s, the shell [`basidia_shell`]'s.

pub mod build;
pub mod dead_letters;
pub mod flags;
pub mod project;
pub mod scaffold;
pub mod status;
mod template;
