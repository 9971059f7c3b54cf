//! [`Condition`]: a condition variable shared between processes.
//!
//! # Layout
//!
//! A [`CondState`] (the next ticket, the number of waiters, the high-water mark of the
//! table), then a table of [`CondSlot`]s, one per waiting thread: its state (the futex
//! it sleeps on), pid, thread id and ticket. `notify(n)` marks the `n` oldest waiting
//! slots notified and wakes each; a slot whose waiter is not asleep and whose process
//! is dead is freed instead and does not count, so a dead waiter absorbs nothing.
//! Every slot transition is a compare-and-swap, so that the table stays consistent even
//! when threads of one process share a [`Lock`](crate::Lock) (which does not tell them
//! apart).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{LockResult, NotifyError, PoisonError, ReleaseError, WaitError};
use super::lock::Lockable;
use super::{Atomics, Checks, Shm, passed};
use crate::os::futex::{self};
use crate::os::identity::{Liveness, current_tid, liveness, my_stamp, stamp_pid};
use crate::os::sys;
use crate::sync::RLock;

/// Bytes of a condition's region: four pages (touched only as far as waiters go).
const REGION_LEN: usize = 24576;

const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;
/// Between claiming a slot and filling it in.
const CLAIMING: u32 = 3;

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct CondState {
    next_ticket: AtomicU32,
    /// Slots in the WAITING state (a hint: notify does nothing while it is 0).
    waiting: AtomicU32,
    /// Slots at and above this index have never been used.
    hwm: AtomicU32,
    _reserved: [AtomicU32; 13],
}

// SAFETY: repr(C), atomics only.
unsafe impl Atomics for CondState {}

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct CondSlot {
    /// FREE, CLAIMING, WAITING or NOTIFIED; the futex its waiter sleeps on.
    state: AtomicU32,
    tid: AtomicU32,
    ticket: AtomicU32,
    _reserved: AtomicU32,
    /// The waiter's process, as a [`Stamp`](crate::os::identity::Stamp).
    who: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<CondSlot>() == 24);

// SAFETY: repr(C), atomics only.
unsafe impl Atomics for CondSlot {}

/// How many threads can wait on one condition at once.
#[cfg(test)]
pub(crate) const MAX_WAITERS: usize =
    (REGION_LEN - std::mem::size_of::<CondState>()) / std::mem::size_of::<CondSlot>();

/// Subtracts one, not below zero.
fn decrement(counter: &AtomicU32) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// A condition variable shared between processes: Python's
/// `multiprocessing.Condition`.
///
/// It pairs a lock ([`RLock`] by default, or a [`Lock`](crate::Lock)) with a way to
/// wait, lock released, until another process [notifies](Condition::notify) it. As in
/// Python, waiting or notifying without holding the lock is an error, and the checks go
/// in a loop around the wait ([`wait_for`](Condition::wait_for) writes the loop).
///
/// ```
/// use multiproc::{Condition, Value};
///
/// #[multiproc::worker]
/// fn producer(cond: Condition, items: Value<u32>) {
///     for _ in 0..3 {
///         let _held = cond.lock().unwrap();
///         items.set(items.get() + 1);
///         cond.notify().unwrap();
///     }
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let cond = Condition::new()?;
///     let items = Value::new(0u32)?;
///     let p = producer::spawn(cond.clone(), items.clone())?;
///     let _held = cond.lock()?;
///     cond.wait_for(|| items.get() == 3)?; // the lock is released while it waits
///     drop(_held);
///     p.join()?;
///     Ok(())
/// }
/// ```
///
/// `notify(n)` wakes exactly `n` of the threads waiting at that moment (fewer if fewer
/// wait), the longest-waiting first; a waiter whose timeout passed before the
/// notification does not absorb it.
///
/// # Waiters and notifiers that die
///
/// - A waiter that dies before being notified is skipped: the notification goes to
///   the next waiter. (A waiter notified, woken, and killed before it reacquires the
///   lock takes its notification with it, as a thread that crashes just after waking
///   would.)
/// - A process that dies holding the lock poisons it: a waiter that reacquires it gets
///   [`WaitError::Poisoned`], with the lock held and the outcome of its wait inside.
/// - A notifier killed between marking a waiter notified and waking it delays that
///   waiter by at most 100 ms (waiters look at their slot now and then).
///
/// # Caveats
///
/// - At most 1019 threads can wait on one condition at once; one more gets
///   [`WaitError::TooManyWaiters`].
/// - With a [`Lock`](crate::Lock), "holding the lock" means the calling process holds
///   it: threads of that process are not told apart.
/// - A process is identified by its pid (see [`Lock`](crate::Lock)'s caveats).
pub struct Condition<L: Lockable = RLock> {
    lock: L,
    shm: Shm<CondState>,
}

