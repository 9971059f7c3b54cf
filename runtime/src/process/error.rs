//! The process layer's errors: misuse of a [`Process`](crate::Process), a child that
//! ended without a value, and a worker key the registry cannot resolve.

use std::fmt;

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
    /// [`set_start_method`](crate::set_start_method) after the program's start method
    /// was set or used (a child was started with it), as Python's `set_start_method`.
    StartMethodSet,
    /// `set_start_method` on a process that was already started.
    StartMethodAfterStart,
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
            ProcessError::StartMethodSet => f.write_str("context has already been set"),
            ProcessError::StartMethodAfterStart => {
                f.write_str("cannot change the start method of a started process")
            }
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

/// A worker key that the registry cannot resolve to exactly one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
