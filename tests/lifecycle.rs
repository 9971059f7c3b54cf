//! The `Process` lifecycle on real child processes, case by case as Python's
//! `multiprocessing` behaves (exit codes, misuse errors, timeouts, names, daemons,
//! sentinels, `active_children`).
//!
//! Tests in this binary run in parallel and share this process's list of children, so
//! any case that depends on the process counter or on `active_children` runs inside a
//! worker, whose process has its own.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use multiproc::prelude::*;
use multiproc::{Error, ProcessError};
use serde::{Deserialize, Serialize};

#[multiproc::worker]
fn noop() {}

#[multiproc::worker]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[multiproc::worker]
fn exit_with(code: i32) {
    multiproc::exit(code);
}

#[multiproc::worker]
fn exit_from_thread(code: i32) {
    std::thread::spawn(move || multiproc::exit(code));
    std::thread::sleep(Duration::from_secs(30));
}

#[multiproc::worker]
fn raw_exit(code: i32) {
    // SAFETY: ends the process at once, as Python's os._exit.
    unsafe { nix::libc::_exit(code) }
}

#[multiproc::worker]
fn abort() {
    std::process::abort();
}

#[multiproc::worker]
fn boom(message: String) {
    panic!("{message}");
}

#[multiproc::worker]
fn fails(message: String) -> Result<u32, String> {
    Err(message)
}

#[multiproc::worker]
fn succeeds(x: u32) -> Result<u32, String> {
    Ok(x + 1)
}

#[multiproc::worker]
fn square(x: u64) -> u64 {
    x * x
}

type Mixed = (i32, String, Vec<i32>, (i32,), Option<f64>);

#[multiproc::worker]
fn echo(value: Mixed) -> Mixed {
    value
}

#[multiproc::worker]
fn read_stdin() -> usize {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).unwrap_or(usize::MAX)
}

/// (name, pid, parent pid, parent name, getppid, daemon, identity) as the child sees them.
#[multiproc::worker]
fn whoami() -> (String, u32, u32, String, u32, bool, Vec<u32>) {
    let me = current_process();
    let parent = parent_process().expect("a child has a parent");
    assert!(parent.is_alive());
    (
        me.name().to_owned(),
        me.pid(),
        parent.pid(),
        parent.name().to_owned(),
        std::os::unix::process::parent_id(),
        me.daemon(),
        me.identity().to_vec(),
    )
}

fn is_state_error(result: multiproc::Result<impl std::fmt::Debug>, expected: ProcessError) {
    match result {
        Err(Error::Process(e)) => assert_eq!(e, expected),
        other => panic!("expected {expected:?}, got {other:?}"),
    }
}

#[test]
fn fresh_process_is_initial() {
    let p = noop::process();
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    assert_eq!(p.pid(), None);
    assert!(p.to_string().ends_with(" initial>"), "{p}");
    let name = p.name();
    assert!(active_children().iter().all(|c| c.name() != name));
    assert!(p.name().starts_with("Process-"));
}

#[test]
fn worker_returns_normally() {
    let p = noop::spawn().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert!(p.to_string().contains("stopped exitcode=0"), "{p}");
    let name = p.name();
    assert!(active_children().iter().all(|c| c.name() != name));
}

#[test]
fn exit_codes() {
    for code in [0, 1, 7, 255] {
        let p = exit_with::spawn(code).unwrap();
        assert_eq!(p.join().unwrap(), code);
    }
    assert_eq!(exit_from_thread::spawn(5).unwrap().join().unwrap(), 5);
    assert_eq!(raw_exit::spawn(3).unwrap().join().unwrap(), 3);
    let p = abort::spawn().unwrap();
    assert_eq!(p.join().unwrap(), -6);
    assert!(p.to_string().contains("exitcode=-SIGABRT"), "{p}");
}

