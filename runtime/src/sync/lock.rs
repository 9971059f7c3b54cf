//! [`Lock`] and [`RLock`]: locks shared between processes, robust to the death of
//! their holder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{LockResult, PoisonError, ReleaseError, TryLockError, TryLockResult};
use super::{Atomics, Shm};
use crate::os::futex::{Acquired, RawLock};
use crate::os::identity::{current_pid, current_tid};
use crate::os::shm::SharedRegion;
use crate::os::sys;

/// The state of a [`Lock`] in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct LockState {
    raw: RawLock,
    /// Non-zero once a holder died (or panicked) holding the lock, until cleared.
    poison: AtomicU32,
}

// SAFETY: repr(C), two atomics (RawLock is one AtomicU32).
unsafe impl Atomics for LockState {}

/// The state of an [`RLock`] in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RLockState {
    raw: RawLock,
    poison: AtomicU32,
    /// The thread of the holding process that holds it (0 while free).
    owner_tid: AtomicU32,
    /// How many times the owner acquired it.
    count: AtomicU32,
}

// SAFETY: repr(C), four atomics.
unsafe impl Atomics for RLockState {}

/// Takes `raw`, waiting until `deadline` (`None`: as long as it takes). Callers have
/// tried `try_lock` already; `RawLock::lock` tries again before it spins.
#[cold]
fn raw_lock(raw: &RawLock, deadline: Option<std::time::Instant>) -> Option<Acquired> {
    loop {
        match raw.lock(deadline) {
            Some(how) => return Some(how),
            // Without a deadline `lock` always returns the lock; keep waiting if not.
            None if deadline.is_none() => continue,
            None => return None,
        }
    }
}

/// Marks `poison` when the lock came from a holder that died, and reports it.
#[inline]
fn note(poison: &AtomicU32, how: Acquired, what: &str) -> bool {
    if how == Acquired::OwnerDied {
        poison.store(1, Ordering::Relaxed);
        log::warn!("a process died holding {what}: this process takes it over, poisoned");
    }
    poison.load(Ordering::Relaxed) != 0
}

