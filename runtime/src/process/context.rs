//! Who this process is: its name and identity ([`current_process`]), the counter
//! behind default names, its parent ([`parent_process`]), and [`cpu_count`].

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use nix::poll::PollFlags;
use nix::unistd::{SysconfVar, sysconf};

use crate::os::sys;
use crate::process::sentinel::Sentinel;

/// The name of the top-level process, as in Python.
pub const MAIN_PROCESS_NAME: &str = "MainProcess";

struct Identity {
    name: String,
    /// The counters along the path from the top process: `[3, 1]` is `Process-3:1`.
    ident: Vec<u32>,
    daemon: bool,
}

static CURRENT: RwLock<Option<Identity>> = RwLock::new(None);
static PARENT: RwLock<Option<ParentProcess>> = RwLock::new(None);
/// The counter behind default names; it counts every process object created here.
static COUNTER: AtomicU32 = AtomicU32::new(1);

fn with_current<T>(f: impl FnOnce(Option<&Identity>) -> T) -> T {
    let guard = CURRENT.read().unwrap_or_else(PoisonError::into_inner);
    f(guard.as_ref())
}

/// The process this code runs in.
///
/// In the top-level program its name is `"MainProcess"`; in a child, the name the
/// parent gave it (`Process-1`, `Process-1:2`, or one set with
/// [`Process::set_name`](crate::Process::set_name)).
///
/// ```
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// assert!(!me.daemon());
/// ```
pub fn current_process() -> CurrentProcess {
    with_current(|id| match id {
        Some(id) => CurrentProcess {
            name: id.name.clone(),
            ident: id.ident.clone(),
            daemon: id.daemon,
        },
        None => CurrentProcess {
            name: MAIN_PROCESS_NAME.to_owned(),
            ident: Vec::new(),
            daemon: false,
        },
    })
}

/// A snapshot of the current process's identity, from [`current_process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    ident: Vec<u32>,
    daemon: bool,
}

impl CurrentProcess {
    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Whether this process is daemonic (a daemonic process cannot start children and
    /// is terminated when its parent exits).
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// The counters along the path from the top process: empty in the top process,
    /// `[3, 1]` in the first child of the third child. Default names are built from it.
    pub fn identity(&self) -> &[u32] {
        &self.ident
    }

    /// Renames the current process; log lines from now on carry the new name, and
    /// children started from now on see it as their parent's name.
    pub fn set_name(&mut self, name: impl Into<String>) {
        let name = name.into();
        let mut guard = CURRENT.write().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut() {
            Some(id) => id.name.clone_from(&name),
            None => {
                *guard = Some(Identity {
                    name: name.clone(),
                    ident: Vec::new(),
                    daemon: false,
                })
            }
        }
        self.name = name;
    }
}

/// The current process's name (for log lines).
pub(crate) fn current_name() -> String {
    with_current(|id| id.map_or_else(|| MAIN_PROCESS_NAME.to_owned(), |id| id.name.clone()))
}

/// Whether the current process is daemonic.
pub(crate) fn current_daemon() -> bool {
    with_current(|id| id.is_some_and(|id| id.daemon))
}

/// The next default name for a process object of kind `kind`, and its identity.
pub(crate) fn next_identity(kind: &str) -> (String, Vec<u32>) {
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut ident = with_current(|id| id.map(|id| id.ident.clone()).unwrap_or_default());
    ident.push(count);
    let path: Vec<String> = ident.iter().map(u32::to_string).collect();
    (format!("{kind}-{}", path.join(":")), ident)
}

/// Called once in a child, from its bootstrap, before the worker runs.
pub(crate) fn init_child(name: String, ident: Vec<u32>, daemon: bool, parent: ParentProcess) {
    *CURRENT.write().unwrap_or_else(PoisonError::into_inner) = Some(Identity {
        name,
        ident,
        daemon,
    });
    *PARENT.write().unwrap_or_else(PoisonError::into_inner) = Some(parent);
}

/// The parent of the current process; `None` in the top-level program.
///
/// ```
/// assert!(multiproc::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    PARENT
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The parent of a child process, from [`parent_process`].
///
/// A child cannot join its parent, but it can see whether the parent still runs,
/// and wait for it to end.
#[derive(Debug, Clone)]
pub struct ParentProcess {
    pid: u32,
    name: String,
    pidfd: Option<Arc<OwnedFd>>,
}

impl ParentProcess {
    pub(crate) fn new(pid: u32, name: String, pidfd: Option<Arc<OwnedFd>>) -> Self {
        ParentProcess { pid, name, pidfd }
    }

    /// The parent's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The parent's name as it was when it started this process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the parent is still running.
    pub fn is_alive(&self) -> bool {
        match &self.pidfd {
            Some(fd) => !sys::is_readable(fd.as_fd()).unwrap_or(true),
            None => false,
        }
    }

    /// Waits up to `timeout` for the parent to end; returns whether it has ended.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        match &self.pidfd {
            Some(fd) => {
                let deadline = Some(sys::deadline_after(timeout));
                sys::poll_until(&[(fd.as_fd(), PollFlags::POLLIN)], deadline)
                    .map_or(true, |ready| !ready[0].is_empty())
            }
            None => true,
        }
    }

    /// Something [`wait`](crate::wait()) can watch: ready once the parent has ended.
    /// `None` if the parent had already ended when this process started.
    pub fn sentinel(&self) -> Option<Sentinel> {
        self.pidfd.clone().map(Sentinel::new)
    }
}

/// The number of CPUs online, at least 1 (Python's `cpu_count()`).
pub fn cpu_count() -> usize {
    match sysconf(SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(n)) if n > 0 => usize::try_from(n).unwrap_or(1),
        _ => std::thread::available_parallelism().map_or(1, usize::from),
    }
}
