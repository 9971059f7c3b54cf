//! [`Lock`] and [`LockGuard`]: the lock any thread of the holding process may release.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::attempt::{guarded, note, poisoned, raw_lock};
use crate::os::futex::{Acquired, RawLock};
use crate::os::sys;
use crate::sync::error::{LockResult, PoisonError, ReleaseError, TryLockResult};
use crate::sync::{Atomics, Shm};

/// The state of a [`Lock`] in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct LockState {
    pub(super) raw: RawLock,
    /// Non-zero once a holder died (or panicked) holding the lock, until cleared.
    pub(super) poison: AtomicU32,
}

// SAFETY: repr(C), atomics only (RawLock is three atomics).
unsafe impl Atomics for LockState {}

const _: () = assert!(std::mem::size_of::<LockState>() == 24);

/// A lock shared between processes: Python's `multiprocessing.Lock`.
///
/// Create it in one process and hand it to others as a worker argument, a
/// `#[process]` field, or through a queue or a pipe: every copy is the same lock.
/// Clones are the same lock too.
///
/// ```
/// use multiproc::Lock;
///
/// #[multiproc::worker]
/// fn report(lock: Lock, i: u32) {
///     let _guard = lock.lock().unwrap(); // released at the end of the scope
///     println!("worker {i} holds the lock");
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let lock = Lock::new()?;
///     let workers: Vec<_> = (0..3)
///         .map(|i| report::spawn(lock.clone(), i))
///         .collect::<Result<_, _>>()?;
///     for w in workers {
///         assert_eq!(w.join()?, 0);
///     }
///     Ok(())
/// }
/// ```
///
/// The lock belongs to the process that acquired it, and any of that process's threads
/// may release it (as in Python, where another thread may release a `Lock`). A process
/// that tries to acquire a lock it already holds waits for itself, as in Python: use
/// [`RLock`](crate::RLock) for re-entrant locking.
///
/// # Holders that die
///
/// When the holding process dies (killed by a signal, or ended without releasing), the
/// lock does not stay held forever: a process waiting in [`acquire`](Lock::acquire)
/// notices it (after 10 ms, then every 100 ms) and takes the lock over. It gets it
/// *poisoned*, as [`std::sync::Mutex`] reports a thread that panicked: the acquisition
/// returns [`Err(PoisonError)`](PoisonError), with the lock held, because what the lock
/// protects may be half updated. Every later acquisition reports the poisoning too,
/// until [`clear_poison`](Lock::clear_poison). A guard dropped while its thread panics
/// poisons the lock as well.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let lock = multiproc::Lock::new()?;
/// match lock.lock() {
///     Ok(guard) => drop(guard),
///     Err(poisoned) => {
///         let guard = poisoned.into_inner(); // held: repair what it protects, then
///         lock.clear_poison();
///         drop(guard);
///     }
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Caveats
///
/// - A dead holder is noticed by a *waiting* acquisition, not by
///   [`try_acquire`](Lock::try_acquire) nor by a timed one shorter than 10 ms: those
///   report the lock as held.
/// - Ownership is per process: threads of the holding process are not told apart, and
///   the death of one of its threads does not free the lock.
/// - A process is identified by its pid: if the holder dies and its pid is reused by a
///   new process before anyone waits for the lock, the lock stays held until that
///   process ends too.
/// - Each lock is one shared memory region (one page and one descriptor per process that
///   has a copy).
#[derive(Clone)]
pub struct Lock {
    pub(super) shm: Shm<LockState>,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> crate::error::Result<Lock> {
        Ok(Lock {
            shm: Shm::create("lock", 0)?,
        })
    }

    #[inline]
    pub(super) fn state(&self) -> &LockState {
        self.shm.get()
    }

    fn finish(&self, how: Acquired) -> bool {
        note(&self.state().poison, how, "a lock")
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// `Err` means acquired, but poisoned: see [the type's docs](Lock#holders-that-die).
    #[inline]
    pub fn acquire(&self) -> LockResult<()> {
        let st = self.state();
        if st.raw.try_lock() {
            return poisoned(st.poison.load(Ordering::Relaxed) != 0, ());
        }
        let how = raw_lock(&st.raw, None).unwrap_or(Acquired::Clean);
        poisoned(self.finish(how), ())
    }

    /// Acquires the lock, waiting at most `timeout`; `Ok(false)` if the timeout passed
    /// first. A zero timeout only tries.
    ///
    /// `Err` means acquired, but poisoned.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, PoisonError<()>> {
        let st = self.state();
        if st.raw.try_lock() {
            return poisoned(st.poison.load(Ordering::Relaxed) != 0, ()).map(|()| true);
        }
        match raw_lock(&st.raw, Some(sys::deadline_after(timeout))) {
            Some(how) => poisoned(self.finish(how), ()).map(|()| true),
            None => Ok(false),
        }
    }

