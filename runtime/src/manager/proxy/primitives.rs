//! The proxies of the manager's synchronization primitives: locks, semaphores, event,
//! condition and barrier, and the guard that releases them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ProxyCore, owner, proxy_common, tag_of};
use crate::error::Result;
use crate::manager::protocol::{Kind, Op, Owner, TypeTag, Wait};

/// Releases a lock, semaphore or condition of the manager when dropped.
///
/// A release that fails while dropping (the server is gone) is ignored; call
/// [`release`](Self::release) to see its error.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct ProxyGuard<'a> {
    core: &'a ProxyCore,
    owner: Owner,
    released: bool,
}

impl fmt::Debug for ProxyGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyGuard").field("of", self.core).finish()
    }
}

impl ProxyGuard<'_> {
    /// Releases now, and reports whether the server did.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.core.op(Op::Release(self.owner))?.unit()?;
        Ok(())
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.core.op(Op::Release(self.owner));
        }
    }
}

fn wait_of(timeout: Duration) -> Wait {
    Wait::For(timeout)
}

/// The acquiring methods shared by the lock-like proxies.
macro_rules! acquiring {
    ($guard:ident) => {
        /// Acquires, waiting as long as it takes.
        pub fn acquire(&self) -> Result<()> {
            self.core.op(Op::Acquire(owner(), Wait::Forever))?.bool()?;
            Ok(())
        }

        /// Acquires, waiting at most `timeout`; whether it did.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
            Ok(self
                .core
                .op(Op::Acquire(owner(), wait_of(timeout)))?
                .bool()?)
        }

        /// Acquires if that is possible now; whether it did.
        pub fn try_acquire(&self) -> Result<bool> {
            Ok(self.core.op(Op::Acquire(owner(), Wait::No))?.bool()?)
        }

        /// Releases.
        pub fn release(&self) -> Result<()> {
            self.core.op(Op::Release(owner()))?.unit()?;
            Ok(())
        }

        /// Acquires and returns a guard that releases when dropped.
        pub fn $guard(&self) -> Result<ProxyGuard<'_>> {
            let owner = owner();
            self.core.op(Op::Acquire(owner, Wait::Forever))?.bool()?;
            Ok(ProxyGuard {
                core: &self.core,
                owner,
                released: false,
            })
        }
    };
}

/// A lock on the manager's server: Python's `manager.Lock()` (a `threading.Lock`:
/// any thread of any process may release it; releasing it unlocked is an error of kind
/// [`ReleasedTooManyTimes`](crate::ManagerErrorKind::ReleasedTooManyTimes)).
#[derive(Clone)]
pub struct LockProxy {
    core: ProxyCore,
}

proxy_common!(LockProxy, Kind::Lock);

impl LockProxy {
    acquiring!(lock);

    /// Whether some thread holds the lock.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsLocked)?.bool()?)
    }
}

/// A re-entrant lock on the manager's server: Python's `manager.RLock()`. It is held by
/// a thread of a process; another thread's release is an error of kind
/// [`NotOwner`](crate::ManagerErrorKind::NotOwner).
#[derive(Clone)]
pub struct RLockProxy {
    core: ProxyCore,
}

proxy_common!(RLockProxy, Kind::RLock);

impl RLockProxy {
    acquiring!(lock);

    /// Whether some thread holds the lock.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsLocked)?.bool()?)
    }
}

/// A semaphore on the manager's server: Python's `manager.Semaphore(n)`.
#[derive(Clone)]
pub struct SemaphoreProxy {
    core: ProxyCore,
}

proxy_common!(SemaphoreProxy, Kind::Semaphore);

impl SemaphoreProxy {
    acquiring!(permit);

    /// The current value.
    pub fn value(&self) -> Result<u64> {
        Ok(self.core.op(Op::SemValue)?.count()?)
    }
}

/// A bounded semaphore on the manager's server: Python's
/// `manager.BoundedSemaphore(n)`; releasing above the initial value is an error of kind
/// [`ReleasedTooManyTimes`](crate::ManagerErrorKind::ReleasedTooManyTimes).
#[derive(Clone)]
pub struct BoundedSemaphoreProxy {
    core: ProxyCore,
}

