//! Workers defined in a library crate, spawned by the tests and examples of the
//! `multiproc` package: proves that a worker's registration survives linking when the
//! binary that spawns it is a different crate.

/// Returns `a * b`, computed in the child.
#[multiproc::worker]
pub fn multiply(a: u64, b: u64) -> u64 {
    a * b
}

/// Returns the name and pid the child sees for itself.
#[multiproc::worker]
pub fn whoami() -> (String, u32) {
    let me = multiproc::current_process();
    (me.name().to_owned(), me.pid())
}
