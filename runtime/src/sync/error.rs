//! The errors of the synchronisation primitives: one small type per operation, each
//! convertible into [`SyncError`] and [`Error`](crate::Error).

use std::fmt;

/// A lock was acquired, but the process that held it before died (or panicked) while
/// holding it: what the lock protects may be half updated.
///
/// This is how [`std::sync::Mutex`] reports poisoning. The lock *is* held when this
/// error is returned: [`into_inner`](PoisonError::into_inner) gives back what the
/// operation would have returned (a guard, or a flag), so that the caller can repair
/// the shared state and go on. The lock stays poisoned, and every later acquisition
/// reports it too, until someone calls `clear_poison` on it.
#[derive(Clone, PartialEq, Eq)]
pub struct PoisonError<T> {
    inner: T,
}

impl<T> PoisonError<T> {
    /// Wraps what the operation returns despite the poisoning.
    pub fn new(inner: T) -> PoisonError<T> {
        PoisonError { inner }
    }

    /// What the operation returned (the guard, or the flag): the lock is held.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// A reference to what the operation returned.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// A mutable reference to what the operation returned.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T> fmt::Debug for PoisonError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoisonError").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for PoisonError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "poisoned lock: a process died or panicked while holding it, \
             so what it protects may be half updated",
        )
    }
}

impl<T> std::error::Error for PoisonError<T> {}

/// What a lock operation returns: `Err` when the lock is poisoned (and held anyway).
pub type LockResult<T> = Result<T, PoisonError<T>>;

/// Why a non-blocking (or timed) lock operation did not give the lock back clean.
pub enum TryLockError<T> {
    /// The lock was acquired, but it is poisoned.
    Poisoned(PoisonError<T>),
    /// The lock was not acquired: another holder has it (and, with a timeout, kept it
    /// until the timeout passed).
    WouldBlock,
}

impl<T> TryLockError<T> {
    /// Whether the lock was acquired, poisoned.
    pub fn is_poisoned(&self) -> bool {
        matches!(self, TryLockError::Poisoned(_))
    }

    /// Whether the lock was not acquired.
    pub fn is_would_block(&self) -> bool {
        matches!(self, TryLockError::WouldBlock)
    }
}

impl<T> From<PoisonError<T>> for TryLockError<T> {
    fn from(e: PoisonError<T>) -> Self {
        TryLockError::Poisoned(e)
    }
}

impl<T> fmt::Debug for TryLockError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::Poisoned(e) => f.debug_tuple("Poisoned").field(e).finish(),
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
        }
    }
}

impl<T> fmt::Display for TryLockError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::Poisoned(e) => e.fmt(f),
            TryLockError::WouldBlock => f.write_str("the lock is held by another holder"),
        }
    }
}

impl<T> std::error::Error for TryLockError<T> {}

/// What a non-blocking or timed lock operation returns.
pub type TryLockResult<T> = Result<T, TryLockError<T>>;

/// A `release` that is not allowed: the lock is not held by the caller, or a semaphore
/// would go above its bound. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseError {
    kind: ReleaseKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReleaseKind {
    TooMany,
    NotOwner {
        recursive: bool,
        holder: Option<u32>,
    },
}

impl ReleaseError {
    pub(crate) fn too_many() -> Self {
        ReleaseError {
            kind: ReleaseKind::TooMany,
        }
    }

    pub(crate) fn not_owner(recursive: bool, holder: Option<u32>) -> Self {
        ReleaseError {
            kind: ReleaseKind::NotOwner { recursive, holder },
        }
    }

    /// Whether the object was released more often than acquired: an unlocked
    /// [`Lock`](crate::Lock), a [`BoundedSemaphore`](crate::BoundedSemaphore) at its
    /// initial value, a semaphore at [`SEM_VALUE_MAX`](crate::SEM_VALUE_MAX).
    pub fn is_too_many(&self) -> bool {
        self.kind == ReleaseKind::TooMany
    }

    /// Whether the lock is held by another process (or, for an
    /// [`RLock`](crate::RLock), another thread), or by no one.
    pub fn is_not_owner(&self) -> bool {
        matches!(self.kind, ReleaseKind::NotOwner { .. })
    }

