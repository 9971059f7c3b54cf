//! Pool workers that die: SIGKILLed in the middle of a task (during `map`, `imap` and
//! `apply_async`) or while idle, exiting from a task, running past `task_timeout`. The
//! lost task, and only it, fails; a new worker takes the dead one's place; nothing
//! waits forever.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use multiproc::{Error, Pool, Queue, TaskError};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A task: when it has a queue, it is the victim: it sends its pid there and sleeps
/// long; otherwise it returns `x` after a short nap.
#[multiproc::worker]
fn task(job: (Option<Queue<u32>>, u64)) -> u64 {
    let (victim, x) = job;
    match victim {
        Some(q) => {
            let _ = q.put(std::process::id());
            std::thread::sleep(Duration::from_secs(30));
        }
        None => std::thread::sleep(Duration::from_millis(5)),
    }
    x
}

#[multiproc::worker]
fn fails(x: u64) -> Result<u64, String> {
    if x % 2 == 0 {
        panic!("even {x}");
    }
    Err(format!("odd {x}"))
}

#[multiproc::worker]
fn exits(code: i32) -> u64 {
    multiproc::exit(code)
}

#[multiproc::worker]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
}

/// Jobs `0..n`, job `victim` being the victim.
fn jobs(n: u64, victim: u64, q: &Queue<u32>) -> Vec<(Option<Queue<u32>>, u64)> {
    (0..n)
        .map(|i| ((i == victim).then(|| q.clone()), i))
        .collect()
}

fn is_lost_by_sigkill(e: &TaskError, pid: u32) {
    assert!(e.is_lost(), "{e}");
    assert_eq!(e.pid(), Some(pid));
    assert_eq!(e.exitcode(), Some(-9));
    assert!(e.worker_name().unwrap().starts_with("SpawnPoolWorker-"));
    assert!(
        e.to_string().contains("killed by signal 9 (SIGKILL)"),
        "{e}"
    );
}

/// Waits until the pool has `n` workers again, none of them `dead`.
fn replaced(pool: &Pool, dead: u32, n: usize) {
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let pids = pool.pids();
            pids.len() == n && !pids.contains(&dead)
        }),
        "the pool did not replace {dead}: {:?}",
        pool.pids()
    );
}

#[test]
fn sigkill_during_map_fails_only_the_lost_task() {
    let pool = Pool::new(2).unwrap();
    let q = Queue::new().unwrap();
    let r = pool.map_async::<task>(jobs(40, 7, &q)).unwrap();
    let pid = q.get().unwrap();
    sigkill(pid);
    let e = match r.get().unwrap_err() {
        Error::Task(e) => e,
        other => panic!("{other:?}"),
    };
    is_lost_by_sigkill(&e, pid);
    replaced(&pool, pid, 2);
    // The pool goes on at its size.
    assert_eq!(pool.map::<nap>([1, 2, 3]).unwrap(), [1, 2, 3]);
}

#[test]
fn sigkill_during_imap_yields_the_error_in_place_and_goes_on() {
    let pool = Pool::new(2).unwrap();
    let q = Queue::new().unwrap();
    let mut it = pool.imap::<task>(jobs(30, 5, &q)).unwrap();
    assert_eq!(it.len(), 30);
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(it.next().unwrap());
    }
    let pid = q.get().unwrap();
    sigkill(pid);
    got.extend(it);
    assert_eq!(got.len(), 30);
    for (i, r) in got.iter().enumerate() {
        match r {
            Ok(x) => assert_eq!(*x, i as u64),
            Err(e) => {
                assert_eq!(i, 5, "{e}");
                is_lost_by_sigkill(e, pid);
            }
        }
    }
    assert!(got[5].is_err());
    replaced(&pool, pid, 2);
}

#[test]
fn sigkill_during_apply_async() {
    let pool = Pool::new(2).unwrap();
    let q = Queue::new().unwrap();
    let others: Vec<_> = (0..10)
        .map(|i| pool.apply_async::<task>(((None, i),)).unwrap())
        .collect();
    let victim = pool.apply_async::<task>(((Some(q.clone()), 99),)).unwrap();
    let pid = q.get().unwrap();
    sigkill(pid);
    let e = match victim.get().unwrap_err() {
        Error::Task(e) => e,
        other => panic!("{other:?}"),
    };
    is_lost_by_sigkill(&e, pid);
    for (i, r) in others.iter().enumerate() {
        assert_eq!(r.get().unwrap(), i as u64);
    }
    replaced(&pool, pid, 2);
}

#[test]
fn sigkill_while_idle_is_replaced() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map::<nap>([1, 1]).unwrap(), [1, 1]);
    let before = pool.pids();
    for pid in &before {
        sigkill(*pid);
    }
    for pid in &before {
        replaced(&pool, *pid, 2);
    }
    assert_eq!(pool.map::<nap>(0..10).unwrap(), (0..10).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
}

#[test]
fn failing_tasks_many_times_lose_no_worker() {
    let pool = Pool::new(2).unwrap();
    let pids: HashSet<u32> = pool.pids().into_iter().collect();
    for round in 0..5 {
        let got: Vec<_> = pool.imap::<fails>(0..200).unwrap().collect();
        for (i, r) in got.iter().enumerate() {
            let e = r.as_ref().unwrap_err();
            if i % 2 == 0 {
                assert!(e.is_panic(), "round {round}: {e}");
                assert_eq!(e.message(), format!("even {i}"));
            } else {
                assert!(e.is_failed(), "round {round}: {e}");
            }
        }
    }
    assert_eq!(pool.pids().into_iter().collect::<HashSet<_>>(), pids);
}

#[test]
fn a_task_that_exits_loses_its_worker_only() {
    let pool = Pool::new(2).unwrap();
    let r = pool.apply_async::<exits>((3,)).unwrap();
    let e = match r.get().unwrap_err() {
        Error::Task(e) => e,
        other => panic!("{other:?}"),
    };
    assert!(e.is_lost(), "{e}");
    assert_eq!(e.exitcode(), Some(3));
    assert!(e.to_string().contains("exited with code 3"), "{e}");
    assert!(common::eventually(Duration::from_secs(10), || pool
        .pids()
        .len()
        == 2));
    assert_eq!(pool.map::<nap>([1, 2]).unwrap(), [1, 2]);
}

#[test]
fn task_timeout_kills_and_replaces_the_worker() {
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let got: Vec<_> = pool.imap::<nap>([10, 5_000, 10, 10]).unwrap().collect();
    let e = got[1].as_ref().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(e.to_string().contains("timed out after 300ms"), "{e}");
    assert_eq!(got[0], Ok(10));
    assert_eq!(got[2], Ok(10));
    assert_eq!(got[3], Ok(10));
    assert!(common::eventually(Duration::from_secs(10), || pool
        .pids()
        .len()
        == 2));
    assert_eq!(pool.map::<nap>([1, 2]).unwrap(), [1, 2]);
}

#[test]
fn maxtasksperchild_with_kills_keeps_going() {
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let q = Queue::new().unwrap();
    let r = pool.map_async::<task>(jobs(20, 10, &q)).unwrap();
    let pid = q.get().unwrap();
    sigkill(pid);
    assert!(r.get().is_err());
    assert_eq!(pool.map::<nap>(0..12).unwrap(), (0..12).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
}
