//! Synchronisation across processes, and data shared between them: Python's `Lock`,
//! `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`, `Barrier`, `Value`
//! and `Array`; and `multiprocessing.shared_memory`'s `SharedMemory` and
//! `ShareableList`.
//!
//! Every object but [`SharedMemory`] lives in a [`SharedRegion`] (a sealed memfd:
//! nothing in `/dev/shm`, nothing left behind however the processes end) and crosses
//! to another process as that region's descriptor. Its state is made of atomics; waiting is a futex wait on
//! shared memory. Whatever another process writes there is untrusted: every index,
//! count or length read from the region is checked before use, so a corrupt peer gives
//! an error or a documented outcome, never undefined behaviour. [`SharedMemory`] blocks
//! are named POSIX objects in `/dev/shm`, which other programs open by name; their
//! typed views are the documented exception to the atomics-only rule.

mod barrier;
mod condition;
mod error;
mod event;
mod lock;
mod semaphore;
mod shared;
mod shared_memory;

pub(crate) use crate::os::futex::{Checks, passed};
pub(crate) use crate::os::shm::{Atomics, Shm};

pub use barrier::{Barrier, BarrierAction, NoAction};
pub use condition::{Condition, ConditionGuard};
pub use error::{
    BrokenBarrierError, IndexError, LockResult, NotifyError, PoisonError, ReleaseError, SyncError,
    TryLockError, TryLockResult, WaitError,
};
pub use event::Event;
pub use lock::{Lock, LockGuard, Lockable, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, SEM_VALUE_MAX, Semaphore, SemaphoreGuard};
pub use shared::{Array, ArrayGuard, AtomicInt, Plain, RawArray, RawValue, Value, ValueGuard};
pub use shared_memory::{
    Item, ShareableList, SharedMemory, SharedMemoryBuilder, SharedMemoryError,
};