fn poisoned<T>(is_poisoned: bool, value: T) -> LockResult<T> {
    if is_poisoned {
        Err(PoisonError::new(value))
    } else {
        Ok(value)
    }
}

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
/// [`RLock`] for re-entrant locking.
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
    shm: Shm<LockState>,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> crate::error::Result<Lock> {
        Ok(Lock {
            shm: Shm::create("lock", 0)?,
        })
    }

    #[inline]
    fn state(&self) -> &LockState {
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
    lock: &'a Lock,
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
/// As for [`Lock`]: a waiter takes over the lock of a process that died holding it, and
/// gets it poisoned ([`PoisonError`]), with a count of one.
///
/// # Caveats
///
/// As for [`Lock`]; in addition, the death of the holding *thread* while its process
/// lives is not noticed: the lock stays held, as in Python. A count above `u32::MAX`
/// recursive acquisitions saturates.
#[derive(Clone)]
pub struct RLock {
    shm: Shm<RLockState>,
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    pub fn new() -> crate::error::Result<RLock> {
        Ok(RLock {
            shm: Shm::create("rlock", 0)?,
        })
    }

    #[inline]
    fn state(&self) -> &RLockState {
        self.shm.get()
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    fn is_mine(&self, st: &RLockState) -> bool {
        st.raw.holder() == Some(current_pid())
            && st.owner_tid.load(Ordering::Relaxed) == current_tid()
    }

    /// Records the calling thread as the owner of the freshly taken lock.
    #[inline]
    fn take(&self, st: &RLockState, how: Acquired, count: u32) -> bool {
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
    lock: &'a RLock,
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

pub(crate) mod sealed {
    use super::*;

    /// Where a lock's state lives. Not public API.
    #[derive(Clone)]
    pub struct Place {
        pub(crate) region: Arc<SharedRegion>,
        pub(crate) offset: usize,
    }

    impl fmt::Debug for Place {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Place")
                .field("offset", &self.offset)
                .finish_non_exhaustive()
        }
    }

    /// What [`Condition`](crate::Condition), [`Value`](crate::Value) and
    /// [`Array`](crate::Array) need of their lock. Not public API.
    pub trait LockOps: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
        /// Bytes of the lock's state, to place it inside another object's region.
        const STATE_LEN: usize;

        /// The lock whose state is at `place`.
        fn at(place: Place) -> Result<Self, String>;

        /// Where its state is.
        fn place(&self) -> Place;

        /// Whether the calling thread may use a condition over this lock: the calling
        /// process holds a `Lock`, the calling thread an `RLock`.
        fn is_owned(&self) -> bool;

        /// Acquires, waiting as long as it takes; whether it is poisoned.
        fn acquire_quiet(&self) -> bool;

        /// Releases once, if held by the caller.
        fn release_quiet(&self);

        /// Releases completely, returning what [`LockOps::acquire_restore`] needs.
        fn release_save(&self) -> u32;

        /// Acquires again after [`LockOps::release_save`]; whether it is poisoned.
        fn acquire_restore(&self, saved: u32) -> bool;

        /// Marks the lock poisoned.
        fn poison(&self);

        /// The lock's own `acquire`.
        fn lock_acquire(&self) -> LockResult<()>;

        /// The lock's own `acquire_timeout`.
        fn lock_acquire_timeout(&self, timeout: Duration) -> Result<bool, PoisonError<()>>;

        /// The lock's own `release`.
        fn lock_release(&self) -> Result<(), ReleaseError>;
    }
}

/// A lock that a [`Condition`](crate::Condition), a [`Value`](crate::Value) or an
/// [`Array`](crate::Array) can use: [`Lock`] or [`RLock`].
///
/// This trait is sealed: it cannot be implemented outside multiproc.
pub trait Lockable: sealed::LockOps {}

impl Lockable for Lock {}
impl Lockable for RLock {}

impl sealed::LockOps for Lock {
    const STATE_LEN: usize = std::mem::size_of::<LockState>();

    fn at(place: sealed::Place) -> Result<Self, String> {
        Ok(Lock {
            shm: Shm::at(place.region, place.offset)?,
        })
    }

    fn place(&self) -> sealed::Place {
        sealed::Place {
            region: self.shm.region().clone(),
            offset: self.shm.offset(),
        }
    }

    fn is_owned(&self) -> bool {
        self.holder() == Some(current_pid())
    }

    fn acquire_quiet(&self) -> bool {
        self.acquire().is_err()
    }

    fn release_quiet(&self) {
        let _ = self.state().raw.unlock_if_mine();
    }

    fn release_save(&self) -> u32 {
        let _ = self.state().raw.unlock_if_mine();
        1
    }

    fn acquire_restore(&self, _saved: u32) -> bool {
        self.acquire().is_err()
    }

    fn poison(&self) {
        self.state().poison.store(1, Ordering::Relaxed);
    }

    fn lock_acquire(&self) -> LockResult<()> {
        self.acquire()
    }

    fn lock_acquire_timeout(&self, timeout: Duration) -> Result<bool, PoisonError<()>> {
        self.acquire_timeout(timeout)
    }

    fn lock_release(&self) -> Result<(), ReleaseError> {
        self.release()
    }
}

impl sealed::LockOps for RLock {
    const STATE_LEN: usize = std::mem::size_of::<RLockState>();

    fn at(place: sealed::Place) -> Result<Self, String> {
        Ok(RLock {
            shm: Shm::at(place.region, place.offset)?,
        })
    }

    fn place(&self) -> sealed::Place {
        sealed::Place {
            region: self.shm.region().clone(),
            offset: self.shm.offset(),
        }
    }

    fn is_owned(&self) -> bool {
        self.is_mine(self.state())
    }

    fn acquire_quiet(&self) -> bool {
        self.acquire().is_err()
    }

    fn release_quiet(&self) {
        let _ = self.release();
    }

    fn release_save(&self) -> u32 {
        let st = self.state();
        if !self.is_mine(st) {
            return 0;
        }
        let count = st.count.load(Ordering::Relaxed).max(1);
        st.count.store(0, Ordering::Relaxed);
        st.owner_tid.store(0, Ordering::Relaxed);
        let _ = st.raw.unlock_if_mine();
        count
    }

    fn acquire_restore(&self, saved: u32) -> bool {
        let st = self.state();
        let how = raw_lock(&st.raw, None).unwrap_or(Acquired::Clean);
        self.take(st, how, saved)
    }

    fn poison(&self) {
        self.state().poison.store(1, Ordering::Relaxed);
    }

    fn lock_acquire(&self) -> LockResult<()> {
        self.acquire()
    }

    fn lock_acquire_timeout(&self, timeout: Duration) -> Result<bool, PoisonError<()>> {
        self.acquire_timeout(timeout)
    }

    fn lock_release(&self) -> Result<(), ReleaseError> {
        self.release()
    }
}

/// The guard made by `make` for the outcome of an attempt to acquire: held, busy, or
/// held but poisoned.
fn guarded<G>(attempt: Result<bool, PoisonError<()>>, make: impl Fn() -> G) -> TryLockResult<G> {
    match attempt {
        Ok(true) => Ok(make()),
        Ok(false) => Err(TryLockError::WouldBlock),
        Err(_) => Err(TryLockError::Poisoned(PoisonError::new(make()))),
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