#[test]
fn panic_gives_exitcode_1_and_a_described_error() {
    let p = boom::spawn("boom".into()).unwrap();
    assert_eq!(p.join().unwrap(), 1);
    let Err(Error::Child(e)) = p.join_value() else {
        panic!("expected a child error")
    };
    assert!(e.is_panic());
    assert_eq!(e.panic_message(), Some("boom"));
    assert!(
        e.panic_location()
            .unwrap()
            .starts_with("tests/lifecycle.rs:"),
        "{e}"
    );
    assert_eq!(e.exitcode(), 1);
    assert_eq!(e.name(), p.name());
    assert!(e.to_string().contains("panicked"), "{e}");
}

#[test]
fn err_gives_exitcode_1_and_its_debug_text() {
    let p = fails::spawn("bad 3".into()).unwrap();
    assert_eq!(p.join().unwrap(), 1);
    let Err(Error::Child(e)) = p.join_value() else {
        panic!("expected a child error")
    };
    assert!(!e.is_panic());
    assert_eq!(e.error_message(), Some("\"bad 3\""));
    assert_eq!(succeeds::spawn(41).unwrap().join_value().unwrap(), 42);
}

#[test]
fn join_value_is_typed_and_repeatable() {
    let p = square::spawn(7).unwrap();
    assert_eq!(p.join_value().unwrap(), 49);
    assert_eq!(p.join_value().unwrap(), 49);
    let value: Mixed = (1, "str".into(), vec![1], (1,), Some(2.25));
    assert_eq!(
        echo::spawn(value.clone()).unwrap().join_value().unwrap(),
        value
    );
}

#[test]
fn join_value_without_a_value_is_an_error() {
    let p = exit_with::spawn(0).unwrap();
    let Err(Error::Child(e)) = p.join_value() else {
        panic!("expected a child error")
    };
    assert_eq!(e.exitcode(), 0);
    assert!(e.to_string().contains("without a value"), "{e}");

    let p = nap::spawn(30_000).unwrap();
    p.kill().unwrap();
    let Err(Error::Child(e)) = p.join_value() else {
        panic!("expected a child error")
    };
    assert_eq!(e.signal(), Some(9));
    assert!(e.to_string().contains("SIGKILL"), "{e}");
}

#[test]
fn terminate_and_kill() {
    let p = nap::spawn(30_000).unwrap();
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.terminate().unwrap();
    // A terminate that did nothing would show as the nap's own exit code 0, not in the
    // time the join took.
    assert_eq!(p.join().unwrap(), -15);
    assert!(p.to_string().contains("exitcode=-SIGTERM"), "{p}");
    // Signalling an ended process does nothing.
    p.terminate().unwrap();
    p.kill().unwrap();
    assert_eq!(p.exitcode(), Some(-15));

    let p = nap::spawn(30_000).unwrap();
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
}

#[test]
fn start_twice_is_an_error() {
    let p = nap::spawn(30_000).unwrap();
    is_state_error(p.start(), ProcessError::AlreadyStarted);
    p.terminate().unwrap();
    p.join().unwrap();
    is_state_error(p.start(), ProcessError::AlreadyStarted);
    assert_eq!(
        ProcessError::AlreadyStarted.to_string(),
        "cannot start a process twice"
    );
}

#[test]
fn operations_before_start() {
    let p = noop::process();
    is_state_error(p.join(), ProcessError::NotStarted("join"));
    assert_eq!(
        ProcessError::NotStarted("join").to_string(),
        "can only join a started process"
    );
    is_state_error(
        p.join_timeout(Duration::ZERO),
        ProcessError::NotStarted("join"),
    );
    is_state_error(p.terminate(), ProcessError::NotStarted("terminate"));
    is_state_error(p.kill(), ProcessError::NotStarted("kill"));
    is_state_error(p.sentinel(), ProcessError::NotStarted("watch"));
    assert!(!p.is_alive());
    assert_eq!(p.pid(), None);
}

#[test]
fn join_timeout_on_a_running_child() {
    let p = nap::process(30_000).with_daemon(true).unwrap();
    p.start().unwrap();
    let start = Instant::now();
    assert_eq!(p.join_timeout(Duration::from_millis(200)).unwrap(), None);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(190), "{waited:?}");
    // No upper bound on the time: a join that ignored its timeout would have waited
    // for the 30 s nap to end and returned `Some(0)`, not `None`.
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    let name = p.name();
    assert!(active_children().iter().any(|c| c.name() == name));

    // As above: a zero timeout that blocked would return `Some(0)` after the nap.
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    p.terminate().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(-15));
    // Joining again returns at once, any number of times.
    for _ in 0..3 {
        assert_eq!(p.join().unwrap(), -15);
        assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), Some(-15));
    }
}

