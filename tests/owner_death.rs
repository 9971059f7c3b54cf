//! A process killed with SIGKILL while it holds a lock, a semaphore permit, or waits in
//! a condition or at a barrier never leaves the others blocked: they learn of the
//! death (a poisoned lock, a broken barrier) and go on. Real processes, real kills.

mod common;

use std::time::{Duration, Instant};

use multiproc::prelude::*;
use multiproc::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, WaitError};

use common::eventually;

const LIMIT: Duration = Duration::from_secs(30);

/// Kills `p` with SIGKILL and reaps it.
fn kill<R>(p: &Process<R>) {
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
}

#[multiproc::worker]
fn hold_lock(lock: Lock, ready: Event) {
    let _held = lock.lock().unwrap();
    ready.set();
    std::thread::sleep(LIMIT);
}

#[test]
fn a_lock_whose_holder_was_killed_comes_back_poisoned() {
    let lock = Lock::new().unwrap();
    let ready = Event::new().unwrap();
    let p = hold_lock::spawn(lock.clone(), ready.clone()).unwrap();
    assert!(ready.wait_timeout(LIMIT));
    assert_eq!(lock.holder(), p.pid());
    assert!(!lock.try_acquire().unwrap());
    // Killed, not yet reaped (a zombie): dead all the same.
    p.kill().unwrap();
    let start = Instant::now();
    let poisoned = lock.lock().unwrap_err();
    // The death is noticed within about 0.1 s; the bound only says "not stuck".
    assert!(start.elapsed() < LIMIT);
    assert_eq!(lock.holder(), Some(std::process::id()));
    assert!(lock.is_poisoned());
    let guard = poisoned.into_inner();
    // Still poisoned for the next one, until cleared.
    drop(guard);
    assert!(lock.acquire().is_err());
    lock.clear_poison();
    lock.release().unwrap();
    assert!(lock.lock().is_ok());
    assert_eq!(p.join().unwrap(), -9);
}

#[multiproc::worker]
fn hold_rlock(lock: RLock, ready: Event) {
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    ready.set();
    std::thread::sleep(LIMIT);
}

/// Waits for `lock` in another process; what it saw.
#[multiproc::worker]
fn wait_for_rlock(lock: RLock) -> (bool, u32) {
    let poisoned = lock.acquire_timeout(LIMIT).is_err();
    let count = lock.count();
    lock.release().unwrap();
    (poisoned, count)
}

#[test]
fn an_rlock_whose_holder_was_killed_is_taken_over_by_a_waiting_process() {
    let lock = RLock::new().unwrap();
    let ready = Event::new().unwrap();
    let holder = hold_rlock::spawn(lock.clone(), ready.clone()).unwrap();
    assert!(ready.wait_timeout(LIMIT));
    let waiter = wait_for_rlock::spawn(lock.clone()).unwrap();
    kill(&holder);
    // The waiter got it poisoned, once (not twice as the dead held it), and freed it.
    assert_eq!(waiter.join_value().unwrap(), (true, 1));
    assert!(!lock.is_locked());
    assert!(lock.is_poisoned());
    lock.clear_poison();
    assert!(lock.acquire().is_ok());
}

#[multiproc::worker]
fn hold_permit(sem: BoundedSemaphore, ready: Event) {
    sem.acquire();
    ready.set();
    std::thread::sleep(LIMIT);
}

#[multiproc::worker]
fn wait_for_permit(sem: BoundedSemaphore) -> bool {
    sem.acquire_timeout(LIMIT)
}

