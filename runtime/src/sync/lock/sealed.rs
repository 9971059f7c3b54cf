//! What other objects need of their lock, behind a sealed trait. Not public API.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::os::shm::SharedRegion;
use crate::sync::error::{LockResult, PoisonError, ReleaseError};

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
