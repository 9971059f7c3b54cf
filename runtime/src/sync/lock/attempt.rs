//! What both locks do with an attempt to acquire: wait for the raw lock, poison it
//! when its holder died, and turn the outcome into a result or a guard.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::os::futex::{Acquired, RawLock};
use crate::sync::error::{LockResult, PoisonError, TryLockError, TryLockResult};

/// Takes `raw`, waiting until `deadline` (`None`: as long as it takes). Callers have
/// tried `try_lock` already; `RawLock::lock` tries again before it spins.
#[cold]
pub(super) fn raw_lock(raw: &RawLock, deadline: Option<std::time::Instant>) -> Option<Acquired> {
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
pub(super) fn note(poison: &AtomicU32, how: Acquired, what: &str) -> bool {
    if how == Acquired::OwnerDied {
        poison.store(1, Ordering::Relaxed);
        log::warn!("a process died holding {what}: this process takes it over, poisoned");
    }
    poison.load(Ordering::Relaxed) != 0
}

pub(super) fn poisoned<T>(is_poisoned: bool, value: T) -> LockResult<T> {
    if is_poisoned {
        Err(PoisonError::new(value))
    } else {
        Ok(value)
    }
}

/// The guard made by `make` for the outcome of an attempt to acquire: held, busy, or
/// held but poisoned.
pub(super) fn guarded<G>(
    attempt: Result<bool, PoisonError<()>>,
    make: impl Fn() -> G,
) -> TryLockResult<G> {
    match attempt {
        Ok(true) => Ok(make()),
        Ok(false) => Err(TryLockError::WouldBlock),
        Err(_) => Err(TryLockError::Poisoned(PoisonError::new(make()))),
    }
}
