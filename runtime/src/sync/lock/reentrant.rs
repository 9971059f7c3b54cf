//! [`RLock`] and [`RLockGuard`]: the lock its holding thread may take again.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::attempt::{guarded, note, poisoned, raw_lock};
use crate::os::futex::{Acquired, RawLock};
use crate::os::identity::{current_pid, current_tid};
use crate::os::sys;
use crate::sync::error::{LockResult, PoisonError, ReleaseError, TryLockResult};
use crate::sync::{Atomics, Shm};

/// The state of an [`RLock`] in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RLockState {
    pub(super) raw: RawLock,
    pub(super) poison: AtomicU32,
    /// The thread of the holding process that holds it (0 while free).
    pub(super) owner_tid: AtomicU32,
    /// How many times the owner acquired it.
    pub(super) count: AtomicU32,
}

// SAFETY: repr(C), atomics only.
unsafe impl Atomics for RLockState {}

const _: () = assert!(std::mem::size_of::<RLockState>() == 32);

/// A re-entrant lock shared between processes: Python's `multiprocessing.RLock`.
///
/// The thread that holds it may acquire it again; it is free once released as many
/// times as acquired. Only the holding thread (of the holding process) may release it:
/// "attempt to release recursive lock not owned by thread" otherwise.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let lock = multiproc::RLock::new()?;
/// let outer = lock.lock().unwrap();
/// let inner = lock.lock().unwrap(); // the same thread: no deadlock
/// assert_eq!(lock.count(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(lock.release().is_err()); // not held any more
/// # Ok(())
/// # }
/// ```
///
/// # Holders that die
///
/// As for [`Lock`](crate::Lock): a waiter takes over the lock of a process that died
/// holding it, and gets it poisoned ([`PoisonError`]), with a count of one.
///
/// # Caveats
///
/// As for [`Lock`](crate::Lock); in addition, the death of the holding *thread* while
/// its process lives is not noticed: the lock stays held, as in Python. A count above
/// `u32::MAX` recursive acquisitions saturates.
#[derive(Clone)]
pub struct RLock {
    pub(super) shm: Shm<RLockState>,
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    pub fn new() -> crate::error::Result<RLock> {
        Ok(RLock {
            shm: Shm::create("rlock", 0)?,
        })
    }

    #[inline]
    pub(super) fn state(&self) -> &RLockState {
        self.shm.get()
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub(super) fn is_mine(&self, st: &RLockState) -> bool {
        st.raw.holder() == Some(current_pid())
            && st.owner_tid.load(Ordering::Relaxed) == current_tid()
    }

    /// Records the calling thread as the owner of the freshly taken lock.
    #[inline]
    pub(super) fn take(&self, st: &RLockState, how: Acquired, count: u32) -> bool {
        st.owner_tid.store(current_tid(), Ordering::Relaxed);
        st.count.store(count.max(1), Ordering::Relaxed);
        note(&st.poison, how, "a re-entrant lock")
    }

    /// Acquires again a lock this thread holds.
    fn again(st: &RLockState) -> bool {
        let count = st.count.load(Ordering::Relaxed);
        st.count.store(count.saturating_add(1), Ordering::Relaxed);
        st.poison.load(Ordering::Relaxed) != 0
    }

    /// Acquires the lock (again, if this thread holds it), waiting as long as it takes.
    ///
    /// `Err` means acquired, but poisoned.
    #[inline]
    pub fn acquire(&self) -> LockResult<()> {
        let st = self.state();
        if st.raw.try_lock() {
            return poisoned(self.take(st, Acquired::Clean, 1), ());
        }
        if self.is_mine(st) {
            return poisoned(Self::again(st), ());
        }
        let how = raw_lock(&st.raw, None).unwrap_or(Acquired::Clean);
        poisoned(self.take(st, how, 1), ())
    }

    /// Acquires the lock, waiting at most `timeout`; `Ok(false)` if the timeout passed
    /// first.
    ///
    /// `Err` means acquired, but poisoned.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, PoisonError<()>> {
        let st = self.state();
        if self.is_mine(st) {
            return poisoned(Self::again(st), ()).map(|()| true);
        }
        match raw_lock(&st.raw, Some(sys::deadline_after(timeout))) {
            Some(how) => poisoned(self.take(st, how, 1), ()).map(|()| true),
            None => Ok(false),
        }
    }

