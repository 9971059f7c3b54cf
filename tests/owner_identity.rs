//! A lock's holder is identified by more than its pid: a holder whose pid was reused by
//! a new process is still recognised as dead, and a holder that cannot be looked at
//! (`/proc` unreadable) is never taken for dead. Each test runs its scenario as a
//! helper program inside new namespaces (`unshare(1)`, as root), where pid reuse is
//! deterministic and `/proc` can be hidden without touching the machine; without
//! root or `unshare`, the test says why and passes.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use multiproc::Lock;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, getpid};

use common::{helper_command, is_helper, lines};

/// Long enough for any check of a dead holder (every 100 ms) to have happened many
/// times over.
const PATIENCE: Duration = Duration::from_secs(3);

/// Runs test `name` as a helper inside new namespaces (`unshare` with `args`); its
/// output lines, or `None` (after printing why) when namespaces are not available.
fn run_in_namespaces(name: &str, args: &[&str]) -> Option<Vec<String>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { nix::libc::geteuid() } != 0 {
        println!("skipped: needs root to create namespaces");
        return None;
    }
    let helper = helper_command(name);
    let mut cmd = Command::new("unshare");
    cmd.args(args)
        .arg(helper.get_program())
        .args(helper.get_args())
        .envs(helper.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => {
            println!("skipped: cannot run unshare(1): {e}");
            return None;
        }
    };
    let lines = lines(&out.stdout);
    if !lines.iter().any(|l| l == "helper started") {
        println!(
            "skipped: unshare {args:?} did not start the helper: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    assert!(
        out.status.success(),
        "helper failed: {lines:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(lines)
}

/// Forks a child that runs `f` and then `_exit`s with its result as status.
fn fork_child(f: impl FnOnce() -> i32) -> Pid {
    // SAFETY: the helper program is single-threaded (one test, `--test-threads=1`); the
    // child runs `f` and ends with `_exit`.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = f();
            // SAFETY: ends the child without the parent's at-exit work.
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// Reaps `pid`; its exit status (or -signal).
fn reap(pid: Pid) -> i32 {
    match waitpid(pid, None).expect("waitpid") {
        nix::sys::wait::WaitStatus::Exited(_, code) => code,
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => -(sig as i32),
        other => panic!("unexpected status {other:?}"),
    }
}

/// Field 22 of `/proc/<pid>/stat`: when `pid` started, in clock ticks since boot.
fn start_ticks(pid: Pid) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let (_, rest) = stat.rsplit_once(") ").expect("stat format");
    rest.split_ascii_whitespace()
        .nth(22 - 3)
        .and_then(|f| f.parse().ok())
        .expect("start time")
}

/// Clock ticks since boot now, as start times count them.
fn boot_ticks() -> u64 {
    let mut now = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to.
    let res = unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_BOOTTIME, &mut now) };
    assert_eq!(res, 0, "clock_gettime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as u64;
    now.tv_sec as u64 * hz + now.tv_nsec as u64 * hz / 1_000_000_000
}

#[test]
fn a_dead_holder_whose_pid_was_reused_is_still_taken_over() {
    const NAME: &str = "a_dead_holder_whose_pid_was_reused_is_still_taken_over";
    if is_helper(NAME) {
        println!("helper started");
        // Pid 1 of a new pid namespace, with its own /proc.
        let lock = Lock::new().expect("lock");
        // A process takes the lock and ends holding it.
        let (mut here, mut there) = UnixStream::pair().expect("socketpair");
        let dead = fork_child(|| {
            let _ = lock.acquire();
            let _ = there.write_all(b"h");
            0
        });
        here.read_exact(&mut [0]).expect("the holder ran");
        // A start time is counted in clock ticks: the new process must start on a
        // later tick than the dead one, or nothing could tell them apart.
        let started = start_ticks(dead);
        while boot_ticks() <= started + 1 {
            std::thread::yield_now();
        }
        assert_eq!(reap(dead), 0);
        assert_eq!(lock.holder(), Some(dead.as_raw() as u32));
        // The next process gets the same pid (what CRIU does to restore pids).
        std::fs::write(
            "/proc/sys/kernel/ns_last_pid",
            (dead.as_raw() - 1).to_string(),
        )
        .expect("ns_last_pid");
        let reused = fork_child(|| {
            // Up until the parent kills it.
            let _ = there.write_all(b"r");
            let _ = there.read(&mut [0]);
            0
        });
        assert_eq!(reused, dead, "the pid was not reused");
        here.read_exact(&mut [0]).expect("the new process runs");
        // A waiter sees through the reused pid: it takes over, poisoned.
        let got = lock.acquire_timeout(PATIENCE);
        println!(
            "waiter: {}",
            if got.is_err() { "taken over" } else { "not" }
        );
        kill(reused, Signal::SIGKILL).expect("kill");
        reap(reused);
        assert_eq!(getpid().as_raw(), 1);
        return;
    }
    let Some(lines) = run_in_namespaces(NAME, &["--pid", "--fork", "--mount-proc"]) else {
        return;
    };
    assert!(lines.iter().any(|l| l == "waiter: taken over"), "{lines:?}");
}

#[test]
fn an_unreadable_proc_never_lets_a_waiter_take_a_live_holders_lock() {
    const NAME: &str = "an_unreadable_proc_never_lets_a_waiter_take_a_live_holders_lock";
    if is_helper(NAME) {
        println!("helper started");
        // A private mount namespace: hide /proc under an empty tmpfs.
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "none", "/proc"])
            .status()
            .expect("mount");
        assert!(status.success(), "mount failed");
        assert!(std::fs::read_to_string("/proc/self/stat").is_err());
        let lock = Lock::new().expect("lock");
        let (mut here, mut there) = UnixStream::pair().expect("socketpair");
        let holder = fork_child(|| {
            let held = lock.acquire();
            let _ = there.write_all(if held.is_ok() { b"h" } else { b"x" });
            // Holds it until the parent kills it.
            let _ = there.read(&mut [0]);
            0
        });
        let mut byte = [0];
        here.read_exact(&mut byte).expect("the holder runs");
        assert_eq!(&byte, b"h");
        // The holder lives: the waiter must time out, whatever /proc says.
        let got = lock.acquire_timeout(PATIENCE);
        println!(
            "waiter: {}",
            match got {
                Ok(false) => "timed out",
                Ok(true) => "acquired",
                Err(_) => "taken over",
            }
        );
        kill(holder, Signal::SIGKILL).expect("kill");
        reap(holder);
        return;
    }
    let Some(lines) = run_in_namespaces(NAME, &["--mount", "--propagation", "private"]) else {
        return;
    };
    assert!(lines.iter().any(|l| l == "waiter: timed out"), "{lines:?}");
}