impl Condition<RLock> {
    /// A new condition over a new [`RLock`], as Python's default.
    pub fn new() -> crate::error::Result<Condition<RLock>> {
        Condition::with_lock(RLock::new()?)
    }
}

impl<L: Lockable> Condition<L> {
    /// A new condition over `lock`, which may be shared with other objects.
    pub fn with_lock(lock: L) -> crate::error::Result<Condition<L>> {
        Ok(Condition {
            lock,
            shm: Shm::create("condition", REGION_LEN - std::mem::size_of::<CondState>())?,
        })
    }

    /// The condition's lock.
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// Acquires the condition's lock (see [`Lock::acquire`](crate::Lock::acquire)).
    pub fn acquire(&self) -> LockResult<()> {
        self.lock.lock_acquire()
    }

    /// Acquires the condition's lock, waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, PoisonError<()>> {
        self.lock.lock_acquire_timeout(timeout)
    }

    /// Releases the condition's lock.
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.lock.lock_release()
    }

    /// Acquires the condition's lock and returns a guard that releases it when dropped.
    pub fn lock(&self) -> LockResult<ConditionGuard<'_, L>> {
        let guard = ConditionGuard { cond: self };
        match self.lock.lock_acquire() {
            Ok(()) => Ok(guard),
            Err(_) => Err(PoisonError::new(guard)),
        }
    }

    #[inline]
    fn state(&self) -> &CondState {
        self.shm.get()
    }

    fn slots(&self) -> &[CondSlot] {
        self.shm.table()
    }

    /// The used part of the table.
    fn used(&self) -> &[CondSlot] {
        let slots = self.slots();
        let hwm = (self.state().hwm.load(Ordering::Relaxed) as usize).min(slots.len());
        &slots[..hwm]
    }

    /// Claims a free slot (freeing the slots of dead waiters if there is none).
    fn claim(&self) -> Option<usize> {
        let st = self.state();
        let slots = self.slots();
        for attempt in 0..2 {
            let hwm = (st.hwm.load(Ordering::Relaxed) as usize).min(slots.len());
            let end = (hwm + 1).min(slots.len());
            for (i, slot) in slots[..end].iter().enumerate() {
                if slot
                    .state
                    .compare_exchange(FREE, CLAIMING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    st.hwm.fetch_max(i as u32 + 1, Ordering::Relaxed);
                    return Some(i);
                }
            }
            if attempt == 0 {
                self.free_dead();
            }
        }
        None
    }

    /// Frees the slots of waiters whose process died.
    fn free_dead(&self) {
        for slot in self.used() {
            let state = slot.state.load(Ordering::Relaxed);
            let who = slot.who.load(Ordering::Relaxed);
            if (state != WAITING && state != NOTIFIED) || stamp_pid(who) == 0 {
                continue;
            }
            if liveness(who) == Liveness::Dead
                && slot
                    .state
                    .compare_exchange(state, FREE, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                && state == WAITING
            {
                decrement(&self.state().waiting);
            }
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, WaitError<bool>> {
        if !self.lock.is_owned() {
            return Err(WaitError::NotOwned);
        }
        let st = self.state();
        let Some(i) = self.claim() else {
            return Err(WaitError::TooManyWaiters);
        };
        let slot = &self.slots()[i];
        slot.who.store(my_stamp(), Ordering::Relaxed);
        slot.tid.store(current_tid(), Ordering::Relaxed);
        slot.ticket.store(
            st.next_ticket.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        st.waiting.fetch_add(1, Ordering::Relaxed);
        slot.state.store(WAITING, Ordering::Release);

        let saved = self.lock.release_save();
        let mut checks = Checks::new();
        while slot.state.load(Ordering::Acquire) == WAITING && !passed(deadline) {
            futex::wait(&slot.state, WAITING, Some(checks.until(deadline)));
            checks.due();
        }
        let poisoned = self.lock.acquire_restore(saved);
        let notified = if slot
            .state
            .compare_exchange(WAITING, FREE, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            decrement(&st.waiting);
            false
        } else {
            slot.state
                .compare_exchange(NOTIFIED, FREE, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        };
        if poisoned {
            Err(WaitError::Poisoned(PoisonError::new(notified)))
        } else {
            Ok(notified)
        }
    }

    /// Releases the lock, waits until notified, and acquires the lock again (all
    /// levels of an [`RLock`]).
    ///
    /// Errors: the caller does not hold the lock (nothing happens), the table of
    /// waiters is full, or the lock came back poisoned (it is held).
    pub fn wait(&self) -> Result<(), WaitError<()>> {
        match self.wait_until(None) {
            Ok(_) => Ok(()),
            Err(WaitError::Poisoned(_)) => Err(WaitError::Poisoned(PoisonError::new(()))),
            Err(WaitError::NotOwned) => Err(WaitError::NotOwned),
            Err(WaitError::TooManyWaiters) => Err(WaitError::TooManyWaiters),
        }
    }

    /// [`wait`](Condition::wait), at most `timeout`; whether it was notified (`false`:
    /// the timeout passed). The lock is held again either way.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, WaitError<bool>> {
        self.wait_until(Some(sys::deadline_after(timeout)))
    }

    /// Waits until `predicate` holds, checking it first and after every wake-up, with
    /// the lock held.
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool) -> Result<(), WaitError<()>> {
        while !predicate() {
            self.wait()?;
        }
        Ok(())
    }

    /// [`wait_for`](Condition::wait_for), at most `timeout`; the predicate's last value
    /// (`false`: the timeout passed first).
    pub fn wait_for_timeout(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, WaitError<bool>> {
        let deadline = sys::deadline_after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            match self.wait_until(Some(deadline)) {
                Ok(_) => {}
                Err(WaitError::Poisoned(_)) => {
                    return Err(WaitError::Poisoned(PoisonError::new(predicate())));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Wakes one waiter, if any waits. The caller must hold the lock.
    pub fn notify(&self) -> Result<(), NotifyError> {
        self.notify_n(1)
    }

    /// Wakes every waiter. The caller must hold the lock.
    pub fn notify_all(&self) -> Result<(), NotifyError> {
        self.notify_n(usize::MAX)
    }

    /// Wakes `n` waiters (all of them if fewer wait), the longest-waiting first. The
    /// caller must hold the lock.
    pub fn notify_n(&self, n: usize) -> Result<(), NotifyError> {
        if !self.lock.is_owned() {
            return Err(NotifyError);
        }
        let st = self.state();
        let mut woken = 0;
        while woken < n && st.waiting.load(Ordering::Relaxed) > 0 {
            let next = st.next_ticket.load(Ordering::Relaxed);
            // The oldest waiting slot: the one whose ticket lies furthest behind.
            let oldest = self
                .used()
                .iter()
                .filter(|s| s.state.load(Ordering::Relaxed) == WAITING)
                .max_by_key(|s| next.wrapping_sub(s.ticket.load(Ordering::Relaxed)));
            let Some(slot) = oldest else {
                // The count said otherwise: a waiter that left, or a peer's garbage.
                st.waiting.store(0, Ordering::Relaxed);
                break;
            };
            if self.wake(slot) {
                woken += 1;
            }
        }
        Ok(())
    }

    /// Notifies the waiter of `slot`; whether it counts (false: it is gone).
    fn wake(&self, slot: &CondSlot) -> bool {
        if slot
            .state
            .compare_exchange(WAITING, NOTIFIED, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        decrement(&self.state().waiting);
        if futex::wake(&slot.state, 1) > 0 {
            return true;
        }
        // Not asleep: about to sleep, just woken, or dead.
        let who = slot.who.load(Ordering::Relaxed);
        if stamp_pid(who) != 0 && liveness(who) == Liveness::Dead {
            let _ =
                slot.state
                    .compare_exchange(NOTIFIED, FREE, Ordering::Relaxed, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// How many threads wait (a snapshot).
    pub fn n_waiting(&self) -> usize {
        self.used()
            .iter()
            .filter(|s| s.state.load(Ordering::Relaxed) == WAITING)
            .count()
    }
}

impl<L: Lockable> Clone for Condition<L> {
    fn clone(&self) -> Self {
        Condition {
            lock: self.lock.clone(),
            shm: self.shm.clone(),
        }
    }
}

impl<L: Lockable + fmt::Debug> fmt::Debug for Condition<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("waiting", &self.n_waiting())
            .finish()
    }
}

impl<L: Lockable> Serialize for Condition<L> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.lock, &self.shm).serialize(serializer)
    }
}

impl<'de, L: Lockable> Deserialize<'de> for Condition<L> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (lock, shm) = <(L, Shm<CondState>)>::deserialize(deserializer)?;
        Ok(Condition { lock, shm })
    }
}

/// Holds a [`Condition`]'s lock; releases it when dropped (and poisons it if dropped
/// while its thread panics).
pub struct ConditionGuard<'a, L: Lockable = RLock> {
    cond: &'a Condition<L>,
}

impl<L: Lockable> ConditionGuard<'_, L> {
    /// The condition whose lock this guard holds.
    pub fn condition(&self) -> &Condition<L> {
        self.cond
    }
}

impl<L: Lockable> Drop for ConditionGuard<'_, L> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.cond.lock.poison();
        }
        self.cond.lock.release_quiet();
    }
}

