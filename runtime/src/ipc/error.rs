//! The error shared by queues and connections.

use std::fmt;

/// Why an operation on a queue or a connection did not complete.
///
/// The operations themselves return narrower types (such as
/// [`TryPutError`](crate::TryPutError) or [`RecvError`](crate::RecvError)) that give
/// back the value that was not sent; they convert into
/// [`Error::Channel`](crate::Error::Channel) with this inside, so that `?` works in a
/// function returning [`Result`](crate::Result). Where Python's `multiprocessing`
/// raises for the same case, the message follows Python's.
///
/// The cases fall in four groups, each with a predicate:
///
/// - the channel's state, normal in a working program: [`Closed`](Self::Closed),
///   [`Full`](Self::Full), [`Empty`](Self::Empty), [`Timeout`](Self::Timeout),
///   [`Disconnected`](Self::Disconnected);
/// - misuse by the caller ([`is_misuse`](Self::is_misuse)):
///   [`TaskDoneTooManyTimes`](Self::TaskDoneTooManyTimes),
///   [`WriteOnly`](Self::WriteOnly), [`ReadOnly`](Self::ReadOnly),
///   [`InvalidArgument`](Self::InvalidArgument);
/// - a message that does not fit what the receiver accepts:
///   [`BadMessageLength`](Self::BadMessageLength),
///   [`BufferTooShort`](Self::BufferTooShort);
/// - damage: shared memory that holds what no multiproc process writes
///   ([`Corrupt`](Self::Corrupt), [`is_corrupt`](Self::is_corrupt)), and a
///   connection that lost its place in the stream at an earlier error
///   ([`Broken`](Self::Broken), [`is_broken`](Self::is_broken)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelError {
    // --- the channel's state ---
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

    // --- misuse ---
    /// `task_done` was called more times than items were put.
    TaskDoneTooManyTimes,
    /// A receive on the writing end of a one-way pipe.
    WriteOnly,
    /// A send on the reading end of a one-way pipe.
    ReadOnly,
    /// An argument out of range, with Python's message (`"buffer length < offset"`).
    InvalidArgument(&'static str),

    // --- a message that does not fit ---
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

    // --- damage ---
    /// A connection that lost its place in the stream at an earlier error (a garbled or
    /// truncated frame, a message too long, corrupt shared memory): every later
    /// receive reports this. Holds the first error's message; the first error itself
    /// was returned, typed, by the receive that met it.
    Broken(String),
    /// The shared memory behind a queue or a connection holds what no multiproc
    /// process writes: another process wrote garbage into it. The records that could
    /// not be read are dropped.
    Corrupt(Corruption),
}

impl ChannelError {
    /// Whether the shared memory behind the queue or connection was found corrupt
    /// ([`Corrupt`](Self::Corrupt)).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, ChannelError::Corrupt(_))
    }

    /// Whether the connection had lost its place in the stream at an earlier error
    /// ([`Broken`](Self::Broken)).
    pub fn is_broken(&self) -> bool {
        matches!(self, ChannelError::Broken(_))
    }

    /// Whether the caller asked for what the queue or connection never allows:
    /// [`TaskDoneTooManyTimes`](Self::TaskDoneTooManyTimes),
    /// [`WriteOnly`](Self::WriteOnly), [`ReadOnly`](Self::ReadOnly) or
    /// [`InvalidArgument`](Self::InvalidArgument).
    pub fn is_misuse(&self) -> bool {
        matches!(
            self,
            ChannelError::TaskDoneTooManyTimes
                | ChannelError::WriteOnly
                | ChannelError::ReadOnly
                | ChannelError::InvalidArgument(_)
        )
    }

    /// Whether a wait ended at its timeout ([`Timeout`](Self::Timeout)).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ChannelError::Timeout)
    }
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
            ChannelError::InvalidArgument(message) => f.write_str(message),
            ChannelError::BadMessageLength { len, max } => write!(
                f,
                "bad message length: {len} bytes, above the limit of {max}"
            ),
            ChannelError::BufferTooShort(message) => write!(
                f,
                "buffer too short for a message of {} bytes",
                message.len()
            ),
            ChannelError::Broken(first) => write!(
                f,
                "connection is unreadable after an earlier error: {first}"
            ),
            ChannelError::Corrupt(corruption) => corruption.fmt(f),
        }
    }
}

// No case has a source: `Broken` shows its first error's message in `Display`, and
// `Corrupt` prints as the `Corruption` inside (which has no source either).
impl std::error::Error for ChannelError {}

/// What was wrong in the shared memory behind a queue or a connection: what
/// [`ChannelError::Corrupt`] holds.
///
/// The ring buffers and headers of queues and connections are shared with every
/// process that holds them; a process that writes garbage into them (by a stray
/// pointer, or on purpose) makes the next reader find a record out of bounds, of an
/// unknown kind, or a count that cannot be. The reader reports this instead of
/// reading out of bounds, and drops what it cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    what: String,
}

impl Corruption {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Corruption { what: what.into() }
    }

    /// What the reader found (for example `"a record of unknown kind 7"`).
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt shared memory: {}", self.what)
    }
}

impl std::error::Error for Corruption {}

impl From<Corruption> for ChannelError {
    fn from(e: Corruption) -> Self {
        ChannelError::Corrupt(e)
    }
}

impl From<Corruption> for crate::error::Error {
    fn from(e: Corruption) -> Self {
        crate::error::Error::Channel(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_is_told_apart_and_prints_once() {
        let e = ChannelError::from(Corruption::new("a record of unknown kind 7"));
        assert!(e.is_corrupt() && !e.is_broken() && !e.is_misuse() && !e.is_timeout());
        assert_eq!(
            e.to_string(),
            "corrupt shared memory: a record of unknown kind 7"
        );
        assert!(std::error::Error::source(&e).is_none());
        let wide = crate::error::Error::from(Corruption::new("x"));
        assert!(matches!(&wide, crate::error::Error::Channel(c) if c.is_corrupt()));
        assert!(std::error::Error::source(&wide).is_none());
        match &wide {
            crate::error::Error::Channel(ChannelError::Corrupt(c)) => assert_eq!(c.what(), "x"),
            other => panic!("{other:?}"),
        }
        assert!(ChannelError::ReadOnly.is_misuse());
    }
}