    /// Acquires the lock if it is free or held by this thread; `Ok(false)` otherwise.
    ///
    /// `Err` means acquired, but poisoned.
    pub fn try_acquire(&self) -> Result<bool, PoisonError<()>> {
        let st = self.state();
        if self.is_mine(st) {
            return poisoned(Self::again(st), ()).map(|()| true);
        }
        if st.raw.try_lock() {
            poisoned(self.take(st, Acquired::Clean, 1), ()).map(|()| true)
        } else {
            Ok(false)
        }
    }

    /// Releases the lock once; it is free when released as many times as acquired.
    ///
    /// Only the holding thread may release it.
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        let st = self.state();
        if !self.is_mine(st) {
            return Err(ReleaseError::not_owner(true, st.raw.holder()));
        }
        let count = st.count.load(Ordering::Relaxed);
        if count > 1 {
            st.count.store(count - 1, Ordering::Relaxed);
            return Ok(());
        }
        st.count.store(0, Ordering::Relaxed);
        st.owner_tid.store(0, Ordering::Relaxed);
        // This process holds it (checked above), and no other can take it meanwhile.
        st.raw.unlock();
        Ok(())
    }

    /// Acquires the lock and returns a guard that releases it (once) when dropped.
    ///
    /// `Err` means acquired, but poisoned; the guard is inside.
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        let guard = RLockGuard { lock: self };
        match self.acquire() {
            Ok(()) => Ok(guard),
            Err(_) => Err(PoisonError::new(guard)),
        }
    }

    /// [`lock`](RLock::lock), if the lock is free or held by this thread.
    pub fn try_lock(&self) -> TryLockResult<RLockGuard<'_>> {
        guarded(self.try_acquire(), || RLockGuard { lock: self })
    }

    /// [`lock`](RLock::lock), waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<RLockGuard<'_>> {
        guarded(self.acquire_timeout(timeout), || RLockGuard { lock: self })
    }

    /// Whether a holder died or panicked holding the lock since the poisoning was last
    /// cleared.
    pub fn is_poisoned(&self) -> bool {
        self.state().poison.load(Ordering::Relaxed) != 0
    }

    /// Clears the poisoning, once what the lock protects is repaired.
    pub fn clear_poison(&self) {
        self.state().poison.store(0, Ordering::Relaxed);
    }

    /// Whether some thread holds the lock now.
    pub fn is_locked(&self) -> bool {
        self.state().raw.holder().is_some()
    }

    /// The process that holds the lock now, if any.
    pub fn holder(&self) -> Option<u32> {
        self.state().raw.holder()
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned(&self) -> bool {
        self.is_mine(self.state())
    }

    /// How many times the calling thread holds the lock (0 if it does not).
    pub fn count(&self) -> u32 {
        let st = self.state();
        if self.is_mine(st) {
            st.count.load(Ordering::Relaxed).max(1)
        } else {
            0
        }
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("holder", &self.holder())
            .field("count", &self.count())
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

impl Serialize for RLock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RLock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(RLock {
            shm: Shm::deserialize(deserializer)?,
        })
    }
}

/// Holds an [`RLock`] once; releases it once when dropped (and poisons it if dropped
/// while its thread panics).
pub struct RLockGuard<'a> {
    pub(super) lock: &'a RLock,
}

impl RLockGuard<'_> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &RLock {
        self.lock
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.lock.state().poison.store(1, Ordering::Relaxed);
        }
        let _ = self.lock.release();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("lock", &self.lock)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlock_is_reentrant_per_thread() {
        let lock = RLock::new().unwrap();
        for _ in 0..3 {
            assert!(lock.acquire().is_ok());
        }
        assert_eq!(lock.count(), 3);
        let other = lock.clone();
        let seen = std::thread::spawn(move || {
            let timed = other.acquire_timeout(Duration::from_millis(30)).unwrap();
            (timed, other.release().unwrap_err().to_string())
        })
        .join()
        .unwrap();
        assert_eq!(
            seen,
            (
                false,
                "attempt to release recursive lock not owned by thread".to_owned()
            )
        );
        for _ in 0..3 {
            lock.release().unwrap();
        }
        assert!(lock.release().unwrap_err().is_not_owner());
        assert!(!lock.is_locked());
    }
}
