//! Helpers shared by the integration tests.
//!
//! Some tests need a whole program whose exit, output or death they observe from the
//! outside. Such a test runs this same test binary again with `--exact <its own name>`
//! and `MULTIPROC_TEST_HELPER=<its own name>` in the environment: in that run, the test
//! plays the program (the "helper" role) instead of the observer.

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const HELPER_ENV: &str = "MULTIPROC_TEST_HELPER";

/// Whether this run of the test binary plays the helper program for test `name`.
pub fn is_helper(name: &str) -> bool {
    std::env::var(HELPER_ENV).is_ok_and(|v| v == name)
}

/// The command that runs test `name` as the helper program.
pub fn helper_command(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1", "-q"])
        .env(HELPER_ENV, name)
        .stdin(Stdio::null());
    cmd
}

/// Runs test `name` as the helper program to its end, with its output captured.
pub fn run_helper(name: &str) -> Output {
    helper_command(name)
        .output()
        .expect("the helper program runs")
}

/// The lines of `bytes` that are not libtest's own.
pub fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("running ")
                && !l.starts_with("test result:")
                && !l.starts_with("test ")
                && *l != "."
        })
        .map(str::to_owned)
        .collect()
}

/// The position of the first line equal to `line`; panics with all lines if absent.
pub fn position(lines: &[String], line: &str) -> usize {
    lines
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line {line:?} in:\n{}", lines.join("\n")))
}

/// Waits (polling, bounded by `limit`) until `done()` holds; whether it did.
pub fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// Makes descriptor `fd` of this process descriptor 3 of the child.
pub fn give_as_fd_3(cmd: &mut Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: dup2 is async-signal-safe, and this closure runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear the flag instead.
            let res = if fd == 3 {
                nix::libc::fcntl(3, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(fd, 3)
            };
            if res < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs the other tests of this test binary again, in a second run whose start method
/// is the one this run does not use (through `MULTIPROC_START_METHOD`, which the helper
/// programs of that run inherit), and fails with that run's output unless all pass. A
/// suite that has a test calling this runs under both start methods.
///
/// `this_test` is the calling test's name, left out of the second run. Does nothing in
/// a helper program or in the second run itself.
pub fn rerun_under_the_other_start_method(this_test: &str) {
    if std::env::var_os(HELPER_ENV).is_some() {
        return;
    }
    let other = match multiproc::get_start_method() {
        multiproc::StartMethod::ForkServer => multiproc::StartMethod::Spawn,
        _ => multiproc::StartMethod::ForkServer,
    };
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args(["--skip", this_test, "-q"])
        .env(multiproc::START_METHOD_ENV, other.name())
        .stdin(Stdio::null())
        .output()
        .expect("the second run starts");
    assert!(
        out.status.success(),
        "the tests failed under start method {}:\n{}\n{}",
        other.name(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
