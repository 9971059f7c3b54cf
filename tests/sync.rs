//! Locks, semaphores, events, conditions, barriers and shared values between real
//! processes, case by case as Python's `multiprocessing` behaves. Every object reaches
//! the children as a worker argument or a `#[process]` field; outcomes are checked
//! from the parent.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::prelude::*;
use multiproc::{
    Array, Barrier, BarrierAction, BoundedSemaphore, Condition, Event, Lock, Plain, RLock,
    RawArray, RawValue, Semaphore, Value,
};
use serde::{Deserialize, Serialize};

use common::eventually;

/// Long enough for anything that should happen at all.
const LIMIT: Duration = Duration::from_secs(30);

fn join_all<R>(ps: Vec<Process<R>>) {
    for p in ps {
        assert_eq!(p.join().unwrap(), 0, "a child failed");
    }
}

/// 100 increments of a plain (non-atomic) shared integer, each under the lock.
#[multiproc::worker]
fn locked_increments(lock: Lock, counter: RawValue<u32>) {
    for _ in 0..100 {
        let _held = lock.lock().unwrap();
        let v = counter.get();
        std::hint::black_box(v);
        counter.set(v + 1);
    }
}

#[test]
fn a_lock_guards_a_counter_across_processes() {
    let lock = Lock::new().unwrap();
    let counter = RawValue::new(0u32).unwrap();
    let ps = (0..4)
        .map(|_| locked_increments::spawn(lock.clone(), counter.clone()).unwrap())
        .collect();
    join_all(ps);
    assert_eq!(counter.get(), 400);
    assert!(!lock.is_locked());
}

/// What a child sees of a lock the parent holds.
#[multiproc::worker]
fn probe_held_lock(lock: Lock, rlock: RLock) -> (bool, bool, bool, bool, String, String) {
    let start = Instant::now();
    let timed = lock.acquire_timeout(Duration::from_millis(100)).unwrap();
    let waited = start.elapsed() >= Duration::from_millis(90);
    (
        lock.try_acquire().unwrap(),
        timed,
        waited,
        rlock.try_acquire().unwrap(),
        lock.release().unwrap_err().to_string(),
        rlock.release().unwrap_err().to_string(),
    )
}

#[test]
fn a_lock_held_here_is_held_there() {
    let lock = Lock::new().unwrap();
    let rlock = RLock::new().unwrap();
    lock.acquire().unwrap();
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    let seen = probe_held_lock::spawn(lock.clone(), rlock.clone())
        .unwrap()
        .join_value()
        .unwrap();
    let me = std::process::id();
    assert_eq!(
        seen,
        (
            false,
            false,
            true,
            false,
            format!("cannot release a lock held by process {me}, not by this one"),
            "attempt to release recursive lock not owned by thread".to_owned(),
        )
    );
    lock.release().unwrap();
    rlock.release().unwrap();
    rlock.release().unwrap();
    assert!(rlock.release().is_err());
}