proxy_common!(BoundedSemaphoreProxy, Kind::BoundedSemaphore);

impl BoundedSemaphoreProxy {
    acquiring!(permit);

    /// The current value.
    pub fn value(&self) -> Result<u64> {
        Ok(self.core.op(Op::SemValue)?.count()?)
    }
}

/// An event on the manager's server: Python's `manager.Event()`.
#[derive(Clone)]
pub struct EventProxy {
    core: ProxyCore,
}

proxy_common!(EventProxy, Kind::Event);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.core.op(Op::SetEvent)?.unit()?;
        Ok(())
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.core.op(Op::ClearEvent)?.unit()?;
        Ok(())
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsSet)?.bool()?)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.core.op(Op::WaitEvent(Wait::Forever))?.bool()?;
        Ok(())
    }

    /// Waits at most `timeout` for the flag; whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.core.op(Op::WaitEvent(wait_of(timeout)))?.bool()?)
    }
}

/// A condition variable on the manager's server, with its own re-entrant lock:
/// Python's `manager.Condition()`. `wait` and `notify` need the lock, held by the
/// calling thread (else an error of kind [`NotOwner`](crate::ManagerErrorKind::NotOwner)).
#[derive(Clone)]
pub struct ConditionProxy {
    core: ProxyCore,
}

proxy_common!(ConditionProxy, Kind::Condition);

impl ConditionProxy {
    acquiring!(lock);

    /// Releases the lock, waits for a notification, and takes the lock back.
    pub fn wait(&self) -> Result<()> {
        self.core
            .op(Op::WaitCondition(owner(), Wait::Forever))?
            .bool()?;
        Ok(())
    }

    /// As [`wait`](Self::wait), at most `timeout`; whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self
            .core
            .op(Op::WaitCondition(owner(), wait_of(timeout)))?
            .bool()?)
    }

    /// Wakes one waiter.
    pub fn notify(&self) -> Result<()> {
        self.notify_n(1)
    }

    /// Wakes up to `n` waiters, the longest waiting first.
    pub fn notify_n(&self, n: usize) -> Result<()> {
        self.core.op(Op::Notify(owner(), n as u64))?.unit()?;
        Ok(())
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.core.op(Op::NotifyAll(owner()))?.unit()?;
        Ok(())
    }
}

/// A barrier on the manager's server: Python's `manager.Barrier(parties)`. A broken
/// barrier gives errors of kind [`BrokenBarrier`](crate::ManagerErrorKind::BrokenBarrier).
#[derive(Clone)]
pub struct BarrierProxy {
    core: ProxyCore,
}

proxy_common!(BarrierProxy, Kind::Barrier);

impl BarrierProxy {
    /// Waits for every party; this party's arrival index, distinct among the parties
    /// of one pass.
    pub fn wait(&self) -> Result<usize> {
        Ok(self.core.op(Op::WaitBarrier(Wait::Forever))?.count()? as usize)
    }

    /// As [`wait`](Self::wait), at most `timeout`; a timeout breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        Ok(self.core.op(Op::WaitBarrier(wait_of(timeout)))?.count()? as usize)
    }

    /// Breaks the barrier for the parties waiting and those to come, until `reset`.
    pub fn abort(&self) -> Result<()> {
        self.core.op(Op::Abort)?.unit()?;
        Ok(())
    }

    /// Back to the initial state; parties waiting now get a broken-barrier error.
    pub fn reset(&self) -> Result<()> {
        self.core.op(Op::Reset)?.unit()?;
        Ok(())
    }

    /// The number of parties.
    pub fn parties(&self) -> Result<usize> {
        Ok(self.core.op(Op::Parties)?.count()? as usize)
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> Result<usize> {
        Ok(self.core.op(Op::NWaiting)?.count()? as usize)
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsBroken)?.bool()?)
    }
}
