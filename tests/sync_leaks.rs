//! Locks, semaphores, events, conditions, barriers and shared values leave nothing
//! behind: no descriptor or mapping once their handles are dropped, nothing in
//! `/dev/shm` or `/tmp`, no System V or named POSIX semaphore, and no shared memory
//! still referenced once every process that used them is gone, even when all of them
//! were killed with SIGKILL in the middle of using them.
//!
//! Every object is a memfd (see `SharedRegion`): it has no name anywhere, and the
//! kernel frees it with the last descriptor or mapping, that is, with the last process.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::Duration;

use common::{helper_command, is_helper, run_helper};
use multiproc::prelude::*;
use multiproc::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, RawArray, RawValue, Semaphore,
    Value,
};
use nix::sys::wait::{Id, WaitPidFlag, waitid};

const LIMIT: Duration = Duration::from_secs(30);

/// One of each object, in a struct so that it crosses in one piece.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Objects {
    lock: Lock,
    rlock: RLock,
    sem: Semaphore,
    bounded: BoundedSemaphore,
    event: Event,
    cond: Condition,
    barrier: Barrier,
    value: Value<u64>,
    raw_value: RawValue<u64>,
    array: Array<u32>,
    raw_array: RawArray<u8>,
}

impl Objects {
    fn new() -> Objects {
        Objects {
            lock: Lock::new().unwrap(),
            rlock: RLock::new().unwrap(),
            sem: Semaphore::new(2).unwrap(),
            bounded: BoundedSemaphore::new(1).unwrap(),
            event: Event::new().unwrap(),
            cond: Condition::new().unwrap(),
            barrier: Barrier::new(3).unwrap(),
            value: Value::new(0).unwrap(),
            raw_value: RawValue::new(0).unwrap(),
            array: Array::zeroed(1000).unwrap(),
            raw_array: RawArray::zeroed(1 << 20).unwrap(),
        }
    }
}

/// Uses everything, then: `hold` keeps the locks and permits and sleeps; otherwise
/// waits in the condition (`ready` is set just before, under its lock).
#[multiproc::worker]
fn user(o: Objects, ready: Event, hold: bool) {
    o.value.set(o.value.get() + 1);
    o.raw_value
        .atomic()
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    o.array.set(7, 7).unwrap();
    o.raw_array.set(1 << 19, 1).unwrap();
    if hold {
        o.lock.acquire().unwrap();
        o.rlock.acquire().unwrap();
        o.sem.acquire();
        o.bounded.acquire();
        let _value = o.value.lock().unwrap();
        ready.set();
        std::thread::sleep(LIMIT);
    } else {
        let _held = o.cond.lock().unwrap();
        ready.set();
        let _ = o.cond.wait_timeout(LIMIT);
    }
}

/// Waits at the barrier.
#[multiproc::worker]
fn barrier_party(o: Objects, ready: Event) {
    ready.set();
    let _ = o.barrier.wait_timeout(LIMIT);
}

/// The helper, killed if the observer fails half way (its children die with it).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn open_fds() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// This process's mappings of multiproc's shared memory.
fn memfd_mappings(pid: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("memfd:multiproc:"))
        .map(str::to_owned)
        .collect()
}

/// What the kernel and the file system hold that a leak would show in: `/dev/shm`
/// (named POSIX semaphores and shared memory live there), the entries of `/tmp` that
/// look like ours, and System V semaphores, shared memory and message queues.
fn named_objects() -> Vec<String> {
    let mut seen = Vec::new();
    for dir in ["/dev/shm", "/tmp"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if dir == "/dev/shm" || name.contains("multiproc") || name.starts_with("sem.") {
                    seen.push(format!("{dir}/{name}"));
                }
            }
        }
    }
    for table in ["sem", "shm", "msg"] {
        let text = std::fs::read_to_string(format!("/proc/sysvipc/{table}")).unwrap_or_default();
        // The first line is the header.
        seen.extend(text.lines().skip(1).map(|l| format!("sysv {table}: {l}")));
    }
    seen.sort();
    seen
}

