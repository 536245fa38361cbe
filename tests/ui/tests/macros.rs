//! Misuse of the macros is a compile error that points at the user's code; every accepted
//! form compiles and means what it says.

#[test]
fn macro_misuse_is_reported_at_the_right_place() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.compile_fail("tests/ui-http/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
