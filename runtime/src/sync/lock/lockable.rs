//! [`Lockable`]: the locks a [`Condition`](crate::Condition), a [`Value`](crate::Value)
//! or an [`Array`](crate::Array) can use, and how each serves them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::attempt::raw_lock;
use super::non_reentrant::{Lock, LockState};
use super::reentrant::{RLock, RLockState};
use super::sealed;
use crate::os::futex::Acquired;
use crate::os::identity::current_pid;
use crate::sync::Shm;
use crate::sync::error::{LockResult, PoisonError, ReleaseError};

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