#[test]
fn permits_of_killed_holders_come_back() {
    let sem = BoundedSemaphore::new(2).unwrap();
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let ready = Event::new().unwrap();
            let p = hold_permit::spawn(sem.clone(), ready.clone()).unwrap();
            assert!(ready.wait_timeout(LIMIT));
            p
        })
        .collect();
    assert_eq!(sem.value(), 0);
    // A process waiting for a permit gets the one of the first holder killed.
    let waiter = wait_for_permit::spawn(sem.clone()).unwrap();
    kill(&holders[0]);
    assert!(waiter.join_value().unwrap());
    // That waiter ended holding it, and the second holder is killed too: both come back
    // to a waiter here.
    kill(&holders[1]);
    assert!(sem.acquire_timeout(LIMIT));
    assert!(sem.acquire_timeout(LIMIT));
    assert_eq!(sem.reclaimed(), 3);
    sem.release().unwrap();
    sem.release().unwrap();
    assert!(sem.release().is_err());
}

/// Waits on the condition; whether notified, or "poisoned".
#[multiproc::worker]
fn cond_wait(cond: Condition<Lock>, timeout_ms: u64) -> String {
    let _held = match cond.lock() {
        Ok(held) => held,
        Err(poisoned) => poisoned.into_inner(),
    };
    match cond.wait_timeout(Duration::from_millis(timeout_ms)) {
        Ok(notified) => format!("notified {notified}"),
        Err(WaitError::Poisoned(e)) => format!("poisoned, notified {}", e.into_inner()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_killed_waiter_does_not_absorb_a_notification() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    // The first (oldest) waiter is killed: notify must go to the second.
    let doomed = cond_wait::spawn(cond.clone(), 60_000).unwrap();
    assert!(eventually(LIMIT, || cond.n_waiting() == 1));
    let survivor = cond_wait::spawn(cond.clone(), 60_000).unwrap();
    assert!(eventually(LIMIT, || cond.n_waiting() == 2));
    kill(&doomed);
    let held = cond.lock().unwrap();
    cond.notify().unwrap();
    // The dead waiter's slot was skipped and freed; the survivor is notified.
    assert_eq!(cond.n_waiting(), 0);
    drop(held);
    assert_eq!(survivor.join_value().unwrap(), "notified true");
}

/// Takes the condition's lock, notifies, and keeps the lock until killed.
#[multiproc::worker]
fn notify_and_hold(cond: Condition<Lock>, ready: Event) {
    cond.acquire().unwrap();
    cond.notify().unwrap();
    ready.set();
    std::thread::sleep(LIMIT);
}

#[test]
fn a_waiter_reacquires_a_lock_whose_holder_was_killed_poisoned() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let waiter = cond_wait::spawn(cond.clone(), 60_000).unwrap();
    assert!(eventually(LIMIT, || cond.n_waiting() == 1));
    let ready = Event::new().unwrap();
    let holder = notify_and_hold::spawn(cond.clone(), ready.clone()).unwrap();
    assert!(ready.wait_timeout(LIMIT));
    // The waiter is notified, and waits for the lock, which the holder never releases.
    kill(&holder);
    assert_eq!(waiter.join_value().unwrap(), "poisoned, notified true");
    assert!(cond.get_lock().is_poisoned());
}

#[multiproc::worker]
fn barrier_wait(barrier: Barrier) -> bool {
    barrier.wait_timeout(LIMIT).is_ok()
}

#[test]
fn a_party_killed_at_the_barrier_breaks_it_for_the_others() {
    let barrier = Barrier::new(3).unwrap();
    let doomed = barrier_wait::spawn(barrier.clone()).unwrap();
    let other = barrier_wait::spawn(barrier.clone()).unwrap();
    assert!(eventually(LIMIT, || barrier.n_waiting() == 2));
    kill(&doomed);
    let start = Instant::now();
    assert!(!other.join_value().unwrap());
    // The other party's wait also ends in `false` when it times out, after LIMIT: a
    // broken barrier must end it well before that.
    assert!(start.elapsed() < LIMIT / 2);
    assert!(barrier.is_broken());
    assert!(barrier.wait().is_err());
    // Reset, it works again, with new parties.
    barrier.reset();
    let ps: Vec<_> = (0..2)
        .map(|_| barrier_wait::spawn(barrier.clone()).unwrap())
        .collect();
    assert!(barrier.wait_timeout(LIMIT).is_ok());
    for p in ps {
        assert!(p.join_value().unwrap());
    }
}
