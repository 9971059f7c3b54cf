//! What a whole program shows from the outside: its exit, the exit of its children,
//! the log lines of both, and what children print. Each test runs this binary again
//! as the program under observation (see `common`).

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use common::{is_helper, lines, position, run_helper};
use multiproc::prelude::*;

#[multiproc::worker]
fn nap_then_print(ms: u64, text: String) {
    std::thread::sleep(Duration::from_millis(ms));
    println!("{text}");
}

#[multiproc::worker]
fn print_no_newline(text: String) {
    print!("{text}");
}

#[multiproc::worker]
fn worker_got(x: u32) {
    println!("worker got {x}");
}

#[multiproc::worker]
fn boom() {
    panic!("boom");
}

/// Writes one byte to `fd` (a pipe inherited from the parent), then sleeps.
#[multiproc::worker]
fn signal_ready_then_sleep(fd: RawFd) {
    // SAFETY: the test hands this process the write end of its pipe as `fd`.
    let mut ready = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ready.write_all(b"r").unwrap();
    drop(ready);
    std::thread::sleep(Duration::from_secs(30));
}

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn at_exit_daemons_are_terminated_and_others_joined() {
    const NAME: &str = "at_exit_daemons_are_terminated_and_others_joined";
    if is_helper(NAME) {
        log_to_stderr(log::LevelFilter::Info);
        let d = nap_then_print::process(30_000, "daemon done".into())
            .with_name("the-daemon")
            .with_daemon(true)
            .unwrap();
        let n = nap_then_print::process(300, "non-daemon done".into()).with_name("the-worker");
        d.start().unwrap();
        n.start().unwrap();
        println!("pids {} {}", d.pid().unwrap(), n.pid().unwrap());
        return; // main ends here: the exit function takes over
    }
    let start = Instant::now();
    let out = run_helper(NAME);
    assert!(out.status.success(), "{out:?}");
    assert!(start.elapsed() >= Duration::from_millis(290));
    let stdout = lines(&out.stdout);
    let stderr = lines(&out.stderr);
    assert!(stdout.contains(&"non-daemon done".to_owned()), "{stdout:?}");
    assert!(!stdout.contains(&"daemon done".to_owned()), "{stdout:?}");
    let shutting = position(&stderr, "[INFO/MainProcess] process shutting down");
    let terminate = position(
        &stderr,
        "[INFO/MainProcess] calling terminate() for daemon the-daemon",
    );
    let join_w = position(
        &stderr,
        "[INFO/MainProcess] calling join() for process the-worker",
    );
    assert!(shutting < terminate && terminate < join_w, "{stderr:#?}");
    // As in Python, the daemon is joined too if it is still listed after the signal;
    // if it already ended, the second `active_children()` reaped it and skips it.
    if let Some(join_d) = stderr
        .iter()
        .position(|l| l == "[INFO/MainProcess] calling join() for process the-daemon")
    {
        assert!(terminate < join_d, "{stderr:#?}");
    }
    let pids: Vec<i32> = stdout
        .iter()
        .find_map(|l| l.strip_prefix("pids "))
        .expect("pids line")
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    for pid in pids {
        assert!(!pid_alive(pid), "child {pid} outlived its parent");
    }
}

#[test]
fn exit_status_is_the_parents_own_and_children_are_joined_first() {
    const NAME: &str = "exit_status_is_the_parents_own_and_children_are_joined_first";
    if is_helper(NAME) {
        nap_then_print::spawn(200, "child finished".into()).unwrap();
        multiproc::exit(3);
    }
    let out = run_helper(NAME);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(lines(&out.stdout).contains(&"child finished".to_owned()));
}

#[test]
fn a_panicking_parent_still_joins_its_children() {
    const NAME: &str = "a_panicking_parent_still_joins_its_children";
    if is_helper(NAME) {
        nap_then_print::spawn(200, "child finished".into()).unwrap();
        panic!("the parent fails");
    }
    let out = run_helper(NAME);
    assert_eq!(out.status.code(), Some(101), "{out:?}");
    assert!(lines(&out.stdout).contains(&"child finished".to_owned()));
}

