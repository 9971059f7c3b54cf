//! The error of each queue operation, in the style of crossbeam-channel: a `put` that
//! did not happen gives the item back.

use std::fmt;

use crate::error::Error;
use crate::ipc::error::ChannelError;

/// Why [`Queue::put`](crate::Queue::put) did not queue the item; holds the item.
pub enum PutError<T> {
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded, or the system refused an operation. Prints as
    /// the error inside.
    Failed(T, Error),
}

/// Why [`Queue::try_put`](crate::Queue::try_put) did not queue the item; holds the
/// item.
pub enum TryPutError<T> {
    /// A bounded queue holds as many items as it may, or its buffer has no room for
    /// this one right now.
    Full(T),
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded, or the system refused an operation. Prints as
    /// the error inside.
    Failed(T, Error),
}

/// Why [`Queue::put_timeout`](crate::Queue::put_timeout) did not queue the item; holds
/// the item.
pub enum PutTimeoutError<T> {
    /// The queue stayed full until the timeout.
    Timeout(T),
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded, or the system refused an operation. Prints as
    /// the error inside.
    Failed(T, Error),
}

/// Why [`Queue::get`](crate::Queue::get) returned no item.
#[derive(Debug)]
pub enum GetError {
    /// The queue was closed and is empty.
    Closed,
    /// An item was taken but could not be decoded (it is dropped), the shared memory
    /// is corrupt, or the system refused an operation. Prints as the error inside.
    Failed(Error),
}

/// Why [`Queue::try_get`](crate::Queue::try_get) returned no item.
#[derive(Debug)]
pub enum TryGetError {
    /// The queue was empty.
    Empty,
    /// The queue was closed and is empty.
    Closed,
    /// As [`GetError::Failed`].
    Failed(Error),
}

/// Why [`Queue::get_timeout`](crate::Queue::get_timeout) returned no item.
#[derive(Debug)]
pub enum GetTimeoutError {
    /// The queue stayed empty until the timeout.
    Timeout,
    /// The queue was closed and is empty.
    Closed,
    /// As [`GetError::Failed`].
    Failed(Error),
}

/// [`JoinableQueue::task_done`](crate::JoinableQueue::task_done) was called more times
/// than items were put (Python raises `ValueError` with the same message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskDoneError;

macro_rules! give_back {
    ($name:ident { $($variant:ident),* } failed) => {
        impl<T> $name<T> {
            /// The item that was not queued.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$variant(item))|* => item,
                    $name::Failed(item, _) => item,
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => f.write_str(concat!(stringify!($variant), "(..)")),)*
                    $name::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
                }
            }
        }

        // `Failed` is transparent: it prints as the error inside, so its source is
        // that error's source.
        impl<T> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed(_, e) => std::error::Error::source(e),
                    _ => None,
                }
            }
        }
    };
}

give_back!(PutError { Closed } failed);
give_back!(TryPutError { Full, Closed } failed);
give_back!(PutTimeoutError { Timeout, Closed } failed);

impl<T> PutError<T> {
    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PutError::Closed(_))
    }
}

impl<T> TryPutError<T> {
    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TryPutError::Full(_))
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryPutError::Closed(_))
    }
}

impl<T> PutTimeoutError<T> {
    /// Whether the wait for room timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PutTimeoutError::Timeout(_))
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PutTimeoutError::Closed(_))
    }
}

impl GetError {
    /// Whether the queue was closed and empty.
    pub fn is_closed(&self) -> bool {
        matches!(self, GetError::Closed)
    }
}

impl TryGetError {
    /// Whether the queue was empty.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryGetError::Empty)
    }

    /// Whether the queue was closed and empty.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryGetError::Closed)
    }
}

impl GetTimeoutError {
    /// Whether the wait timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, GetTimeoutError::Timeout)
    }

    /// Whether the queue was closed and empty.
    pub fn is_closed(&self) -> bool {
        matches!(self, GetTimeoutError::Closed)
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Closed(_) => ChannelError::Closed.fmt(f),
            PutError::Failed(_, e) => e.fmt(f),
        }
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => ChannelError::Full.fmt(f),
            TryPutError::Closed(_) => ChannelError::Closed.fmt(f),
            TryPutError::Failed(_, e) => e.fmt(f),
        }
    }
}

