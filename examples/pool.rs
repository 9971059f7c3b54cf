//! The pool, as Python's `multiprocessing.Pool` is used: `map`, `imap_unordered` over a
//! few thousand tasks with a progress bar, failures as values, and a worker killed in
//! the middle of its task, which fails that task only.
//!
//! Run with `cargo run --example pool`.

use std::time::Duration;

use indicatif::ProgressIterator;
use multiproc::{Error, Pool, Queue};

#[multiproc::worker]
fn sqr(x: u64) -> u64 {
    x * x
}

/// Fails on one input in a thousand.
#[multiproc::worker]
fn check(x: u64) -> Result<u64, String> {
    if x % 1000 == 999 {
        Err(format!("{x} is unlucky"))
    } else {
        Ok(x * 2)
    }
}

/// Tells its pid, then sleeps long enough to be killed.
#[multiproc::worker]
fn victim(pids: Queue<u32>) -> u64 {
    let _ = pids.put(std::process::id());
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn main() -> multiproc::Result<()> {
    let pool = Pool::new(4)?;
    println!("pool: started {} workers", pool.processes());

    let squares = pool.map::<sqr>(0..10)?;
    println!("pool: map gave {squares:?}");

    // A progress bar over the results as they come (indicatif draws on a terminal only).
    let mut sum = 0;
    let mut failures = Vec::new();
    for result in pool.imap_unordered::<check>(0..5000)?.progress() {
        match result {
            Ok(x) => sum += x,
            Err(e) => failures.push(e),
        }
    }
    println!(
        "pool: imap_unordered gave 4995 values summing to {sum} and {} failures",
        failures.len()
    );
    if let Some(e) = failures.first() {
        println!("pool: a failure: {e}");
    }

    // map gives the first failing task's error.
    match pool.map::<check>(0..2000) {
        Err(Error::Task(e)) => println!("pool: map failed: {e}"),
        other => println!("pool: unexpected: {other:?}"),
    }

    // A worker killed mid-task: that task fails, a new worker takes its place.
    let pids = Queue::new()?;
    let lost = pool.apply_async::<victim>((pids.clone(),))?;
    let pid = pids.get()?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    match lost.get() {
        Err(Error::Task(e)) if e.is_lost() => println!("pool: killed worker reported: {e}"),
        other => println!("pool: unexpected: {other:?}"),
    }
    let after = pool.map::<sqr>(0..5)?;
    println!("pool: after the kill, map gave {after:?}");

    pool.close();
    pool.join()?;
    println!("pool: closed and joined");
    Ok(())
}