impl<L: Lockable> fmt::Debug for ConditionGuard<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Lock;

    #[test]
    fn misuse_is_an_error() {
        let cond = Condition::new().unwrap();
        assert!(cond.wait().unwrap_err().is_not_owned());
        assert_eq!(cond.notify().unwrap_err().to_string(), "lock is not owned");
        let _g = cond.lock().unwrap();
        assert!(!cond.wait_timeout(Duration::ZERO).unwrap());
        let start = Instant::now();
        assert!(!cond.wait_timeout(Duration::from_millis(50)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(45));
        cond.notify().unwrap();
        cond.notify_all().unwrap();
        assert_eq!(cond.n_waiting(), 0);
        const { assert!(MAX_WAITERS >= 1000) };
    }

    #[test]
    fn notify_wakes_exactly_n_threads() {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let woken = std::sync::Arc::new(AtomicU32::new(0));
        let waiters: Vec<_> = (0..6)
            .map(|_| {
                let (cond, woken) = (cond.clone(), woken.clone());
                std::thread::spawn(move || {
                    let _g = cond.lock().unwrap();
                    assert!(cond.wait_timeout(Duration::from_secs(30)).unwrap());
                    woken.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        while cond.n_waiting() < 6 {
            std::thread::yield_now();
        }
        let wait_for = |n: u32| {
            while woken.load(Ordering::SeqCst) < n {
                std::thread::yield_now();
            }
        };
        {
            let _g = cond.lock().unwrap();
            cond.notify_n(2).unwrap();
        }
        wait_for(2);
        assert_eq!(cond.n_waiting(), 4);
        {
            let _g = cond.lock().unwrap();
            cond.notify_n(4).unwrap();
            cond.notify_n(3).unwrap();
        }
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(woken.load(Ordering::SeqCst), 6);
    }
}