impl<T> fmt::Display for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("timed out waiting for room in the queue"),
            PutTimeoutError::Closed(_) => ChannelError::Closed.fmt(f),
            PutTimeoutError::Failed(_, e) => e.fmt(f),
        }
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Closed => ChannelError::Closed.fmt(f),
            GetError::Failed(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::Empty => ChannelError::Empty.fmt(f),
            TryGetError::Closed => ChannelError::Closed.fmt(f),
            TryGetError::Failed(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for GetTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetTimeoutError::Timeout => f.write_str("timed out waiting for an item"),
            GetTimeoutError::Closed => ChannelError::Closed.fmt(f),
            GetTimeoutError::Failed(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ChannelError::TaskDoneTooManyTimes.fmt(f)
    }
}

macro_rules! source {
    ($($name:ident),*) => {$(
        // `Failed` is transparent, as above.
        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed(e) => std::error::Error::source(e),
                    _ => None,
                }
            }
        }
    )*};
}

source!(GetError, TryGetError, GetTimeoutError);

impl std::error::Error for TaskDoneError {}

// Narrow to wide, as crossbeam-channel does.

impl<T> From<PutError<T>> for TryPutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(item) => TryPutError::Closed(item),
            PutError::Failed(item, e) => TryPutError::Failed(item, e),
        }
    }
}

impl<T> From<PutError<T>> for PutTimeoutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(item) => PutTimeoutError::Closed(item),
            PutError::Failed(item, e) => PutTimeoutError::Failed(item, e),
        }
    }
}

impl From<GetError> for TryGetError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Closed => TryGetError::Closed,
            GetError::Failed(e) => TryGetError::Failed(e),
        }
    }
}

impl From<GetError> for GetTimeoutError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Closed => GetTimeoutError::Closed,
            GetError::Failed(e) => GetTimeoutError::Failed(e),
        }
    }
}

// Into the crate's error (the item is dropped), so that `?` works.

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(_) => ChannelError::Closed.into(),
            PutError::Failed(_, e) => e,
        }
    }
}

impl<T> From<TryPutError<T>> for Error {
    fn from(e: TryPutError<T>) -> Self {
        match e {
            TryPutError::Full(_) => ChannelError::Full.into(),
            TryPutError::Closed(_) => ChannelError::Closed.into(),
            TryPutError::Failed(_, e) => e,
        }
    }
}

impl<T> From<PutTimeoutError<T>> for Error {
    fn from(e: PutTimeoutError<T>) -> Self {
        match e {
            PutTimeoutError::Timeout(_) => ChannelError::Timeout.into(),
            PutTimeoutError::Closed(_) => ChannelError::Closed.into(),
            PutTimeoutError::Failed(_, e) => e,
        }
    }
}

impl From<GetError> for Error {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Closed => ChannelError::Closed.into(),
            GetError::Failed(e) => e,
        }
    }
}

impl From<TryGetError> for Error {
    fn from(e: TryGetError) -> Self {
        match e {
            TryGetError::Empty => ChannelError::Empty.into(),
            TryGetError::Closed => ChannelError::Closed.into(),
            TryGetError::Failed(e) => e,
        }
    }
}

impl From<GetTimeoutError> for Error {
    fn from(e: GetTimeoutError) -> Self {
        match e {
            GetTimeoutError::Timeout => ChannelError::Timeout.into(),
            GetTimeoutError::Closed => ChannelError::Closed.into(),
            GetTimeoutError::Failed(e) => e,
        }
    }
}

impl From<TaskDoneError> for Error {
    fn from(_: TaskDoneError) -> Self {
        ChannelError::TaskDoneTooManyTimes.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NotDebug;

    #[test]
    fn debug_without_t_debug_and_into_inner() {
        let e = TryPutError::Full(NotDebug);
        assert_eq!(format!("{e:?}"), "Full(..)");
        assert_eq!(e.to_string(), "queue is full");
        assert!(e.is_full());
        let NotDebug = e.into_inner();
        let e: PutTimeoutError<u8> = PutError::Closed(3).into();
        assert!(e.is_closed());
        assert_eq!(e.into_inner(), 3);
        let wide: Error = TryGetError::Empty.into();
        assert_eq!(wide.to_string(), "queue is empty");
        assert_eq!(
            TaskDoneError.to_string(),
            "task_done() called too many times"
        );
    }
}