    /// Acquires the lock if it is free; `Ok(false)` if it is held (even by a process
    /// that died: see the caveats).
    ///
    /// `Err` means acquired, but poisoned.
    pub fn try_acquire(&self) -> Result<bool, PoisonError<()>> {
        let st = self.state();
        if st.raw.try_lock() {
            poisoned(st.poison.load(Ordering::Relaxed) != 0, ()).map(|()| true)
        } else {
            Ok(false)
        }
    }

    /// Releases the lock, which this process must hold.
    ///
    /// Releasing an unlocked lock is an error, as in Python ("semaphore or lock released
    /// too many times"); so is releasing a lock another process holds.
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.state()
            .raw
            .unlock_if_mine()
            .map_err(|holder| match holder {
                None => ReleaseError::too_many(),
                Some(_) => ReleaseError::not_owner(false, holder),
            })
    }

    /// Acquires the lock and returns a guard that releases it when dropped.
    ///
    /// `Err` means acquired, but poisoned; the guard is inside.
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        let guard = LockGuard { lock: self };
        match self.acquire() {
            Ok(()) => Ok(guard),
            Err(_) => Err(PoisonError::new(guard)),
        }
    }

    /// [`lock`](Lock::lock), if the lock is free.
    pub fn try_lock(&self) -> TryLockResult<LockGuard<'_>> {
        guarded(self.try_acquire(), || LockGuard { lock: self })
    }

    /// [`lock`](Lock::lock), waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        guarded(self.acquire_timeout(timeout), || LockGuard { lock: self })
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

    /// Whether some process holds the lock now.
    pub fn is_locked(&self) -> bool {
        self.state().raw.holder().is_some()
    }

    /// The process that holds the lock now, if any.
    pub fn holder(&self) -> Option<u32> {
        self.state().raw.holder()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("holder", &self.holder())
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Lock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Lock {
            shm: Shm::deserialize(deserializer)?,
        })
    }
}

/// Holds a [`Lock`]; releases it when dropped (and poisons it if dropped while its
/// thread panics).
pub struct LockGuard<'a> {
    pub(super) lock: &'a Lock,
}

impl LockGuard<'_> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &Lock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let st = self.lock.state();
        if std::thread::panicking() {
            st.poison.store(1, Ordering::Relaxed);
        }
        // Released already by hand (and maybe taken by another process since): leave
        // it as it is.
        let _ = st.raw.unlock_if_mine();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.lock)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_basics() {
        let lock = Lock::new().unwrap();
        assert!(lock.acquire().is_ok());
        assert_eq!(lock.holder(), Some(std::process::id()));
        assert!(!lock.try_acquire().unwrap());
        let start = std::time::Instant::now();
        assert!(!lock.acquire_timeout(Duration::from_millis(50)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(45));
        lock.release().unwrap();
        let err = lock.release().unwrap_err();
        assert!(err.is_too_many());
        assert_eq!(err.to_string(), "semaphore or lock released too many times");
        {
            let _g = lock.lock().unwrap();
            assert!(lock.try_lock().unwrap_err().is_would_block());
        }
        assert!(!lock.is_locked());
    }

    #[test]
    fn another_thread_of_the_process_may_release_a_lock() {
        let lock = Lock::new().unwrap();
        lock.acquire().unwrap();
        let other = lock.clone();
        std::thread::spawn(move || other.release().unwrap())
            .join()
            .unwrap();
        assert!(!lock.is_locked());
    }

    #[test]
    fn a_guard_dropped_in_a_panic_poisons() {
        let lock = Lock::new().unwrap();
        let other = lock.clone();
        let _ = std::thread::spawn(move || {
            let _g = other.lock().unwrap();
            panic!("boom");
        })
        .join();
        assert!(lock.is_poisoned());
        let guard = lock.lock().unwrap_err().into_inner();
        lock.clear_poison();
        drop(guard);
        assert!(lock.lock().is_ok());
    }
}
