//! The pool's errors: [`TaskError`] says what happened to one task; [`PoolError`] is a
//! misuse of the pool or of an [`AsyncResult`](crate::AsyncResult).

use std::fmt;
use std::time::Duration;

/// What happened to one task that did not give a value.
///
/// [`Pool::map`](crate::Pool::map) returns the first failing task's error (by input
/// position, once every task has finished); [`Pool::imap`](crate::Pool::imap) yields
/// it at its position and goes on. It converts into [`Error::Task`](crate::Error::Task).
///
/// ```
/// use multiproc::Pool;
///
/// #[multiproc::worker]
/// fn check(x: u64) -> Result<u64, String> {
///     if x == 3 { Err(format!("bad {x}")) } else { Ok(x) }
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::new(2)?;
///     let results: Vec<_> = pool.imap::<check>(0..5)?.collect();
///     let e = results[3].as_ref().unwrap_err();
///     assert!(e.is_failed());
///     assert_eq!(e.message(), "\"bad 3\"");
///     assert_eq!(results[4].as_ref().ok(), Some(&4));
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Panic {
        message: String,
        location: Option<String>,
    },
    Failed(String),
    Lost(Lost),
    Timeout {
        timeout: Duration,
        worker: String,
        pid: Option<u32>,
    },
    Terminated,
    Initializer {
        worker: String,
        message: String,
    },
    Broken(String),
}

/// How a worker was lost, as the pool saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    pub(crate) worker: String,
    pub(crate) pid: Option<u32>,
    /// The worker's exit code (`-signal` when a signal killed it).
    pub(crate) exitcode: Option<i32>,
    /// The cgroup's OOM kill count rose when the worker died.
    pub(crate) oom: bool,
    /// The task had finished, but its result had not been sent yet.
    pub(crate) unsent: bool,
    /// The node of a worker on another machine.
    pub(crate) node: Option<String>,
    /// How many workers were lost while they held the task (more than one when it was
    /// requeued after a lost node).
    pub(crate) tries: u32,
}

impl TaskError {
    pub(crate) fn panic(message: String, location: Option<String>) -> Self {
        TaskError {
            kind: Kind::Panic { message, location },
        }
    }

    pub(crate) fn failed(message: String) -> Self {
        TaskError {
            kind: Kind::Failed(message),
        }
    }

    pub(crate) fn lost(lost: Lost) -> Self {
        TaskError {
            kind: Kind::Lost(lost),
        }
    }

    pub(crate) fn timeout(timeout: Duration, worker: String, pid: Option<u32>) -> Self {
        TaskError {
            kind: Kind::Timeout {
                timeout,
                worker,
                pid,
            },
        }
    }

    pub(crate) fn terminated() -> Self {
        TaskError {
            kind: Kind::Terminated,
        }
    }

    pub(crate) fn initializer(worker: String, message: String) -> Self {
        TaskError {
            kind: Kind::Initializer { worker, message },
        }
    }

    pub(crate) fn broken(message: String) -> Self {
        TaskError {
            kind: Kind::Broken(message),
        }
    }

    /// The pool stopped starting workers because they kept ending before they ran a
    /// task (for example, killed at start by a resource limit); the task never ran.
    pub fn is_broken(&self) -> bool {
        matches!(self.kind, Kind::Broken(_))
    }

