//! The error of each connection operation: a `send` that did not happen gives the value
//! back, as in crossbeam-channel.

use std::fmt;

use crate::error::Error;
use crate::ipc::error::ChannelError;

/// Why [`Connection::send`](crate::Connection::send) did not send; holds the value.
pub enum SendError<T> {
    /// The other end is closed in every process that held it (Python's
    /// `BrokenPipeError`).
    Disconnected(T),
    /// The value could not be encoded, this end cannot send (the reading end of a
    /// one-way pipe), or the system refused an operation. Prints as the error inside
    /// (and its source is that error's source).
    Failed(T, Error),
}

/// Why [`Connection::recv`](crate::Connection::recv) (or `recv_bytes`) returned no
/// message.
#[derive(Debug)]
pub enum RecvError {
    /// The other end is closed in every process that held it and every message sent
    /// before was received (Python's `EOFError`).
    Disconnected,
    /// The message could not be decoded, a frame was garbled, truncated or too long,
    /// this end cannot receive (the writing end of a one-way pipe), or the system
    /// refused an operation. Prints as the error inside (and its source is that
    /// error's source).
    Failed(Error),
}

/// Why [`Connection::recv_timeout`](crate::Connection::recv_timeout) returned no
/// message.
#[derive(Debug)]
pub enum RecvTimeoutError {
    /// No message came before the timeout.
    Timeout,
    /// As [`RecvError::Disconnected`].
    Disconnected,
    /// As [`RecvError::Failed`].
    Failed(Error),
}

/// Why [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into) filled no
/// buffer.
#[derive(Debug)]
pub enum RecvIntoError {
    /// The message is longer than the buffer; here it is, whole (Python's
    /// `BufferTooShort`, whose argument is the message).
    BufferTooShort(Vec<u8>),
    /// As [`RecvError::Disconnected`].
    Disconnected,
    /// As [`RecvError::Failed`].
    Failed(Error),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Disconnected(value) | SendError::Failed(value, _) => value,
        }
    }

    /// Whether the other end was closed.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendError::Disconnected(_))
    }
}

impl RecvError {
    /// Whether the other end was closed (end of file).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvError::Disconnected)
    }
}

impl RecvTimeoutError {
    /// Whether the wait timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }

    /// Whether the other end was closed (end of file).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvTimeoutError::Disconnected)
    }
}

impl RecvIntoError {
    /// Whether the buffer was too short (the message is inside).
    pub fn is_buffer_too_short(&self) -> bool {
        matches!(self, RecvIntoError::BufferTooShort(_))
    }

    /// Whether the other end was closed (end of file).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvIntoError::Disconnected)
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            SendError::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => ChannelError::Disconnected.fmt(f),
            SendError::Failed(_, e) => e.fmt(f),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => ChannelError::Disconnected.fmt(f),
            RecvError::Failed(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out waiting for a message"),
            RecvTimeoutError::Disconnected => ChannelError::Disconnected.fmt(f),
            RecvTimeoutError::Failed(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for RecvIntoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvIntoError::BufferTooShort(message) => write!(
                f,
                "buffer too short for a message of {} bytes",
                message.len()
            ),
            RecvIntoError::Disconnected => ChannelError::Disconnected.fmt(f),
            RecvIntoError::Failed(e) => e.fmt(f),
        }
    }
}

impl<T> std::error::Error for SendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Failed(_, e) => std::error::Error::source(e),
            SendError::Disconnected(_) => None,
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Failed(e) => std::error::Error::source(e),
            RecvError::Disconnected => None,
        }
    }
}

impl std::error::Error for RecvTimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvTimeoutError::Failed(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl std::error::Error for RecvIntoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvIntoError::Failed(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::Failed(e) => RecvTimeoutError::Failed(e),
        }
    }
}

impl From<RecvError> for RecvIntoError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvIntoError::Disconnected,
            RecvError::Failed(e) => RecvIntoError::Failed(e),
        }
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(_) => ChannelError::Disconnected.into(),
            SendError::Failed(_, e) => e,
        }
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => ChannelError::Disconnected.into(),
            RecvError::Failed(e) => e,
        }
    }
}

impl From<RecvTimeoutError> for Error {
    fn from(e: RecvTimeoutError) -> Self {
        match e {
            RecvTimeoutError::Timeout => ChannelError::Timeout.into(),
            RecvTimeoutError::Disconnected => ChannelError::Disconnected.into(),
            RecvTimeoutError::Failed(e) => e,
        }
    }
}

impl From<RecvIntoError> for Error {
    fn from(e: RecvIntoError) -> Self {
        match e {
            RecvIntoError::BufferTooShort(message) => ChannelError::BufferTooShort(message).into(),
            RecvIntoError::Disconnected => ChannelError::Disconnected.into(),
            RecvIntoError::Failed(e) => e,
        }
    }
}