#[test]
fn join_timeout_returns_when_the_child_ends() {
    let p = nap::spawn(300).unwrap();
    let start = Instant::now();
    assert_eq!(p.join_timeout(Duration::from_secs(120)).unwrap(), Some(0));
    // The child ends after 0.3 s; a join that waited for its whole timeout would take
    // 120 s. Half of that is out of reach of any load.
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn exitcode_reaps_without_join() {
    let p = noop::spawn().unwrap();
    let sentinel = p.sentinel().unwrap();
    // Wait for the exit without reaping, then read the exit code.
    assert_eq!(multiproc::wait(&[&sentinel], None).unwrap(), vec![0]);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
}

#[test]
fn close() {
    let p = nap::spawn(30_000).unwrap();
    is_state_error(p.close(), ProcessError::StillRunning);
    p.terminate().unwrap();
    p.join().unwrap();
    p.close().unwrap();
    p.close().unwrap();
    assert!(!p.is_alive());
    is_state_error(p.join(), ProcessError::Closed);
    is_state_error(p.terminate(), ProcessError::Closed);
    is_state_error(p.sentinel(), ProcessError::Closed);
    is_state_error(p.start(), ProcessError::Closed);
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), Some(-15));
    assert!(p.name().starts_with("nap") || p.name().starts_with("Process-"));
    assert!(p.to_string().contains(" closed"), "{p}");
    assert_eq!(ProcessError::Closed.to_string(), "process object is closed");

    let never = noop::process();
    never.close().unwrap();
    is_state_error(never.start(), ProcessError::Closed);
}

#[test]
fn daemon_flag() {
    let mut p = noop::process();
    assert!(!p.daemon());
    p.set_daemon(true).unwrap();
    assert!(p.daemon());
    p.start().unwrap();
    is_state_error(p.set_daemon(false), ProcessError::DaemonAfterStart);
    assert!(p.to_string().ends_with(" daemon>"), "{p}");
    p.join().unwrap();
}

#[multiproc::worker]
fn daemon_tries_to_start_a_child() -> String {
    match noop::spawn() {
        Ok(_) => "started a child".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn daemonic_processes_cannot_have_children() {
    let p = daemon_tries_to_start_a_child::process()
        .with_daemon(true)
        .unwrap();
    p.start().unwrap();
    assert_eq!(
        p.join_value().unwrap(),
        "daemonic processes are not allowed to have children"
    );
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn main_process_context() {
    let me = current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), std::process::id());
    assert!(!me.daemon());
    assert!(me.identity().is_empty());
    assert!(parent_process().is_none());
    assert!(cpu_count() >= 1);
}

#[test]
fn child_context() {
    let p = whoami::process().with_name("custom");
    p.start().unwrap();
    let (name, pid, ppid, pname, getppid, daemon, _) = p.join_value().unwrap();
    assert_eq!(name, "custom");
    assert_eq!(Some(pid), p.pid());
    assert_eq!(ppid, std::process::id());
    assert_eq!(getppid, std::process::id());
    assert_eq!(pname, "MainProcess");
    assert!(!daemon);
}

/// In a fresh process: the names of five process objects, the fourth named by hand,
/// and what two started children report as their own and their parent's names.
/// (own name, parent's name, identity) as a child reports them.
type Seen = (String, String, Vec<u32>);

#[multiproc::worker]
fn naming_scenario() -> (Vec<u32>, Vec<String>, Vec<Seen>) {
    let me = current_process();
    let first = noop::process();
    first.close().unwrap();
    let _second = noop::process();
    let _third = noop::process();
    let fourth = noop::process().with_name("custom");
    let fifth = noop::process();
    let names = vec![first.name(), fourth.name(), fifth.name()];
    let children: Vec<_> = (0..2).map(|_| whoami::spawn().unwrap()).collect();
    let seen = children
        .iter()
        .map(|c| {
            let (name, _, _, parent, _, _, ident) = c.join_value().unwrap();
            (name, parent, ident)
        })
        .collect();
    (me.identity().to_vec(), names, seen)
}

#[test]
fn default_names_count_every_process_object() {
    let p = naming_scenario::spawn().unwrap();
    let parent_name = p.name();
    let (ident, names, seen) = p.join_value().unwrap();
    let n = ident.last().copied().unwrap();
    assert_eq!(parent_name, format!("Process-{n}"));
    assert_eq!(
        names,
        vec![
            format!("Process-{n}:1"),
            "custom".to_owned(),
            format!("Process-{n}:5"),
        ]
    );
    assert_eq!(
        seen,
        vec![
            (format!("Process-{n}:6"), parent_name.clone(), vec![n, 6]),
            (format!("Process-{n}:7"), parent_name, vec![n, 7]),
        ]
    );
}

#[multiproc::process]
struct Sub {
    x: u32,
}

impl Run for Sub {
    fn run(&mut self) {
        assert!(current_process().name().starts_with("Sub-"));
        multiproc::exit(self.x as i32);
    }
}

#[test]
fn struct_processes_are_named_after_the_struct() {
    let p = Sub { x: 4 }.into_process();
    assert!(p.name().starts_with("Sub-"), "{}", p.name());
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 4);
    let q = Process::new(Sub { x: 0 });
    q.start().unwrap();
    assert_eq!(q.join().unwrap(), 0);
}