    /// The task panicked; [`message`](Self::message) and [`location`](Self::location)
    /// say where and why.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, Kind::Panic { .. })
    }

    /// The task returned `Err` (its `Debug` text is the [`message`](Self::message)), or
    /// its arguments or its value could not cross between the processes.
    pub fn is_failed(&self) -> bool {
        matches!(self.kind, Kind::Failed(_))
    }

    /// The worker running the task ended before the task's result reached the pool
    /// (killed by a signal, by the OOM killer, or exited). The pool replaced it.
    pub fn is_lost(&self) -> bool {
        matches!(self.kind, Kind::Lost(_))
    }

    /// The task ran longer than the pool's
    /// [`task_timeout`](crate::PoolBuilder::task_timeout); its worker was killed and
    /// replaced.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout { .. })
    }

    /// The pool was terminated (or dropped) before the task finished.
    pub fn is_terminated(&self) -> bool {
        matches!(self.kind, Kind::Terminated)
    }

    /// The pool's initializer failed in a worker, so the task never ran.
    pub fn is_initializer(&self) -> bool {
        matches!(self.kind, Kind::Initializer { .. })
    }

    /// Whether the kernel's OOM killer killed the worker that held the task (known
    /// from the cgroup's `memory.events`).
    pub fn is_oom(&self) -> bool {
        matches!(&self.kind, Kind::Lost(lost) if lost.oom)
    }

    /// The panic message, the `Err`'s `Debug` text, or (for the other kinds) the same
    /// description as `Display`.
    pub fn message(&self) -> String {
        match &self.kind {
            Kind::Panic { message, .. } => message.clone(),
            Kind::Failed(message) => message.clone(),
            Kind::Initializer { message, .. } => message.clone(),
            _ => self.to_string(),
        }
    }

    /// Where the task panicked (`file:line:column`), if it panicked.
    pub fn location(&self) -> Option<&str> {
        match &self.kind {
            Kind::Panic { location, .. } => location.as_deref(),
            _ => None,
        }
    }

    /// The name of the worker that was lost or timed out (`SpawnPoolWorker-N`).
    pub fn worker_name(&self) -> Option<&str> {
        match &self.kind {
            Kind::Lost(lost) => Some(&lost.worker),
            Kind::Timeout { worker, .. } | Kind::Initializer { worker, .. } => Some(worker),
            _ => None,
        }
    }

    /// The node of the lost worker, for a worker on another machine (a
    /// [`Slurm`](crate::Slurm) pool): its task was requeued on other workers until
    /// [`retries`](crate::Slurm::retries) ran out.
    pub fn node(&self) -> Option<&str> {
        match &self.kind {
            Kind::Lost(lost) => lost.node.as_deref(),
            _ => None,
        }
    }

    /// The process id of the worker that was lost or timed out.
    pub fn pid(&self) -> Option<u32> {
        match &self.kind {
            Kind::Lost(lost) => lost.pid,
            Kind::Timeout { pid, .. } => *pid,
            _ => None,
        }
    }

    /// The exit code of the lost worker: `-signal` when a signal killed it (`-9` for
    /// `SIGKILL`, which the OOM killer sends too).
    pub fn exitcode(&self) -> Option<i32> {
        match &self.kind {
            Kind::Lost(lost) => lost.exitcode,
            _ => None,
        }
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ...
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn describe_exit(f: &mut fmt::Formatter<'_>, code: Option<i32>) -> fmt::Result {
    match code {
        Some(code) if code < 0 => {
            let signal = nix::sys::signal::Signal::try_from(-code)
                .map(|s| s.as_str())
                .unwrap_or("unknown signal");
            write!(f, "was killed by signal {} ({signal})", -code)
        }
        Some(code) => write!(f, "exited with code {code}"),
        None => f.write_str("ended"),
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Panic {
                message,
                location: Some(location),
            } => write!(f, "task panicked at {location}: {message}"),
            Kind::Panic {
                message,
                location: None,
            } => write!(f, "task panicked: {message}"),
            Kind::Failed(message) => write!(f, "task failed: {message}"),
            Kind::Lost(lost) => {
                f.write_str("task lost: worker ")?;
                f.write_str(&lost.worker)?;
                if let Some(pid) = lost.pid {
                    write!(f, " (pid {pid})")?;
                }
                if let Some(node) = &lost.node {
                    write!(f, " on node {node}")?;
                }
                f.write_str(" ")?;
                describe_exit(f, lost.exitcode)?;
                if lost.tries > 1 {
                    write!(f, " (the task's {} worker lost)", ordinal(lost.tries))?;
                }
                if lost.oom {
                    f.write_str("; killed by the kernel's OOM killer")?;
                }
                if lost.unsent {
                    f.write_str(" after the task finished, before its result was sent")?;
                }
                Ok(())
            }
            Kind::Timeout {
                timeout,
                worker,
                pid,
            } => {
                write!(f, "task timed out after {timeout:?}; worker {worker}")?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                f.write_str(" was killed and replaced")
            }
            Kind::Terminated => f.write_str("the pool was terminated before the task finished"),
            Kind::Initializer { worker, message } => {
                write!(f, "the pool's initializer failed in {worker}: {message}")
            }
            Kind::Broken(message) => write!(f, "the pool is broken: {message}"),
        }
    }
}

impl std::error::Error for TaskError {}

/// A misuse of a [`Pool`](crate::Pool) or an [`AsyncResult`](crate::AsyncResult).
///
/// The messages follow Python's `multiprocessing.pool`, which raises `ValueError` (or
/// `TimeoutError`) for the same cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// `Pool::new(0)` or `processes(0)`.
    NoProcesses,
    /// `maxtasksperchild(0)`.
    MaxTasksPerChild,
    /// `task_timeout` of zero.
    TaskTimeout,
    /// A chunk size of 0.
    ChunkSize,
    /// A submission after `close` or `terminate`.
    NotRunning,
    /// `join` before `close` or `terminate`.
    StillRunning,
    /// [`AsyncResult::successful`](crate::AsyncResult::successful) before the result
    /// is ready.
    NotReady,
    /// [`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout) ran out of time.
    Timeout,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolError::NoProcesses => "Number of processes must be at least 1",
            PoolError::MaxTasksPerChild => "maxtasksperchild must be a positive int or None",
            PoolError::TaskTimeout => "task_timeout must be longer than zero",
            PoolError::ChunkSize => "Chunksize must be 1+, not 0",
            PoolError::NotRunning => "Pool not running",
            PoolError::StillRunning => "Pool is still running",
            PoolError::NotReady => "AsyncResult not ready",
            PoolError::Timeout => "timed out waiting for the result",
        })
    }
}

impl std::error::Error for PoolError {}

impl PoolError {
    /// Whether this is a [`Timeout`](Self::Timeout) of `get_timeout`.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout)
    }
}