    /// The process holding the lock, when another one holds it.
    pub fn holder(&self) -> Option<u32> {
        match self.kind {
            ReleaseKind::NotOwner { holder, .. } => holder,
            ReleaseKind::TooMany => None,
        }
    }
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ReleaseKind::TooMany => f.write_str("semaphore or lock released too many times"),
            ReleaseKind::NotOwner {
                recursive: true, ..
            } => f.write_str("attempt to release recursive lock not owned by thread"),
            ReleaseKind::NotOwner {
                recursive: false,
                holder: Some(pid),
            } => write!(
                f,
                "cannot release a lock held by process {pid}, not by this one"
            ),
            ReleaseKind::NotOwner {
                recursive: false,
                holder: None,
            } => f.write_str("cannot release a lock that is not held"),
        }
    }
}

impl std::error::Error for ReleaseError {}

/// Why [`Condition::wait`](crate::Condition::wait) and its variants failed.
#[derive(Clone, PartialEq, Eq)]
pub enum WaitError<T> {
    /// The caller does not hold the condition's lock.
    NotOwned,
    /// Too many processes and threads wait on this condition already (see
    /// [`Condition`](crate::Condition)'s caveats). The lock is still held.
    TooManyWaiters,
    /// The wait ended (with the value inside), and the lock is held again, but it is
    /// poisoned.
    Poisoned(PoisonError<T>),
}

impl<T> WaitError<T> {
    /// Whether the caller did not hold the lock.
    pub fn is_not_owned(&self) -> bool {
        matches!(self, WaitError::NotOwned)
    }

    /// Whether the condition had no room for another waiter.
    pub fn is_too_many_waiters(&self) -> bool {
        matches!(self, WaitError::TooManyWaiters)
    }

    /// Whether the lock was reacquired poisoned.
    pub fn is_poisoned(&self) -> bool {
        matches!(self, WaitError::Poisoned(_))
    }
}

impl<T> From<PoisonError<T>> for WaitError<T> {
    fn from(e: PoisonError<T>) -> Self {
        WaitError::Poisoned(e)
    }
}

impl<T> fmt::Debug for WaitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::NotOwned => f.write_str("NotOwned"),
            WaitError::TooManyWaiters => f.write_str("TooManyWaiters"),
            WaitError::Poisoned(e) => f.debug_tuple("Poisoned").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for WaitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::NotOwned => f.write_str("must acquire() condition before using wait()"),
            WaitError::TooManyWaiters => {
                f.write_str("too many processes and threads wait on this condition already")
            }
            WaitError::Poisoned(e) => e.fmt(f),
        }
    }
}

impl<T> std::error::Error for WaitError<T> {}

/// [`Condition::notify`](crate::Condition::notify) by a caller that does not hold the
/// condition's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyError;

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("lock is not owned")
    }
}

impl std::error::Error for NotifyError {}

/// The [`Barrier`](crate::Barrier) is broken, or broke while the caller waited:
/// aborted, reset, timed out, its action panicked, or one of its waiting parties died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenBarrierError;

impl fmt::Display for BrokenBarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("broken barrier")
    }
}

impl std::error::Error for BrokenBarrierError {}

/// An index outside an [`Array`](crate::Array).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexError {
    index: usize,
    len: usize,
}

impl IndexError {
    pub(crate) fn new(index: usize, len: usize) -> Self {
        IndexError { index, len }
    }

    /// The index asked for (for a range, its first index out of bounds).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The length of the array.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid index: {} is out of bounds for an array of {}",
            self.index, self.len
        )
    }
}

impl std::error::Error for IndexError {}

