//! Exiting while another thread is inside the runtime: a program that returns from
//! `main`, or calls `multiproc::exit`, on one thread while another thread starts,
//! joins and lists children still exits, with its own exit code, and leaves no child
//! behind. The at-exit path joins children; it must hold no lock that the busy thread
//! may be waiting for, or that it needs from the busy thread, while it does.
//!
//! Each test runs this binary again as the program under observation (see `common`).
//! The observer makes itself a subreaper, so that a child the program left behind
//! becomes the observer's own: it can then be waited for exactly and reaped.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{helper_command, is_helper};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// How long a program may take to exit before the test calls it hung. Each round of
/// the busy thread takes a few milliseconds; this is generous on a loaded machine.
const EXIT_LIMIT: Duration = Duration::from_secs(60);

#[multiproc::worker]
fn quick() {}

/// Rounds of the busy thread completed so far.
static ROUNDS: AtomicU32 = AtomicU32::new(0);

/// Starts a thread that goes round the runtime forever: starts a child (its pid on
/// stdout), lists the active children, reads the current process, joins the child.
/// Returns once the thread has completed `rounds` rounds, so that the exit that follows
/// happens while the thread is inside the runtime, not before it got there.
fn start_busy_thread(rounds: u32) {
    std::thread::spawn(|| {
        loop {
            let p = quick::spawn().expect("a child starts");
            println!("child {}", p.pid().expect("a started child has a pid"));
            for _ in 0..20 {
                let _ = multiproc::active_children();
                let _ = multiproc::current_process();
            }
            let _ = p.join();
            ROUNDS.fetch_add(1, Ordering::SeqCst);
        }
    });
    while ROUNDS.load(Ordering::SeqCst) < rounds {
        std::thread::yield_now();
    }
}

/// The tests of this file run one at a time: each reaps every orphan that comes to it
/// as the subreaper, which must be its own program's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(fd).expect("a descriptor fits i32");
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `fd` (a pidfd) became readable, that is, its process ended, by `deadline`.
fn ended_by(fd: &OwnedFd, deadline: Instant) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Ok(_) if Instant::now() >= deadline => return false,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Reaps every child of this process that has ended; whether none is left.
fn reap_orphans() -> bool {
    loop {
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
            Ok(status) if status.pid().is_some() => {}
            Ok(_) => return false,
            Err(Errno::ECHILD) => return true,
            Err(e) => panic!("waitid: {e}"),
        }
    }
}

/// Runs helper `name` with `stderr` and returns its exit code once it ended, after
/// checking that every process it started has ended too. Kills the helper (and panics)
/// if it does not exit within [`EXIT_LIMIT`].
fn run_and_check(name: &str, stderr: Stdio) -> Option<i32> {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    nix::sys::prctl::set_child_subreaper(true).expect("become a subreaper");
    let mut program = helper_command(name)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("the helper program starts");
    let stdout = program.stdout.take().expect("a piped stdout");
    let program_pid = i32::try_from(program.id()).expect("a pid fits i32");
    let program_fd = pidfd_open(program_pid).expect("a pidfd of the helper program");
    // Count the children on a thread: a hung program never closes its stdout.
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("child "))
            .count()
    });
    let exited = ended_by(&program_fd, Instant::now() + EXIT_LIMIT);
    if !exited {
        let _ = kill(Pid::from_raw(program_pid), Signal::SIGKILL);
    }
    let status = program.wait().expect("the helper program is reaped");
    // Whatever the program left running is now this process's child (the subreaper's):
    // a child ends by itself when its parent does. Wait for that, reaping each.
    let no_orphans = common::eventually(EXIT_LIMIT, reap_orphans);
    assert!(
        exited,
        "the program did not exit within {EXIT_LIMIT:?}: deadlocked at exit"
    );
    assert!(no_orphans, "children outlived the program");
    let started = reader.join().expect("the reader thread ends");
    assert!(started > 0, "the program started no child");
    status.code()
}

/// The thread id of the thread that describes a process, once it runs.
static WRITER: AtomicI32 = AtomicI32::new(0);

/// Whether thread `tid` of this process is blocked in a `write` to stderr: the first
/// fields of `/proc/self/task/<tid>/syscall` are the syscall number and its first
/// argument.
fn blocked_writing_stderr(tid: i32) -> bool {
    let syscall =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).unwrap_or_default();
    let mut fields = syscall.split_whitespace();
    let number = fields.next().and_then(|n| n.parse::<i64>().ok());
    number == Some(nix::libc::SYS_write) && fields.next() == Some("0x2")
}

#[test]
fn exit_while_another_thread_is_stuck_describing_a_child() {
    const NAME: &str = "exit_while_another_thread_is_stuck_describing_a_child";
    if is_helper(NAME) {
        // A name longer than the pipe's atomic write, so describing the process
        // takes several writes, and a full stderr blocks one of them.
        let p = quick::process().with_name("p".repeat(8192));
        p.start().expect("a child starts");
        println!("child {}", p.pid().expect("a started child has a pid"));
        let p = Arc::new(p);
        let shared = p.clone();
        std::thread::spawn(move || {
            WRITER.store(nix::unistd::gettid().as_raw(), Ordering::SeqCst);
            // Nobody reads stderr: the pipe fills, and a write inside the description
            // blocks for good (`eprint!` writes each piece unbuffered, with no
            // newline of its own, so every write is inside `Display`).
            loop {
                eprint!("{shared}");
            }
        });
        let tid = loop {
            match WRITER.load(Ordering::SeqCst) {
                0 => std::thread::yield_now(),
                tid => break tid,
            }
        };
        while !blocked_writing_stderr(tid) {
            std::thread::yield_now();
        }
        multiproc::exit(4);
    }
    // A pipe this test never reads, so that the program's writes to it block.
    assert_eq!(run_and_check(NAME, Stdio::piped()), Some(4));
}

#[test]
fn returning_from_main_while_another_thread_starts_children() {
    const NAME: &str = "returning_from_main_while_another_thread_starts_children";
    if is_helper(NAME) {
        start_busy_thread(3);
        return; // main ends here: the exit function runs while the thread is busy
    }
    assert_eq!(run_and_check(NAME, Stdio::inherit()), Some(0));
}

#[test]
fn exit_while_another_thread_starts_children() {
    const NAME: &str = "exit_while_another_thread_starts_children";
    if is_helper(NAME) {
        start_busy_thread(3);
        multiproc::exit(7);
    }
    assert_eq!(run_and_check(NAME, Stdio::inherit()), Some(7));
}