#[test]
fn dropped_handles_leave_no_descriptor_or_mapping() {
    const NAME: &str = "dropped_handles_leave_no_descriptor_or_mapping";
    if is_helper(NAME) {
        // A first round, so that descriptors opened once (the runtime's own) are there
        // before the count.
        let warm = Objects::new();
        let ready = Event::new().unwrap();
        user::spawn(warm, ready, false).unwrap().kill().unwrap();
        for p in active_children() {
            p.join().unwrap();
        }
        let fds = open_fds();
        for _ in 0..3 {
            let o = Objects::new();
            let ready = Event::new().unwrap();
            let p = user::spawn(o.clone(), ready.clone(), true).unwrap();
            assert!(ready.wait_timeout(LIMIT));
            p.kill().unwrap();
            p.join().unwrap();
            assert!(o.lock.acquire().is_err()); // taken over from the dead
            assert!(o.sem.acquire_timeout(LIMIT));
        }
        assert_eq!(open_fds(), fds);
        assert_eq!(memfd_mappings("self"), Vec::<String>::new());
        println!("clean");
        return;
    }
    let before = named_objects();
    let out = run_helper(NAME);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("clean"));
    assert_eq!(named_objects(), before);
}

#[test]
fn nothing_outlives_processes_killed_in_the_middle() {
    const NAME: &str = "nothing_outlives_processes_killed_in_the_middle";
    if is_helper(NAME) {
        let o = Objects::new();
        let mut pids = Vec::new();
        // The waiter first: the holder keeps the value's lock.
        for hold in [false, true] {
            let ready = Event::new().unwrap();
            let p = user::spawn(o.clone(), ready.clone(), hold).unwrap();
            assert!(ready.wait_timeout(LIMIT));
            pids.push(p.pid().unwrap());
        }
        let ready = Event::new().unwrap();
        let p = barrier_party::spawn(o.clone(), ready.clone()).unwrap();
        assert!(ready.wait_timeout(LIMIT));
        pids.push(p.pid().unwrap());
        // This process waits too, on the semaphore: every process is in the middle.
        o.sem.acquire();
        let mut stdout = std::io::stdout().lock();
        for pid in pids.iter().chain([&std::process::id()]) {
            writeln!(stdout, "pid {pid}").unwrap();
        }
        writeln!(stdout, "ready").unwrap();
        stdout.flush().unwrap();
        drop(stdout);
        let _ = o.barrier.wait_timeout(LIMIT);
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let before = named_objects();
    let mut helper = KillOnDrop(helper_command(NAME).stdout(Stdio::piped()).spawn().unwrap());
    let mut out = BufReader::new(helper.0.stdout.take().unwrap());
    let mut pids = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the helper ended early"
        );
        match line.trim().strip_prefix("pid ") {
            Some(pid) => pids.push(pid.parse::<i32>().unwrap()),
            None if line.trim() == "ready" => break,
            None => {}
        }
    }
    // Every process maps the objects now.
    for pid in &pids {
        assert!(
            !memfd_mappings(&pid.to_string()).is_empty(),
            "process {pid} of {pids:?}: {:?} {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat")),
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        );
    }
    let pidfds: Vec<_> = pids
        .iter()
        .map(|pid| {
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
            let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, *pid, 0) };
            assert!(fd >= 0, "pidfd_open({pid})");
            // SAFETY: a fresh descriptor nothing else owns.
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) }
        })
        .collect();
    // SIGKILL to all of them at once, helper last.
    for pid in pids.iter().rev() {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGKILL)
            .unwrap();
    }
    helper.0.wait().unwrap();
    // The children come to this subreaper: reap them all.
    for fd in pidfds.iter().take(pids.len() - 1) {
        waitid(Id::PIDFd(fd.as_fd()), WaitPidFlag::WEXITED).unwrap();
    }
    // No process maps multiproc's memory any more (a zombie maps nothing), and nothing
    // with a name was ever made.
    for pid in &pids {
        assert_eq!(memfd_mappings(&pid.to_string()), Vec::<String>::new());
    }
    assert_eq!(named_objects(), before);
}
