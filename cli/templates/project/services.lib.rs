//! The services of @name@. `basidia run .` hosts every service `register` adds.

pub mod @module@;

/// Adds every service of this crate to `runner`.
pub fn register(runner: &mut basidia::Runner) {
    runner.add::<@module@::@type_name@>();
    @register_marker@
}