/// Starts three children that sleep, and reports `active_children` before and after
/// they end.
#[multiproc::worker]
fn active_children_scenario() -> (usize, usize, Vec<Option<i32>>) {
    let children: Vec<_> = (0..3).map(|_| nap::spawn(200).unwrap()).collect();
    let before = active_children().len();
    let sentinels: Vec<_> = children.iter().map(|c| c.sentinel().unwrap()).collect();
    for s in &sentinels {
        multiproc::wait(&[s], None).unwrap();
    }
    let after = active_children().len();
    (
        before,
        after,
        children.iter().map(Process::exitcode).collect(),
    )
}

#[test]
fn active_children_lists_running_children_and_reaps_the_rest() {
    let (before, after, codes) = active_children_scenario::spawn()
        .unwrap()
        .join_value()
        .unwrap();
    assert_eq!((before, after), (3, 0));
    assert_eq!(codes, vec![Some(0); 3]);
}

#[test]
fn sentinels_and_wait() {
    let slow = nap::spawn(30_000).unwrap();
    let fast = nap::spawn(100).unwrap();
    let also_slow = nap::spawn(30_000).unwrap();
    let s = [
        slow.sentinel().unwrap(),
        fast.sentinel().unwrap(),
        also_slow.sentinel().unwrap(),
    ];
    let all: [&dyn multiproc::Waitable; 3] = [&s[0], &s[1], &s[2]];
    assert_eq!(multiproc::wait(&all, None).unwrap(), vec![1]);
    let start = Instant::now();
    assert!(
        multiproc::wait(&[&s[0]], Some(Duration::from_millis(50)))
            .unwrap()
            .is_empty()
    );
    assert!(start.elapsed() >= Duration::from_millis(45));
    slow.terminate().unwrap();
    also_slow.terminate().unwrap();
    slow.join().unwrap();
    also_slow.join().unwrap();
    assert_eq!(
        multiproc::wait(&all, Some(Duration::ZERO)).unwrap(),
        vec![0, 1, 2]
    );
    fast.join().unwrap();
    // A sentinel outlives its closed process handle.
    fast.close().unwrap();
    assert_eq!(
        multiproc::wait(&[&s[1]], Some(Duration::ZERO)).unwrap(),
        vec![0]
    );
}

#[test]
fn many_processes() {
    let children: Vec<_> = (0..100).map(|_| nap::spawn(10).unwrap()).collect();
    for c in &children {
        assert_eq!(c.join().unwrap(), 0);
    }
    let sleepers: Vec<_> = (0..20).map(|_| nap::spawn(30_000).unwrap()).collect();
    for c in &sleepers {
        c.terminate().unwrap();
    }
    for c in &sleepers {
        assert_eq!(c.join().unwrap(), -15);
    }
}