/// Any error of the synchronisation primitives, without the value some of them carry;
/// what [`Error::Sync`](crate::Error::Sync) holds.
///
/// Each case holds the narrow error it came from, typed, so that a caller can match
/// through [`Error`](crate::Error) down to, say, an [`IndexError`]'s index and
/// length:
///
/// ```
/// use multiproc::{Array, Error, SyncError};
/// # fn main() -> multiproc::Result<()> {
/// let array = Array::from_slice(&[1u32, 2, 3])?;
/// let wide: Error = array.get(5).unwrap_err().into();
/// match wide {
///     Error::Sync(SyncError::Index(e)) => assert_eq!((e.index(), e.len()), (5, 3)),
///     other => panic!("{other}"),
/// }
/// # Ok(())
/// # }
/// ```
///
/// It prints as the error inside, and has no [`source`](std::error::Error::source)
/// (none of the narrow errors has one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncError {
    /// A [`PoisonError`], its value dropped (a guard inside was released).
    Poisoned(PoisonError<()>),
    /// A [`ReleaseError`].
    Release(ReleaseError),
    /// A [`NotifyError`].
    Notify(NotifyError),
    /// A [`WaitError`], its value dropped (a guard inside was released).
    Wait(WaitError<()>),
    /// A [`BrokenBarrierError`].
    BrokenBarrier(BrokenBarrierError),
    /// An [`IndexError`].
    Index(IndexError),
    /// A constructor was given a value out of its range; holds the message.
    InvalidArgument(String),
}

impl SyncError {
    pub(crate) fn invalid_argument(detail: impl Into<String>) -> Self {
        SyncError::InvalidArgument(detail.into())
    }

    /// Whether a lock (or a condition's lock, reacquired after a wait) was poisoned.
    pub fn is_poisoned(&self) -> bool {
        matches!(
            self,
            SyncError::Poisoned(_) | SyncError::Wait(WaitError::Poisoned(_))
        )
    }

    /// Whether the caller did not hold the lock that the operation needs (a
    /// [`NotifyError`], or a [`WaitError::NotOwned`]).
    pub fn is_not_owned(&self) -> bool {
        matches!(
            self,
            SyncError::Notify(_) | SyncError::Wait(WaitError::NotOwned)
        )
    }

    /// The [`IndexError`] inside, if this is one.
    pub fn index_error(&self) -> Option<&IndexError> {
        match self {
            SyncError::Index(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Poisoned(e) => e.fmt(f),
            SyncError::Release(e) => e.fmt(f),
            SyncError::Notify(e) => e.fmt(f),
            SyncError::Wait(e) => e.fmt(f),
            SyncError::BrokenBarrier(e) => e.fmt(f),
            SyncError::Index(e) => e.fmt(f),
            SyncError::InvalidArgument(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for SyncError {}

impl<T> From<PoisonError<T>> for SyncError {
    fn from(_: PoisonError<T>) -> Self {
        SyncError::Poisoned(PoisonError::new(()))
    }
}

impl From<ReleaseError> for SyncError {
    fn from(e: ReleaseError) -> Self {
        SyncError::Release(e)
    }
}

impl From<NotifyError> for SyncError {
    fn from(e: NotifyError) -> Self {
        SyncError::Notify(e)
    }
}

impl<T> From<WaitError<T>> for SyncError {
    fn from(e: WaitError<T>) -> Self {
        SyncError::Wait(match e {
            WaitError::NotOwned => WaitError::NotOwned,
            WaitError::TooManyWaiters => WaitError::TooManyWaiters,
            WaitError::Poisoned(_) => WaitError::Poisoned(PoisonError::new(())),
        })
    }
}

impl From<BrokenBarrierError> for SyncError {
    fn from(e: BrokenBarrierError) -> Self {
        SyncError::BrokenBarrier(e)
    }
}

impl From<IndexError> for SyncError {
    fn from(e: IndexError) -> Self {
        SyncError::Index(e)
    }
}

macro_rules! into_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for crate::error::Error {
            fn from(e: $ty) -> Self {
                crate::error::Error::Sync(e.into())
            }
        }
    )*};
}

into_error!(ReleaseError, NotifyError, BrokenBarrierError, IndexError);

impl<T> From<PoisonError<T>> for crate::error::Error {
    fn from(e: PoisonError<T>) -> Self {
        crate::error::Error::Sync(e.into())
    }
}

impl<T> From<WaitError<T>> for crate::error::Error {
    fn from(e: WaitError<T>) -> Self {
        crate::error::Error::Sync(e.into())
    }
}

impl From<SyncError> for crate::error::Error {
    fn from(e: SyncError) -> Self {
        crate::error::Error::Sync(e)
    }
}