#[test]
fn debug_trace_of_a_child_reads_like_pythons() {
    const NAME: &str = "debug_trace_of_a_child_reads_like_pythons";
    if is_helper(NAME) {
        log_to_stderr(log::LevelFilter::Debug);
        let p = worker_got::spawn(42).unwrap();
        p.join().unwrap();
        return;
    }
    let out = run_helper(NAME);
    assert!(out.status.success(), "{out:?}");
    assert!(lines(&out.stdout).contains(&"worker got 42".to_owned()));
    let expected = [
        "[INFO/Process-1] child process calling self.run()",
        "[INFO/Process-1] process shutting down",
        "[DEBUG/Process-1] running all \"atexit\" finalizers with priority >= 0",
        "[DEBUG/Process-1] running the remaining \"atexit\" finalizers",
        "[INFO/Process-1] process exiting with exitcode 0",
        "[INFO/MainProcess] process shutting down",
        "[DEBUG/MainProcess] running all \"atexit\" finalizers with priority >= 0",
        "[DEBUG/MainProcess] running the remaining \"atexit\" finalizers",
    ];
    assert_eq!(lines(&out.stderr), expected);
}

#[test]
fn info_level_shows_only_info_lines() {
    const NAME: &str = "info_level_shows_only_info_lines";
    if is_helper(NAME) {
        log_to_stderr(log::LevelFilter::Info);
        worker_got::spawn(42).unwrap().join().unwrap();
        return;
    }
    let out = run_helper(NAME);
    assert!(out.status.success(), "{out:?}");
    let expected = [
        "[INFO/Process-1] child process calling self.run()",
        "[INFO/Process-1] process shutting down",
        "[INFO/Process-1] process exiting with exitcode 0",
        "[INFO/MainProcess] process shutting down",
    ];
    assert_eq!(lines(&out.stderr), expected);
}

#[test]
fn panic_report_follows_the_shutdown_lines() {
    const NAME: &str = "panic_report_follows_the_shutdown_lines";
    if is_helper(NAME) {
        log_to_stderr(log::LevelFilter::Debug);
        assert_eq!(boom::spawn().unwrap().join().unwrap(), 1);
        return;
    }
    let out = run_helper(NAME);
    assert!(out.status.success(), "{out:?}");
    let stderr = lines(&out.stderr);
    let run = position(&stderr, "[INFO/Process-1] child process calling self.run()");
    let last_finalizers = position(
        &stderr,
        "[DEBUG/Process-1] running the remaining \"atexit\" finalizers",
    );
    let header = position(&stderr, "Process Process-1:");
    let message = position(&stderr, "boom");
    let exiting = position(&stderr, "[INFO/Process-1] process exiting with exitcode 1");
    assert!(run < last_finalizers, "{stderr:#?}");
    assert!(
        last_finalizers < header && header < message && message < exiting,
        "{stderr:#?}"
    );
    assert!(
        stderr[header + 1].starts_with("panicked at tests/exit.rs:"),
        "{stderr:#?}"
    );
}

#[test]
fn a_terminated_child_logs_only_its_start() {
    const NAME: &str = "a_terminated_child_logs_only_its_start";
    if is_helper(NAME) {
        log_to_stderr(log::LevelFilter::Debug);
        let (read, write) = nix::unistd::pipe().unwrap();
        let p = signal_ready_then_sleep::spawn(write.as_raw_fd()).unwrap();
        drop(write);
        let mut byte = [0u8; 1];
        std::fs::File::from(read).read_exact(&mut byte).unwrap();
        p.terminate().unwrap();
        assert_eq!(p.join().unwrap(), -15);
        return;
    }
    let out = run_helper(NAME);
    assert!(out.status.success(), "{out:?}");
    let child_lines: Vec<String> = lines(&out.stderr)
        .into_iter()
        .filter(|l| l.contains("/Process-1]"))
        .collect();
    assert_eq!(
        child_lines,
        ["[INFO/Process-1] child process calling self.run()"]
    );
}

#[test]
fn without_a_logger_the_runtime_prints_nothing_of_its_own() {
    const NAME: &str = "without_a_logger_the_runtime_prints_nothing_of_its_own";
    if is_helper(NAME) {
        worker_got::spawn(42).unwrap().join().unwrap();
        assert_eq!(boom::spawn().unwrap().join().unwrap(), 1);
        return;
    }
    let out = run_helper(NAME);
    assert!(out.status.success(), "{out:?}");
    let stderr = lines(&out.stderr);
    assert!(stderr.iter().all(|l| !l.starts_with('[')), "{stderr:#?}");
    // The panic report is not a log line: it is always printed.
    position(&stderr, "Process Process-2:");
}

#[test]
fn children_share_stdout_and_flush_it_at_exit() {
    const NAME: &str = "children_share_stdout_and_flush_it_at_exit";
    if is_helper(NAME) {
        print_no_newline::spawn("unflushed text".into())
            .unwrap()
            .join()
            .unwrap();
        return;
    }
    let out = run_helper(NAME);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unflushed text"),
        "{out:?}"
    );
}

/// Every test above, again under the start method this run does not use.
#[test]
fn under_the_other_start_method() {
    common::rerun_under_the_other_start_method("under_the_other_start_method");
}
