//! A parent killed with SIGKILL leaves no orphans: its children, daemonic or not, and
//! their own children end within a second.
//!
//! The observing test makes itself a subreaper, so that the orphans become its own
//! children: it can then wait for them exactly, and reap them.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{helper_command, is_helper};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

#[multiproc::worker]
fn sleep_long() {
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts a grandchild, prints its pid on stdout, then sleeps.
#[multiproc::worker]
fn middle() {
    let grandchild = sleep_long::spawn().unwrap();
    println!("{}", grandchild.pid().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

fn pidfd_open(pid: i32) -> std::os::fd::OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    assert!(fd >= 0, "pidfd_open({pid}) failed");
    // SAFETY: a fresh descriptor nothing else owns.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) }
}

#[test]
fn children_die_with_a_killed_parent() {
    const NAME: &str = "children_die_with_a_killed_parent";
    if is_helper(NAME) {
        let daemon = sleep_long::process().with_daemon(true).unwrap();
        daemon.start().unwrap();
        let worker = middle::spawn().unwrap();
        println!("{}", daemon.pid().unwrap());
        println!("{}", worker.pid().unwrap());
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let mut parent = helper_command(NAME).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(parent.stdout.take().unwrap());
    let mut pids = Vec::new();
    let mut line = String::new();
    while pids.len() < 3 {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the helper ended early"
        );
        if let Ok(pid) = line.trim().parse::<i32>() {
            pids.push(pid);
        }
    }
    // While the parent lives, so do its children.
    let pidfds: Vec<_> = pids.iter().map(|pid| pidfd_open(*pid)).collect();
    for fd in &pidfds {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        assert_eq!(
            poll(&mut p, PollTimeout::ZERO).unwrap(),
            0,
            "a child ended early"
        );
    }

    parent.kill().unwrap();
    parent.wait().unwrap();
    let killed = Instant::now();
    for (pid, fd) in pids.iter().zip(&pidfds) {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let left = Duration::from_secs(1).saturating_sub(killed.elapsed());
        let timeout = PollTimeout::try_from(left).unwrap();
        assert_eq!(
            poll(&mut p, timeout).unwrap(),
            1,
            "process {pid} outlived its parent by 1 s"
        );
        // Orphans come to the subreaper: reap them, leaving no zombie.
        let status = waitid(Id::PIDFd(fd.as_fd()), WaitPidFlag::WEXITED).unwrap();
        assert!(
            matches!(status, WaitStatus::Signaled(p, nix::sys::signal::SIGKILL, _) if p == Pid::from_raw(*pid)),
            "{status:?}"
        );
    }
}

/// Every test above, again under the start method this run does not use.
#[test]
fn under_the_other_start_method() {
    common::rerun_under_the_other_start_method("under_the_other_start_method");
}
