//! The manager's error: what a manager, its server or one of its proxies refused.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong in a [`ManagerError`].
///
/// The kinds that the server reports about one object keep Python's exception classes
/// apart: [`IndexOutOfRange`](Self::IndexOutOfRange) is Python's `IndexError`,
/// [`Empty`](Self::Empty) and [`Full`](Self::Full) are `queue.Empty` and `queue.Full`,
/// [`BrokenBarrier`](Self::BrokenBarrier) is `BrokenBarrierError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ManagerErrorKind {
    /// The peer does not hold the key (or did not follow the handshake).
    Authentication,
    /// The server is gone: shut down, killed, or the connection to it was lost.
    Disconnected,
    /// This manager handle was shut down; it creates no more objects.
    ShutDown,
    /// A list index out of range (Python's `IndexError`).
    IndexOutOfRange,
    /// A queue was empty when asked for an item without waiting, or until the timeout.
    Empty,
    /// A bounded queue was full when given an item without waiting, or until the timeout.
    Full,
    /// A lock or a bounded semaphore released more times than acquired.
    ReleasedTooManyTimes,
    /// An `RLock` or a condition's lock released, or a condition waited on or
    /// notified, by a thread that does not hold it.
    NotOwner,
    /// A barrier was broken (by a timeout, `abort` or `reset`).
    BrokenBarrier,
    /// The object is not of the type asked for (a name taken by another type, or a
    /// proxy decoded as another proxy type).
    WrongType,
    /// The server has no object with this id (or no type registered under this key).
    UnknownObject,
    /// A method of a `#[managed]` type panicked on the server, or its arguments or
    /// result did not decode.
    Method,
    /// A creation argument out of range (a barrier of zero parties, ...).
    InvalidArgument,
    /// The peer sent something that is not part of the protocol.
    Protocol,
}

/// An error of a [`Manager`](crate::Manager) or of one of its proxies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerError {
    kind: ManagerErrorKind,
    message: String,
}

impl ManagerError {
    pub(crate) fn new(kind: ManagerErrorKind, message: impl Into<String>) -> Self {
        ManagerError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn disconnected(detail: impl fmt::Display) -> Self {
        ManagerError::new(
            ManagerErrorKind::Disconnected,
            format!("the manager's server is gone: {detail}"),
        )
    }

    /// What went wrong.
    pub fn kind(&self) -> ManagerErrorKind {
        self.kind
    }

    /// Whether the server is gone (shut down, killed, or the connection was lost).
    pub fn is_disconnected(&self) -> bool {
        self.kind == ManagerErrorKind::Disconnected
    }

    /// Whether the key was refused.
    pub fn is_authentication(&self) -> bool {
        self.kind == ManagerErrorKind::Authentication
    }

    /// Whether a list index was out of range (Python's `IndexError`).
    pub fn is_index_out_of_range(&self) -> bool {
        self.kind == ManagerErrorKind::IndexOutOfRange
    }

    /// Whether a queue was empty.
    pub fn is_empty(&self) -> bool {
        self.kind == ManagerErrorKind::Empty
    }

    /// Whether a queue was full.
    pub fn is_full(&self) -> bool {
        self.kind == ManagerErrorKind::Full
    }

    /// Whether the object is of another type than the one asked for.
    pub fn is_wrong_type(&self) -> bool {
        self.kind == ManagerErrorKind::WrongType
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ManagerError {}