/// Inside the semaphore: count who is in, and remember the most at once.
#[multiproc::worker]
fn limited(sem: Semaphore, inside: RawValue<u32>, most: RawValue<u32>) {
    for _ in 0..50 {
        let _permit = sem.permit();
        let now = inside.atomic().fetch_add(1, Ordering::SeqCst) + 1;
        most.atomic().fetch_max(now, Ordering::SeqCst);
        for _ in 0..1000 {
            std::hint::spin_loop();
        }
        inside.atomic().fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn a_semaphore_limits_how_many_are_inside() {
    let sem = Semaphore::new(2).unwrap();
    let inside = RawValue::new(0u32).unwrap();
    let most = RawValue::new(0u32).unwrap();
    let ps = (0..5)
        .map(|_| limited::spawn(sem.clone(), inside.clone(), most.clone()).unwrap())
        .collect();
    join_all(ps);
    assert!(most.get() <= 2, "{} inside at once", most.get());
    assert_eq!(sem.value(), 2);
}

/// Releases a bounded semaphore the parent filled; what each release said.
#[multiproc::worker]
fn over_release(sem: BoundedSemaphore) -> (Option<String>, u32) {
    (sem.release().err().map(|e| e.to_string()), sem.value())
}

#[multiproc::worker]
fn take_permit(sem: BoundedSemaphore) -> bool {
    let got = sem.try_acquire();
    // The first permit is kept; the second is forgotten: it never comes back.
    if let Some(permit) = sem.try_permit() {
        permit.forget();
    }
    got
}

#[test]
fn a_bounded_semaphore_refuses_a_release_above_its_value() {
    let sem = BoundedSemaphore::new(2).unwrap();
    let (err, value) = over_release::spawn(sem.clone())
        .unwrap()
        .join_value()
        .unwrap();
    assert_eq!(
        err.as_deref(),
        Some("semaphore or lock released too many times")
    );
    assert_eq!(value, 2);
    sem.acquire();
    let (err, value) = over_release::spawn(sem.clone())
        .unwrap()
        .join_value()
        .unwrap();
    // Another process may give back a permit this one took.
    assert_eq!((err, value), (None, 2));
    // A child that took both permits and ended: the one it kept comes back to a waiter,
    // the forgotten one does not.
    assert!(
        take_permit::spawn(sem.clone())
            .unwrap()
            .join_value()
            .unwrap()
    );
    assert_eq!(sem.value(), 0);
    assert!(sem.acquire_timeout(LIMIT));
    assert_eq!(sem.reclaimed(), 1);
    assert!(!sem.acquire_timeout(Duration::from_millis(300)));
}

#[multiproc::worker]
fn set_after(go: Event, done: Event) {
    assert!(go.wait_timeout(LIMIT));
    done.set();
}

#[test]
fn an_event_set_in_a_child_wakes_the_parent() {
    let go = Event::new().unwrap();
    let done = Event::new().unwrap();
    let p = set_after::spawn(go.clone(), done.clone()).unwrap();
    assert!(!done.wait_timeout(Duration::from_millis(50)));
    go.set();
    assert!(done.wait_timeout(LIMIT));
    assert!(done.is_set());
    done.clear();
    assert!(!done.is_set());
    assert_eq!(p.join().unwrap(), 0);
}

/// Waits on the condition; whether it was notified (false: the timeout passed).
#[multiproc::worker]
fn cond_waiter(cond: Condition<Lock>, timeout_ms: u64) -> bool {
    let _held = cond.lock().unwrap();
    cond.wait_timeout(Duration::from_millis(timeout_ms))
        .unwrap()
}

fn waiting(cond: &Condition<Lock>, n: usize) {
    assert!(
        eventually(LIMIT, || cond.n_waiting() == n),
        "{} waiters instead of {n}",
        cond.n_waiting()
    );
}

#[test]
fn notify_wakes_exactly_n_processes() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let ps: Vec<_> = (0..6)
        .map(|_| cond_waiter::spawn(cond.clone(), 60_000).unwrap())
        .collect();
    waiting(&cond, 6);
    let held = cond.lock().unwrap();
    cond.notify_n(2).unwrap();
    assert_eq!(cond.n_waiting(), 4);
    cond.notify().unwrap();
    assert_eq!(cond.n_waiting(), 3);
    cond.notify_n(4).unwrap();
    assert_eq!(cond.n_waiting(), 0);
    cond.notify_n(3).unwrap(); // nobody left: a no-op
    drop(held);
    for p in ps {
        assert!(p.join_value().unwrap());
    }
    // notify_all, and misuse.
    let ps: Vec<_> = (0..3)
        .map(|_| cond_waiter::spawn(cond.clone(), 60_000).unwrap())
        .collect();
    waiting(&cond, 3);
    assert!(cond.notify_all().is_err()); // not holding the lock
    let held = cond.lock().unwrap();
    cond.notify_all().unwrap();
    drop(held);
    for p in ps {
        assert!(p.join_value().unwrap());
    }
}

#[test]
fn a_waiter_that_timed_out_does_not_absorb_a_notification() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let early = cond_waiter::spawn(cond.clone(), 50).unwrap();
    assert!(!early.join_value().unwrap());
    let late = cond_waiter::spawn(cond.clone(), 60_000).unwrap();
    waiting(&cond, 1);
    let held = cond.lock().unwrap();
    cond.notify().unwrap();
    drop(held);
    assert!(late.join_value().unwrap());
}

