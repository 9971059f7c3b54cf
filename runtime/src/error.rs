//! Error types: one small type per concern, all convertible into [`Error`].
//!
//! Messages are lower-case and say what happened; where Python's `multiprocessing`
//! raises for the same misuse, the message follows Python's wording.

use std::fmt;
use std::io;

pub use crate::ipc::error::{ChannelError, Corruption};
use crate::launch::error::LaunchError;
pub use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::pool::error::{PoolError, TaskError};
pub use crate::process::error::{ChildError, ProcessError, RegistryError};
pub use crate::wire::error::{CodecError, CodecErrorKind};

/// The result type of multiproc's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error multiproc reports.
///
/// Each variant wraps a narrower type that the operation producing it documents;
/// match on the variant to handle one kind, or print the error for a message.
///
/// The wrapping is transparent: an `Error` prints as the error inside it, and its
/// [`source`](std::error::Error::source) is that error's source, so that reporters
/// which walk the chain (`anyhow`, `eyre`) print each message once.
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
    /// A [`Pool`](crate::Pool) or an [`AsyncResult`](crate::AsyncResult) was misused,
    /// or a `get_timeout` ran out of time.
    Pool(PoolError),
    /// A pool task did not give a value: it panicked, returned `Err`, lost its worker
    /// or timed out.
    Task(TaskError),
    /// A manager, its server or one of its proxies refused an operation, or the server
    /// is gone.
    Manager(ManagerError),
    /// Workers could not be started on a cluster, or did not connect back.
    Launch(LaunchError),
    /// A [`SharedMemory`](crate::SharedMemory) or
    /// [`ShareableList`](crate::ShareableList) refused an operation.
    SharedMemory(crate::sync::SharedMemoryError),
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
            Error::Pool(e) => e.fmt(f),
            Error::Task(e) => e.fmt(f),
            Error::Manager(e) => e.fmt(f),
            Error::Launch(e) => e.fmt(f),
            Error::SharedMemory(e) => e.fmt(f),
            Error::Io(e) => e.fmt(f),
        }
    }
}

// Transparent: `Display` already shows the inner error, so `source` is the inner
// error's own source, never the inner error itself (which would print it twice).
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Process(e) => e.source(),
            Error::Child(e) => e.source(),
            Error::Codec(e) => e.source(),
            Error::Registry(e) => e.source(),
            Error::Channel(e) => e.source(),
            Error::Sync(e) => e.source(),
            Error::Io(e) => e.source(),
            Error::Pool(e) => e.source(),
            Error::Task(e) => e.source(),
            Error::Manager(e) => e.source(),
            Error::Launch(e) => e.source(),
            Error::SharedMemory(e) => e.source(),
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

impl From<PoolError> for Error {
    fn from(e: PoolError) -> Self {
        Error::Pool(e)
    }
}

impl From<TaskError> for Error {
    fn from(e: TaskError) -> Self {
        Error::Task(e)
    }
}

impl From<ManagerError> for Error {
    fn from(e: ManagerError) -> Self {
        Error::Manager(e)
    }
}

impl From<LaunchError> for Error {
    fn from(e: LaunchError) -> Self {
        Error::Launch(e)
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
