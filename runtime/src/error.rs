//! Error types: one small type per concern, all convertible into [`Error`].
//!
//! Messages are lower-case and say what happened; where Python's `multiprocessing`
//! raises for the same misuse, the message follows Python's wording.

use std::fmt;
use std::io;

/// The result type of multiproc's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error multiproc reports.
///
/// Each variant wraps a narrower type that the operation producing it documents;
/// match on the variant to handle one kind, or print the error for a message.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operation that the process handle's state does not allow, such as starting a
    /// process twice or joining one that was never started.
    Process(ProcessError),
    /// The child ended without producing the value that was asked for.
    Child(ChildError),
    /// A value could not be encoded, or bytes could not be decoded.
    Codec(CodecError),
    /// The worker to run is not registered, or registered twice under one key.
    Registry(RegistryError),
    /// A queue or a connection could not do what was asked.
    Channel(ChannelError),
    /// A lock, semaphore, condition, barrier or shared array refused an operation, or
    /// was created with an argument out of range.
    Sync(crate::sync::SyncError),
    /// The operating system refused an operation.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Process(e) => e.fmt(f),
            Error::Child(e) => e.fmt(f),
            Error::Codec(e) => e.fmt(f),
            Error::Registry(e) => e.fmt(f),
            Error::Channel(e) => e.fmt(f),
            Error::Sync(e) => e.fmt(f),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Process(e) => Some(e),
            Error::Child(e) => Some(e),
            Error::Codec(e) => Some(e),
            Error::Registry(e) => Some(e),
            Error::Channel(e) => Some(e),
            Error::Sync(e) => Some(e),
            Error::Io(e) => Some(e),
        }
    }
}

impl From<ProcessError> for Error {
    fn from(e: ProcessError) -> Self {
        Error::Process(e)
    }
}

impl From<ChildError> for Error {
    fn from(e: ChildError) -> Self {
        Error::Child(e)
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::Codec(e)
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::Registry(e)
    }
}

impl From<ChannelError> for Error {
    fn from(e: ChannelError) -> Self {
        Error::Channel(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<nix::errno::Errno> for Error {
    fn from(e: nix::errno::Errno) -> Self {
        Error::Io(e.into())
    }
}

/// A [`Process`](crate::Process) operation that its state does not allow.
///
/// These are the misuses Python's `multiprocessing` reports with `AssertionError` or
/// `ValueError`; the messages follow Python's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessError {
    /// `start` on a process that was already started (running or finished).
    AlreadyStarted,
    /// An operation that needs a started process (`join`, `terminate`, `kill`,
    /// `sentinel`, `join_value`) on one that was never started. Holds the operation.
    NotStarted(&'static str),
    /// `set_daemon` after `start`.
    DaemonAfterStart,
    /// A daemonic process tried to start a child.
    DaemonicChildren,
    /// `close` while the process is still running.
    StillRunning,
    /// Any operation but reading the name after `close`.
    Closed,
    /// A process was started while this process was still being bootstrapped as a
    /// child, before its worker ran (for example from a constructor function).
    Bootstrapping,
    /// `join_value` asked for a different type than the worker returns (possible only
    /// with the untyped handles of [`active_children`](crate::active_children)).
    OutputType {
        /// The type the worker returns.
        expected: &'static str,
        /// The type that was asked for.
        requested: &'static str,
    },
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::AlreadyStarted => f.write_str("cannot start a process twice"),
            ProcessError::NotStarted(op) => write!(f, "can only {op} a started process"),
            ProcessError::DaemonAfterStart => f.write_str("process has already started"),
            ProcessError::DaemonicChildren => {
                f.write_str("daemonic processes are not allowed to have children")
            }
            ProcessError::StillRunning => f.write_str(
                "cannot close a process while it is still running; \
                 call join() or terminate() first",
            ),
            ProcessError::Closed => f.write_str("process object is closed"),
            ProcessError::Bootstrapping => f.write_str(
                "an attempt has been made to start a new process before the current \
                 process has finished its bootstrapping phase",
            ),
            ProcessError::OutputType {
                expected,
                requested,
            } => write!(
                f,
                "the worker returns `{expected}`, but its value was asked for as `{requested}`"
            ),
        }
    }
}

impl std::error::Error for ProcessError {}

/// Why a child ended without a value: it panicked, returned `Err`, called
/// [`exit`](crate::exit), or was killed by a signal.
///
/// Returned by [`Process::join_value`](crate::Process::join_value). The child's own
/// stderr shows the same report, headed `Process <name>:` as in Python.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildError {
    name: String,
    exitcode: i32,
    cause: ChildCause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ChildCause {
    Panic {
        message: String,
        location: Option<String>,
    },
    Failed(String),
    NoValue,
}

impl ChildError {
    pub(crate) fn panicked(
        name: String,
        exitcode: i32,
        message: String,
        location: Option<String>,
    ) -> Self {
        ChildError {
            name,
            exitcode,
            cause: ChildCause::Panic { message, location },
        }
    }