/// Python #79: waits until the shared value reaches `target`.
#[multiproc::worker]
fn wait_for_value(cond: Condition, value: RawValue<u32>, target: u32, timeout_ms: u64) -> bool {
    let _held = cond.lock().unwrap();
    cond.wait_for_timeout(|| value.get() == target, Duration::from_millis(timeout_ms))
        .unwrap()
}

#[test]
fn wait_for_is_satisfied_from_another_process() {
    let cond = Condition::new().unwrap();
    let value = RawValue::new(0u32).unwrap();
    let satisfied = wait_for_value::spawn(cond.clone(), value.clone(), 4, 60_000).unwrap();
    let unsatisfied = wait_for_value::spawn(cond.clone(), value.clone(), 5, 500).unwrap();
    assert!(eventually(LIMIT, || cond.n_waiting() == 2));
    for _ in 0..4 {
        let _held = cond.lock().unwrap();
        value.set(value.get() + 1);
        cond.notify_all().unwrap();
    }
    assert!(satisfied.join_value().unwrap());
    assert!(!unsatisfied.join_value().unwrap());
    // The predicate is checked first: true at once.
    let _held = cond.lock().unwrap();
    assert!(
        cond.wait_for_timeout(|| value.get() == 4, Duration::ZERO)
            .unwrap()
    );
}

/// Counts the passes: the action runs once per pass, in one of the parties.
#[derive(Clone, Serialize, Deserialize)]
struct CountPasses(RawValue<u32>);

impl BarrierAction for CountPasses {
    fn run(&self) {
        self.0.set(self.0.get() + 1);
    }
}

const PASSES: usize = 50;
const PARTIES: usize = 3;

/// One party: after each pass, checks that the action ran exactly once for it, and
/// marks (pass, index) in the table.
#[multiproc::worker]
fn party(barrier: Barrier<CountPasses>, passes: RawValue<u32>, seen: RawArray<u8>) {
    for pass in 0..PASSES {
        let index = barrier.wait_timeout(LIMIT).unwrap();
        // The action runs at both waits of each round.
        assert_eq!(passes.get() as usize, 2 * pass + 1);
        seen.atomic(pass * PARTIES + index)
            .unwrap()
            .fetch_add(1, Ordering::SeqCst);
        // Everyone checks before anyone starts the next pass's action.
        barrier.wait_timeout(LIMIT).unwrap();
    }
}

#[test]
fn a_barrier_passes_processes_in_lockstep() {
    let passes = RawValue::new(0u32).unwrap();
    let barrier = Barrier::with_action(PARTIES, CountPasses(passes.clone())).unwrap();
    assert_eq!(barrier.parties(), PARTIES);
    let seen = RawArray::<u8>::zeroed(PASSES * PARTIES).unwrap();
    let ps = (0..PARTIES)
        .map(|_| party::spawn(barrier.clone(), passes.clone(), seen.clone()).unwrap())
        .collect();
    join_all(ps);
    // Each pass gave each index to exactly one party; the action ran once per pass
    // (twice: the second wait of each pass counts too).
    assert!(seen.to_vec().iter().all(|&n| n == 1), "{:?}", seen.to_vec());
    assert_eq!(passes.get() as usize, 2 * PASSES);
    assert!(!barrier.is_broken());
}