#[test]
fn stdin_is_detached() {
    assert_eq!(read_stdin::spawn().unwrap().join_value().unwrap(), 0);
}

/// A value whose encoding fails.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unencodable)
    }
}

#[multiproc::worker]
fn takes_unencodable(_value: Unencodable) {}

#[test]
fn unencodable_arguments_fail_the_start_and_start_nothing() {
    let p = takes_unencodable::process(Unencodable);
    match p.start() {
        Err(Error::Codec(e)) => assert!(e.to_string().contains("refuses"), "{e}"),
        other => panic!("expected a codec error, got {other:?}"),
    }
    assert!(!p.is_alive());
    assert_eq!(p.pid(), None);
    let name = p.name();
    assert!(active_children().iter().all(|c| c.name() != name));
}

/// Reports every process of the tree below it, depth first, as paths of indices.
#[multiproc::worker]
fn tree(path: Vec<u32>, depth: u32) -> Vec<Vec<u32>> {
    let mut seen = vec![path.clone()];
    if depth > 0 {
        for i in 0..2 {
            let mut child = path.clone();
            child.push(i);
            seen.extend(tree::spawn(child, depth - 1).unwrap().join_value().unwrap());
        }
    }
    seen
}

#[test]
fn process_tree() {
    let seen = tree::spawn(vec![], 2).unwrap().join_value().unwrap();
    let expected: Vec<Vec<u32>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0, 1],
        vec![1],
        vec![1, 0],
        vec![1, 1],
    ];
    assert_eq!(seen, expected);
}

#[test]
fn untyped_handles_refuse_a_mistyped_value() {
    let p = nap::spawn(30_000).unwrap();
    let name = p.name();
    let untyped = active_children()
        .into_iter()
        .find(|c| c.name() == name)
        .expect("listed");
    p.terminate().unwrap();
    untyped.join().unwrap();
    assert_eq!(p.exitcode(), Some(-15));
    // A value of the wrong type is refused rather than misread.
    let typed = square::spawn(4).unwrap();
    let erased: Vec<_> = active_children()
        .into_iter()
        .filter(|c| c.name() == typed.name())
        .collect();
    for c in erased {
        is_state_error(
            c.join_value(),
            ProcessError::OutputType {
                expected: "u64",
                requested: "()",
            },
        );
    }
    assert_eq!(typed.join_value().unwrap(), 16);
}

#[multiproc::worker(name = "lifecycle::duplicate")]
fn duplicate_one() {}

#[multiproc::worker(name = "lifecycle::duplicate")]
fn duplicate_two() {}

#[test]
fn duplicate_keys_are_reported() {
    match duplicate_one::spawn() {
        Err(Error::Registry(e)) => {
            let message = e.to_string();
            assert!(message.contains("lifecycle::duplicate"), "{message}");
            assert!(message.contains("tests/lifecycle.rs:"), "{message}");
            assert!(message.contains("#[worker(name"), "{message}");
        }
        other => panic!("expected a registry error, got {other:?}"),
    }
    assert!(duplicate_two::spawn().is_err());
}

/// A worker implemented by hand and never registered.
struct Unregistered;

impl Worker for Unregistered {
    type Args = ();
    type Output = ();
    const KEY: &'static str = "lifecycle::unregistered";
    fn call((): ()) -> Result<(), multiproc::Failure> {
        Ok(())
    }
}

#[test]
fn unregistered_workers_are_reported() {
    let p = Process::from_worker::<Unregistered>(());
    match p.start() {
        Err(Error::Registry(e)) => {
            assert!(e.to_string().contains("lifecycle::unregistered"), "{e}")
        }
        other => panic!("expected a registry error, got {other:?}"),
    }
    assert!(!p.is_alive());
}

/// Every test above, again under the start method this run does not use.
#[test]
fn under_the_other_start_method() {
    common::rerun_under_the_other_start_method("under_the_other_start_method");
}
