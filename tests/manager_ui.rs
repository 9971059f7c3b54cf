//! Compile-fail tests of `#[multiproc::managed]`: each `tests/ui/managed_<rule>.rs`
//! breaks one rule, and `<rule>.stderr` holds the error a user sees. Regenerate with
//! `TRYBUILD=overwrite cargo test --test manager_ui`, then read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/managed_*.rs");
}
