//! Synchronisation across processes, and data shared between them: Python's `Lock`,
//! `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`, `Barrier`, `Value`
//! and `Array`.
//!
//! Every object lives in a [`SharedRegion`] (a sealed memfd: nothing in `/dev/shm`,
//! nothing left behind however the processes end) and crosses to another process as
//! that region's descriptor. Its state is made of atomics; waiting is a futex wait on
//! shared memory. Whatever another process writes there is untrusted: every index,
//! count or length read from the region is checked before use, so a corrupt peer gives
//! an error or a documented outcome, never undefined behaviour.

mod barrier;
mod condition;
mod error;
mod event;
mod lock;
mod semaphore;
mod shared;

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shm::SharedRegion;

pub use barrier::{Barrier, BarrierAction, NoAction};
pub use condition::{Condition, ConditionGuard};
pub use error::{
    BrokenBarrierError, IndexError, LockResult, NotifyError, PoisonError, ReleaseError, SyncError,
    SyncErrorKind, TryLockError, TryLockResult, WaitError,
};
pub use event::Event;
pub use lock::{Lock, LockGuard, Lockable, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, SEM_VALUE_MAX, Semaphore, SemaphoreGuard};
pub use shared::{Array, ArrayGuard, AtomicInt, Plain, RawArray, RawValue, Value, ValueGuard};

/// A `repr(C)` type made only of atomics (or arrays of them), to be placed in shared
/// memory.
///
/// # Safety
///
/// Every bit pattern must be a valid value, the type must need no drop, and every access
/// to it must go through its atomics: other processes read and write it concurrently.
pub(crate) unsafe trait Atomics: Sized + 'static {}

// SAFETY: an atomic.
unsafe impl Atomics for std::sync::atomic::AtomicU32 {}

/// The state `H` of one object at `offset` in a shared region, possibly followed by a
/// table (see [`Shm::table`]). Clones share the region.
pub(crate) struct Shm<H> {
    region: Arc<SharedRegion>,
    offset: usize,
    state: PhantomData<fn() -> H>,
}

impl<H> Clone for Shm<H> {
    fn clone(&self) -> Self {
        Shm {
            region: self.region.clone(),
            offset: self.offset,
            state: PhantomData,
        }
    }
}

impl<H: Atomics> Shm<H> {
    /// A new region named `name` holding a zeroed `H` followed by `tail` bytes.
    pub(crate) fn create(name: &str, tail: usize) -> std::io::Result<Shm<H>> {
        let len = std::mem::size_of::<H>()
            .checked_add(tail)
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        let region = SharedRegion::new(name, len.max(1))?;
        Ok(Shm {
            region: Arc::new(region),
            offset: 0,
            state: PhantomData,
        })
    }

    /// The `H` at `offset` in `region`, if it fits there and is aligned.
    pub(crate) fn at(region: Arc<SharedRegion>, offset: usize) -> Result<Shm<H>, String> {
        let fits = offset
            .checked_add(std::mem::size_of::<H>())
            .is_some_and(|end| end <= region.len());
        if !fits || offset % std::mem::align_of::<H>() != 0 {
            return Err(format!(
                "no room for a {} at offset {offset} of a shared region of {} bytes",
                std::any::type_name::<H>(),
                region.len()
            ));
        }
        Ok(Shm {
            region,
            offset,
            state: PhantomData,
        })
    }

    /// The state.
    #[inline]
    pub(crate) fn get(&self) -> &H {
        // SAFETY: `create` and `at` checked that an aligned `H` fits at `offset`; `H` is
        // `Atomics`, valid for any bits and safe to share; the mapping lives as long as
        // `self.region`.
        unsafe { self.region.get(self.offset) }
    }

    /// The `E`s that fill the region after the state, as many as fit (the region's
    /// length, checked when it was mapped, bounds the table: never a count read from
    /// shared memory).
    pub(crate) fn table<E: Atomics>(&self) -> &[E] {
        let size = std::mem::size_of::<E>();
        let align = std::mem::align_of::<E>();
        let start = (self.offset + std::mem::size_of::<H>()).next_multiple_of(align);
        let len = self.region.len().saturating_sub(start) / size.max(1);
        if len == 0 {
            return &[];
        }
        // SAFETY: `start` is aligned for `E` (the region starts on a page) and
        // `start + len * size` is within the region; `E` is `Atomics`.
        unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(start).cast::<E>(), len) }
    }

    pub(crate) fn region(&self) -> &Arc<SharedRegion> {
        &self.region
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }
}

impl<H: Atomics> Serialize for Shm<H> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&*self.region, self.offset as u64).serialize(serializer)
    }
}

impl<'de, H: Atomics> Deserialize<'de> for Shm<H> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (region, offset): (SharedRegion, u64) = Deserialize::deserialize(deserializer)?;
        let offset = usize::try_from(offset).map_err(serde::de::Error::custom)?;
        Shm::at(Arc::new(region), offset).map_err(serde::de::Error::custom)
    }
}

/// Sleep slices of a waiter that checks now and then for processes that died: the
/// first short, the next ones longer (as [`RawLock`](crate::futex::RawLock) does).
pub(crate) struct Checks {
    next: std::time::Instant,
}

impl Checks {
    pub(crate) fn new() -> Checks {
        Checks {
            next: std::time::Instant::now() + crate::futex::FIRST_CHECK,
        }
    }

    /// When to wake up at the latest: the next check, or `deadline` if sooner.
    pub(crate) fn until(&self, deadline: Option<std::time::Instant>) -> std::time::Instant {
        match deadline {
            Some(d) if d < self.next => d,
            _ => self.next,
        }
    }

    /// Whether a check is due now; if so, schedules the next one.
    pub(crate) fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + crate::futex::NEXT_CHECKS;
        true
    }
}

/// Whether `deadline` (`None`: never) has passed.
pub(crate) fn passed(deadline: Option<std::time::Instant>) -> bool {
    deadline.is_some_and(|d| std::time::Instant::now() >= d)
}