    pub(crate) fn failed(name: String, exitcode: i32, message: String) -> Self {
        ChildError {
            name,
            exitcode,
            cause: ChildCause::Failed(message),
        }
    }

    pub(crate) fn no_value(name: String, exitcode: i32) -> Self {
        ChildError {
            name,
            exitcode,
            cause: ChildCause::NoValue,
        }
    }

    /// The name of the process that failed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's exit code: 1 after a panic or `Err`, `n` after `exit(n)`, `-signal`
    /// when a signal killed it.
    pub fn exitcode(&self) -> i32 {
        self.exitcode
    }

    /// Whether the worker panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.cause, ChildCause::Panic { .. })
    }

    /// The panic message, if the worker panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.cause {
            ChildCause::Panic { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Where the worker panicked (`file:line:column`), if it panicked and the location
    /// was known.
    pub fn panic_location(&self) -> Option<&str> {
        match &self.cause {
            ChildCause::Panic { location, .. } => location.as_deref(),
            _ => None,
        }
    }

    /// The `Debug` text of the error the worker returned, if it returned `Err`.
    pub fn error_message(&self) -> Option<&str> {
        match &self.cause {
            ChildCause::Failed(message) => Some(message),
            _ => None,
        }
    }

    /// The signal that killed the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        (self.exitcode < 0).then_some(-self.exitcode)
    }
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match &self.cause {
            ChildCause::Panic { message, location } => {
                write!(f, "process {name} panicked")?;
                if let Some(location) = location {
                    write!(f, " at {location}")?;
                }
                write!(f, ": {message}")
            }
            ChildCause::Failed(message) => write!(f, "process {name} failed: {message}"),
            ChildCause::NoValue if self.exitcode < 0 => {
                let signal = -self.exitcode;
                match nix::sys::signal::Signal::try_from(signal) {
                    Ok(sig) => write!(f, "process {name} was killed by {}", sig.as_str()),
                    Err(_) => write!(f, "process {name} was killed by signal {signal}"),
                }
            }
            ChildCause::NoValue => write!(
                f,
                "process {name} exited with exitcode {} without a value",
                self.exitcode
            ),
        }
    }
}

impl std::error::Error for ChildError {}

/// A value that could not be encoded, or bytes that could not be decoded.
///
/// Decoding never trusts its input: a truncated, oversized or garbled message gives
/// this error, never a panic or an allocation sized by a forged length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    kind: CodecErrorKind,
    detail: String,
}

/// What went wrong in a [`CodecError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecErrorKind {
    /// A value could not be encoded.
    Encode,
    /// Bytes did not decode as the expected type.
    Decode,
    /// A message declared a length above the limit.
    Oversized,
    /// The stream ended in the middle of a message.
    Truncated,
    /// A message had bytes left over after the value.
    TrailingBytes,
}

impl CodecError {
    pub(crate) fn new(kind: CodecErrorKind, detail: impl Into<String>) -> Self {
        CodecError {
            kind,
            detail: detail.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> CodecErrorKind {
        self.kind
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            CodecErrorKind::Encode => "cannot encode value",
            CodecErrorKind::Decode => "cannot decode message",
            CodecErrorKind::Oversized => "message too large",
            CodecErrorKind::Truncated => "truncated message",
            CodecErrorKind::TrailingBytes => "garbled message",
        };
        write!(f, "{what}: {}", self.detail)
    }
}

impl std::error::Error for CodecError {}

/// A worker key that the registry cannot resolve to exactly one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// No `#[worker]` or `#[process]` is registered under the key.
    Unknown(String),
    /// Several entries share the key. Holds the key and the `file:line` of each.
    Duplicate(String, Vec<String>),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Unknown(key) => write!(
                f,
                "no worker is registered under `{key}` in this binary \
                 (was the crate that defines it linked in?)"
            ),
            RegistryError::Duplicate(key, places) => write!(
                f,
                "{} workers are registered under the same key `{key}` (at {}); \
                 give each a distinct key with #[worker(name = \"...\")]",
                places.len(),
                places.join(", ")
            ),
        }
    }
}

impl std::error::Error for RegistryError {}

/// Why an operation on a queue or a connection did not complete.
///
/// The operations themselves return narrower types (such as
/// [`TryPutError`](crate::TryPutError) or [`RecvError`](crate::RecvError)) that give
/// back the value that was not sent; they convert into [`Error::Channel`] with this
/// inside, so that `?` works in a function returning [`Result`]. Where Python's
/// `multiprocessing` raises for the same case, the message follows Python's.
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