#[multiproc::worker]
fn broken_wait(barrier: Barrier, timeout_ms: u64) -> bool {
    barrier
        .wait_timeout(Duration::from_millis(timeout_ms))
        .is_err()
}

#[test]
fn a_barrier_breaks_on_abort_and_timeout() {
    let barrier = Barrier::new(3).unwrap();
    let a = broken_wait::spawn(barrier.clone(), 60_000).unwrap();
    let b = broken_wait::spawn(barrier.clone(), 60_000).unwrap();
    assert!(eventually(LIMIT, || barrier.n_waiting() == 2));
    barrier.abort();
    assert!(a.join_value().unwrap());
    assert!(b.join_value().unwrap());
    assert!(barrier.is_broken());
    barrier.reset();
    // A lone party times out, which breaks it for everyone.
    let start = Instant::now();
    assert!(
        broken_wait::spawn(barrier.clone(), 200)
            .unwrap()
            .join_value()
            .unwrap()
    );
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert!(barrier.is_broken());
    assert!(barrier.wait().is_err());
}

/// Python #83: values of each type written in a child are seen by the parent.
#[multiproc::worker]
fn write_values(i: Value<i32>, d: Value<f64>, c: Value<char>, big: Value<i64>, b: Value<bool>) {
    i.set(24234);
    d.set(-4.25);
    c.set('y');
    big.set(1 << 34);
    b.set(true);
}

#[test]
fn values_written_in_a_child_are_seen_here() {
    let i = Value::new(4343i32).unwrap();
    let d = Value::new(3.625f64).unwrap();
    let c = Value::new('x').unwrap();
    let big = Value::new(1i64 << 33).unwrap();
    let b = Value::new(false).unwrap();
    write_values::spawn(i.clone(), d.clone(), c.clone(), big.clone(), b.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        (i.get(), d.get(), c.get(), big.get(), b.get()),
        (24234, -4.25, 'y', 1 << 34, true)
    );
}

