//! Compile-fail tests of `#[multiproc::worker]`, `#[multiproc::process]` and
//! `#[derive(multiproc::Plain)]`: each
//! `tests/ui/<rule>.rs` breaks one rule, and `<rule>.stderr` holds the error a user
//! sees. Regenerate with `TRYBUILD=overwrite cargo test --test ui`, then read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/worker_*.rs");
    t.compile_fail("tests/ui/process_*.rs");
    t.compile_fail("tests/ui/plain_*.rs");
    t.pass("tests/ui/pass_*.rs");
}
