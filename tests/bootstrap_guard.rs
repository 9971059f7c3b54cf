//! A child never starts processes while it is being bootstrapped: code that runs
//! before its worker (here, a constructor of this test crate, which the loader runs
//! before multiproc's own) gets Python's "bootstrapping phase" error instead of
//! re-executing the program recursively.

use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

#[multiproc::worker]
fn noop() {}

/// What the early constructor saw when it tried to start a process in a child.
static EARLY_ATTEMPT: OnceLock<String> = OnceLock::new();

extern "C" fn early(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    if argc < 2 || argv.is_null() {
        return;
    }
    // SAFETY: the loader passes argc valid, NUL-terminated argument strings.
    let first = unsafe { std::ffi::CStr::from_ptr(*argv.add(1)) };
    if first.to_bytes() != b"--multiproc-child" {
        return;
    }
    let seen = match noop::spawn() {
        Ok(p) => {
            let _ = p.kill();
            format!("started {}", p.name())
        }
        Err(e) => e.to_string(),
    };
    let _ = EARLY_ATTEMPT.set(seen);
}

#[used]
#[unsafe(link_section = ".init_array")]
static EARLY: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = early;

#[multiproc::worker]
fn report_early_attempt() -> String {
    EARLY_ATTEMPT.get().cloned().unwrap_or_default()
}

#[test]
fn starting_a_process_during_the_bootstrap_is_an_error() {
    let seen = report_early_attempt::spawn().unwrap().join_value().unwrap();
    assert_eq!(
        seen,
        "an attempt has been made to start a new process before the current process \
         has finished its bootstrapping phase"
    );
    // In the top-level program the constructor did nothing, and spawning works.
    assert!(EARLY_ATTEMPT.get().is_none());
    assert_eq!(noop::spawn().unwrap().join().unwrap(), 0);
}