#[multiproc::worker]
fn value_increments(counter: Value<u64>, atomic: Value<u64>) {
    for _ in 0..100 {
        let guard = counter.lock().unwrap();
        guard.set(guard.get() + 1);
        drop(guard);
        atomic.atomic().fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn values_count_under_their_lock_and_atomically() {
    let counter = Value::new(0u64).unwrap();
    let atomic = Value::new(0u64).unwrap();
    let ps = (0..4)
        .map(|_| value_increments::spawn(counter.clone(), atomic.clone()).unwrap())
        .collect();
    join_all(ps);
    assert_eq!((counter.get(), atomic.get()), (400, 400));
}

#[multiproc::worker]
fn prefix_sums(a: Array<i32>) -> Result<(), String> {
    let a = a.lock().map_err(|e| e.to_string())?;
    for i in 1..a.len() {
        let sum = a.get(i).map_err(|e| e.to_string())? + a.get(i - 1).map_err(|e| e.to_string())?;
        a.set(i, sum).map_err(|e| e.to_string())?;
    }
    a.get(a.len()).map(drop).map_err(|e| e.to_string())
}

#[test]
fn an_array_changed_in_a_child_is_seen_here() {
    let a = Array::from_slice(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    let p = prefix_sums::spawn(a.clone()).unwrap();
    // The child's last access was out of range: "invalid index", as an `Err`.
    match p.join_value() {
        Err(multiproc::Error::Child(err)) => assert!(
            err.error_message()
                .is_some_and(|m| m.contains("invalid index")),
            "{err}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.to_vec(), [0, 1, 3, 6, 10, 15, 21, 28, 36, 45]);
    assert_eq!(a.read(2..5).unwrap(), [3, 6, 10]);
    a.write(8, &[-1, -2]).unwrap();
    assert_eq!(a.read(7..).unwrap(), [28, -1, -2]);
    for _ in 0..3 {
        assert_eq!(Array::<f64>::zeroed(3).unwrap().to_vec(), [0.0; 3]);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[repr(C)]
struct Particle {
    position: [f32; 3],
    alive: bool,
    kind: u8,
    charge: i16,
}

#[multiproc::worker]
fn move_particles(particles: Array<Particle>) {
    let guard = particles.lock().unwrap();
    for i in 0..guard.len() {
        let mut p = guard.get(i).unwrap();
        p.position[0] += 1.0;
        p.alive = !p.alive;
        guard.set(i, p).unwrap();
    }
}

#[test]
fn plain_structs_cross_in_arrays() {
    let start = Particle {
        position: [0.5, 1.0, 2.0],
        alive: true,
        kind: 7,
        charge: -3,
    };
    let particles = Array::from_slice(&[start; 4]).unwrap();
    move_particles::spawn(particles.clone())
        .unwrap()
        .join()
        .unwrap();
    let expected = Particle {
        position: [1.5, 1.0, 2.0],
        alive: false,
        ..start
    };
    assert_eq!(particles.to_vec(), [expected; 4]);
}

/// Every primitive as a field of a `#[process]` struct.
#[multiproc::process]
struct Everything {
    lock: Lock,
    rlock: RLock,
    sem: Semaphore,
    bounded: BoundedSemaphore,
    event: Event,
    cond: Condition,
    barrier: Barrier,
    value: Value<u64>,
    raw_value: RawValue<u64>,
    array: Array<u8>,
    raw_array: RawArray<u8>,
}

impl Run for Everything {
    fn run(&mut self) {
        self.lock.acquire().unwrap();
        self.rlock.acquire().unwrap();
        self.sem.acquire();
        assert!(self.bounded.try_acquire());
        self.value.set(1);
        self.raw_value.set(2);
        self.array.set(0, 3).unwrap();
        self.raw_array.set(0, 4).unwrap();
        {
            let _held = self.cond.lock().unwrap();
            self.cond.notify().unwrap();
        }
        self.event.set();
        // The parent is the other party: it checks all the above after this pass.
        self.barrier.wait_timeout(LIMIT).unwrap();
        self.barrier.wait_timeout(LIMIT).unwrap();
        self.lock.release().unwrap();
        self.rlock.release().unwrap();
        self.sem.release().unwrap();
        self.bounded.release().unwrap();
    }
}

#[test]
fn every_primitive_crosses_as_a_process_field() {
    let it = Everything {
        lock: Lock::new().unwrap(),
        rlock: RLock::new().unwrap(),
        sem: Semaphore::new(1).unwrap(),
        bounded: BoundedSemaphore::new(1).unwrap(),
        event: Event::new().unwrap(),
        cond: Condition::new().unwrap(),
        barrier: Barrier::new(2).unwrap(),
        value: Value::new(0).unwrap(),
        raw_value: RawValue::new(0).unwrap(),
        array: Array::zeroed(1).unwrap(),
        raw_array: RawArray::zeroed(1).unwrap(),
    };
    let (lock, rlock, sem, bounded, event, barrier) = (
        it.lock.clone(),
        it.rlock.clone(),
        it.sem.clone(),
        it.bounded.clone(),
        it.event.clone(),
        it.barrier.clone(),
    );
    let (value, raw_value, array, raw_array) = (
        it.value.clone(),
        it.raw_value.clone(),
        it.array.clone(),
        it.raw_array.clone(),
    );
    let p = it.into_process();
    p.start().unwrap();
    barrier.wait_timeout(LIMIT).unwrap();
    assert!(event.is_set());
    assert!(lock.is_locked() && rlock.is_locked());
    assert_eq!((sem.value(), bounded.value()), (0, 0));
    assert_eq!(
        (
            value.get(),
            raw_value.get(),
            array.to_vec(),
            raw_array.to_vec()
        ),
        (1, 2, vec![3], vec![4])
    );
    barrier.wait_timeout(LIMIT).unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert!(!lock.is_locked() && !rlock.is_locked());
    assert_eq!((sem.value(), bounded.value()), (1, 1));
}
