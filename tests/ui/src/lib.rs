//! Nothing here: the cases are under `tests/`. Each `tests/ui/*.rs` and `tests/ui-http/*.rs` is
//! a misuse of a macro with the compiler's message expected beside it in a `.stderr` file;
//! `tests/ui/pass/*.rs` must compile. trybuild builds them against this package's
//! dev-dependencies: the facade with the memory broker and the HTTP edge, and no other backend,
//! which keeps its build short.
