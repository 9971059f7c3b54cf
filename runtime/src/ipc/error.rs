//! The error shared by queues and connections.

use std::fmt;

/// Why an operation on a queue or a connection did not complete.
///
/// The operations themselves return narrower types (such as
/// [`TryPutError`](crate::TryPutError) or [`RecvError`](crate::RecvError)) that give
/// back the value that was not sent; they convert into
/// [`Error::Channel`](crate::Error::Channel) with this inside, so that `?` works in a
/// function returning [`Result`]. Where Python's `multiprocessing` raises for the same
/// case, the message follows Python's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelError {
    /// The queue was closed with `close` (and, for a `get`, is empty).
    Closed,
    /// A bounded queue was full, and the operation was not to wait.
    Full,
    /// The queue was empty, and the operation was not to wait.
    Empty,
    /// The wait ended at its timeout.
    Timeout,
    /// The other end of the connection is closed in every process that held it, or
    /// those processes ended: there is nothing more to receive, and sending fails.
    Disconnected,
    /// `task_done` was called more times than items were put.
    TaskDoneTooManyTimes,
    /// A receive on the writing end of a one-way pipe.
    WriteOnly,
    /// A send on the reading end of a one-way pipe.
    ReadOnly,
    /// A message longer than the receiver accepts. The connection's receiving side is
    /// unusable afterwards, as in Python.
    BadMessageLength {
        /// The message's length.
        len: usize,
        /// The most the receiver accepted.
        max: usize,
    },
    /// A message longer than the buffer given to receive it; holds the message
    /// (Python's `BufferTooShort`).
    BufferTooShort(Vec<u8>),
    /// An argument out of range, with Python's message (`"buffer length < offset"`).
    InvalidArgument(&'static str),
    /// A connection that lost its place in the stream at an earlier error (a garbled or
    /// truncated frame, a message too long): every later receive reports this. Holds
    /// the first error.
    Broken(String),
    /// The shared memory behind a queue or a connection holds what no multiproc
    /// process writes: another process wrote garbage into it. The records that could
    /// not be read are dropped.
    Corrupt(String),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Closed => f.write_str("queue is closed"),
            ChannelError::Full => f.write_str("queue is full"),
            ChannelError::Empty => f.write_str("queue is empty"),
            ChannelError::Timeout => f.write_str("timed out"),
            ChannelError::Disconnected => f.write_str("the other end of the connection is closed"),
            ChannelError::TaskDoneTooManyTimes => f.write_str("task_done() called too many times"),
            ChannelError::WriteOnly => f.write_str("connection is write-only"),
            ChannelError::ReadOnly => f.write_str("connection is read-only"),
            ChannelError::BadMessageLength { len, max } => write!(
                f,
                "bad message length: {len} bytes, above the limit of {max}"
            ),
            ChannelError::BufferTooShort(message) => write!(
                f,
                "buffer too short for a message of {} bytes",
                message.len()
            ),
            ChannelError::InvalidArgument(message) => f.write_str(message),
            ChannelError::Broken(first) => write!(
                f,
                "connection is unreadable after an earlier error: {first}"
            ),
            ChannelError::Corrupt(what) => write!(f, "corrupt shared memory: {what}"),
        }
    }
}

impl std::error::Error for ChannelError {}
