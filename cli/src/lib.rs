//! The `basidia` command line as a library: its configuration flags, the projects `basidia run`
//! builds hosts for, scaffolding, and the dead-letter commands. Configuration and hosting are
//! [`basidia_runtime`]'s, the shell [`basidia_shell`]'s.

pub mod dead_letters;
pub mod flags;
pub mod project;
pub mod scaffold;
mod template;
