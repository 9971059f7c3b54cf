//! [`Process`]: a handle on a child process, with Python's lifecycle.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::os::sys;
use crate::process::bootstrap::{self, Bootstrap};
use crate::process::context;
use crate::process::error::{ChildError, ProcessError};
use crate::process::exit;
use crate::process::forkserver;
use crate::process::logging;
use crate::process::phase;
use crate::process::registry;
use crate::process::report::Report;
pub(crate) use crate::process::sentinel::Sentinel;
use crate::process::start::{self, StartMethod};
use crate::process::started::{Child, Reports, lock};
use crate::process::worker::Worker;
use crate::wire::codec::{self, Encoded};
use crate::wire::error::CodecError;

/// A process that runs a worker: Python's `multiprocessing.Process`.
///
/// Get one from the code `#[worker]` generates (`f::spawn(args)` starts it at once,
/// `f::process(args)` returns it unstarted so that it can be configured), from a
/// `#[process]` struct (`MyProcess { .. }.into_process()` or [`Process::new`]), or for
/// any [`Worker`] with [`Process::from_worker`].
///
/// `R` is what the worker returns; [`join_value`](Self::join_value) gives it back.
///
/// ```
/// #[multiproc::worker]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let p = square::spawn(7)?;
///     assert_eq!(p.join_value()?, 49);
///     assert_eq!(p.exitcode(), Some(0));
///     Ok(())
/// }
/// ```
///
/// # How it runs
///
/// [`start`](Self::start) starts this same program again with arguments that name the
/// worker, by the process's [`StartMethod`](crate::StartMethod): with the fork server
/// (the default), a single-threaded copy of the program exec'd once forks the new
/// process as a child of this one; with `Spawn`, `/proc/self/exe` is started with
/// `posix_spawn`. Either way the parent's memory is not copied. The new process runs
/// the worker before its `main`, and the arguments, the name and the logging set-up
/// reach it over a private socket. Its stdout and stderr are the parent's, and so are
/// its environment, working directory and umask at the start; its stdin is
/// `/dev/null`.
///
/// # Errors and exit codes
///
/// Misuse is an [`Error::Process`] value, never a panic: starting twice, joining or
/// signalling a process that was never started, changing the daemon flag after the
/// start, starting a child from a daemonic process, anything but reading the name after
/// [`close`](Self::close). A child's failure is not an error of `join`; it shows in
/// [`exitcode`](Self::exitcode): `0` after the worker returned, `1` after it panicked or
/// returned `Err` (the child prints `Process <name>:` and the panic or error on its
/// stderr), `n` after [`exit(n)`](crate::exit), `-signal` when a signal killed it.
///
/// # Caveats
///
/// Dropping the handle does not stop the child. Until it ends, the child stays in the
/// parent's list of children ([`active_children`]), and it is joined (or terminated, if
/// daemonic) when the parent exits normally. If the parent is killed instead, the child
/// kills itself: children never outlive their parent as orphans. A finished child is
/// reaped by whichever of `join`, `exitcode`, `is_alive` or `active_children` first sees
/// it end, so no zombie is left; the pid is then never signalled again.
///
/// In the child, [`std::env::args`] are the selector arguments
/// (`--multiproc-child <worker> fd=<n>`; with the fork server, the server's:
/// `--multiproc-child multiproc::forkserver fd=<n>`), not the parent's: give the worker
/// what it needs as its arguments. A program built with `panic = "abort"` still prints the
/// `Process <name>:` report of a panicking worker, but the child then ends with
/// `SIGABRT` (exit code `-6`) instead of 1. A child's output goes straight to the
/// inherited descriptors, so `cargo test` does not capture it. Unlike Python, a child
/// does not wait for threads its worker started: they end with the process.
pub struct Process<R = ()> {
    shared: Arc<Shared>,
    _output: PhantomData<fn() -> R>,
}

/// The state behind every handle on one process.
struct Shared {
    key: &'static str,
    /// `type_name` of the worker's output, to catch a mistyped `join_value`.
    output_type: &'static str,
    state: Mutex<State>,
}

pub(super) struct State {
    pub(super) name: String,
    pub(super) daemon: bool,
    ident: Vec<u32>,
    /// The start method chosen for this process; the program's if `None`.
    start_method: Option<StartMethod>,
    pub(super) phase: Phase,
}

pub(super) enum Phase {
    /// Not started; holds the encoded arguments (or why they could not be encoded).
    Initial(std::result::Result<Encoded, CodecError>),
    /// Started; `exitcode` is set once the child has been reaped.
    Started {
        child: Arc<Child>,
        exitcode: Option<i32>,
    },
    /// Closed; what is still known about the process.
    Closed { exitcode: Option<i32> },
}

impl<R> Process<R> {
    /// An unstarted process that will run worker `W` with `args`.
    ///
    /// Its default name is `Process-N` (or `<Struct>-N` for a `#[process]` struct),
    /// where `N` counts the process objects this process has created, as in Python;
    /// in a child, names continue the parent's: `Process-3:1`.
    pub fn from_worker<W>(args: W::Args) -> Self
    where
        W: Worker<Output = R>,
    {
        let (name, ident) = context::next_identity(W::KIND);
        Process {
            shared: Arc::new(Shared {
                key: W::KEY,
                output_type: std::any::type_name::<R>(),
                state: Mutex::new(State {
                    name,
                    daemon: context::current_daemon(),
                    ident,
                    start_method: None,
                    phase: Phase::Initial(codec::encode_message(&[], &args)),
                }),
            }),
            _output: PhantomData,
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// The process's name.
    pub fn name(&self) -> String {
        self.state().name.clone()
    }

    /// Renames the process. Before the start this is the name the child sees as its
    /// own; after the start it only renames this handle, as in Python.
    pub fn set_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.state().name = name.into();
        self
    }

    /// The same as [`set_name`](Self::set_name), builder-style.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.set_name(name);
        self
    }

    /// Whether the process is daemonic: a daemonic child is terminated, not waited for,
    /// when its parent exits, and cannot start children of its own.
    pub fn daemon(&self) -> bool {
        self.state().daemon
    }

    /// Sets the daemon flag; only before the start ([`ProcessError::DaemonAfterStart`]
    /// after it).
    pub fn set_daemon(&mut self, daemon: bool) -> Result<&mut Self> {
        let mut state = self.state();
        match state.phase {
            Phase::Initial(_) => state.daemon = daemon,
            Phase::Started { .. } => return Err(ProcessError::DaemonAfterStart.into()),
            Phase::Closed { .. } => return Err(ProcessError::Closed.into()),
        }
        drop(state);
        Ok(self)
    }

    /// The same as [`set_daemon`](Self::set_daemon), builder-style.
    pub fn with_daemon(mut self, daemon: bool) -> Result<Self> {
        self.set_daemon(daemon)?;
        Ok(self)
    }

    /// Chooses how this process will be started, instead of the program's method
    /// ([`set_start_method`](crate::set_start_method)); only before the start
    /// ([`ProcessError::StartMethodAfterStart`] after it).
    pub fn set_start_method(&mut self, method: StartMethod) -> Result<&mut Self> {
        let mut state = self.state();
        match state.phase {
            Phase::Initial(_) => state.start_method = Some(method),
            Phase::Started { .. } => return Err(ProcessError::StartMethodAfterStart.into()),
            Phase::Closed { .. } => return Err(ProcessError::Closed.into()),
        }
        drop(state);
        Ok(self)
    }

    /// The same as [`set_start_method`](Self::set_start_method), builder-style.
    pub fn with_start_method(mut self, method: StartMethod) -> Result<Self> {
        self.set_start_method(method)?;
        Ok(self)
    }

    /// The child's process id; `None` before the start and after [`close`](Self::close).
    pub fn pid(&self) -> Option<u32> {
        match &self.state().phase {
            Phase::Started { child, .. } => u32::try_from(child.pid.as_raw()).ok(),
            Phase::Initial(_) | Phase::Closed { .. } => None,
        }
    }

    /// Starts the child.
    ///
    /// Fails, with nothing started, if the process was started before, if the current
    /// process is daemonic, if the arguments could not be encoded, if the worker is not
    /// registered (or registered twice), or if the system cannot start a process.
    pub fn start(&self) -> Result<()> {
        let mut state = self.state();
        let args = match &state.phase {
            Phase::Initial(Ok(args)) => args,
            Phase::Initial(Err(e)) => return Err(e.clone().into()),
            Phase::Started { .. } => return Err(ProcessError::AlreadyStarted.into()),
            Phase::Closed { .. } => return Err(ProcessError::Closed.into()),
        };
        if context::current_daemon() {
            return Err(ProcessError::DaemonicChildren.into());
        }
        if phase::is_bootstrapping() {
            return Err(ProcessError::Bootstrapping.into());
        }
        registry::lookup(self.shared.key)?;
        let parent = bootstrap::Parent {
            name: context::current_name(),
            log_level: logging::child_level().map(|l| l as usize),
        };
        let boot = Bootstrap::new(
            self.shared.key,
            &state.name,
            &state.ident,
            state.daemon,
            parent,
        );
        let method = state.start_method.unwrap_or_else(start::get_start_method);
        let launched = match method {
            StartMethod::Spawn => bootstrap::launch(&boot, args)?,
            StartMethod::ForkServer => forkserver::client::launch(&boot, args)?,
        };
        log::trace!("started {} (pid {})", state.name, launched.pid);
        state.phase = Phase::Started {
            child: Arc::new(Child {
                pid: launched.pid,
                pidfd: Arc::new(launched.pidfd),
                channel: launched.channel,
                reports: Mutex::new(Reports::default()),
            }),
            exitcode: None,
        };
        drop(state);
        register_child(&self.shared);
        exit::join_children_at_exit(shutdown_children);
        Ok(())
    }

    /// The child, for an operation named `op` that needs a started process; or its
    /// exit code if it has been reaped already.
    fn started(&self, op: &'static str) -> Result<(Arc<Child>, Option<i32>)> {
        match &self.state().phase {
            Phase::Started { child, exitcode } => Ok((child.clone(), *exitcode)),
            Phase::Initial(_) => Err(ProcessError::NotStarted(op).into()),
            Phase::Closed { .. } => Err(ProcessError::Closed.into()),
        }
    }

    /// Waits for the child to end; returns its exit code.
    ///
    /// Returns at once if it has ended already, however many times it is called. The
    /// wait is woken by the child's exit itself (its pidfd), not by polling on a timer.
    pub fn join(&self) -> Result<i32> {
        match self.wait_exit("join", None)? {
            Some(code) => Ok(code),
            None => Err(io::Error::from(io::ErrorKind::TimedOut).into()),
        }
    }

    /// Waits up to `timeout` for the child to end; returns its exit code if it has
    /// ended, `None` if it still runs (as Python's `join(timeout)`, after which one
    /// checks `exitcode` or `is_alive`). A zero timeout only checks.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>> {
        self.wait_exit("join", Some(sys::deadline_after(timeout)))
    }

    fn wait_exit(&self, op: &'static str, deadline: Option<Instant>) -> Result<Option<i32>> {
        let (child, exitcode) = self.started(op)?;
        if exitcode.is_some() {
            return Ok(exitcode);
        }
        loop {
            if let Some(code) = self.try_reap(&child)? {
                return Ok(Some(code));
            }
            let eof = lock(&child.reports).eof;
            let mut fds = vec![(child.pidfd.as_fd(), PollFlags::POLLIN)];
            if !eof {
                fds.push((child.channel.as_fd(), PollFlags::POLLIN));
            }
            let ready = sys::poll_until(&fds, deadline)?;
            if ready.iter().all(PollFlags::is_empty) {
                return Ok(None);
            }
            if ready.get(1).is_some_and(|r| !r.is_empty()) {
                child.drain();
            }
        }
    }

    /// Reaps the child if it has ended; its exit code then.
    fn try_reap(&self, child: &Arc<Child>) -> Result<Option<i32>> {
        let mut state = self.state();
        let code = match &state.phase {
            Phase::Started {
                exitcode: Some(code),
                ..
            } => return Ok(Some(*code)),
            Phase::Started { .. } => {
                match waitid(
                    Id::PIDFd(child.pidfd.as_fd()),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
                ) {
                    Ok(WaitStatus::Exited(_, code)) => code,
                    Ok(WaitStatus::Signaled(_, signal, _)) => -(signal as i32),
                    Ok(_) => return Ok(None),
                    Err(Errno::ECHILD) => {
                        return Err(io::Error::other(format!(
                            "process {} (pid {}) was reaped by someone else; \
                             is SIGCHLD ignored?",
                            state.name, child.pid
                        ))
                        .into());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Phase::Initial(_) => return Ok(None),
            Phase::Closed { exitcode, .. } => return Ok(*exitcode),
        };
        // Everything the child sent is in the socket buffer now.
        child.drain();
        if let Phase::Started { exitcode, .. } = &mut state.phase {
            *exitcode = Some(code);
        }
        log::trace!(
            "{} (pid {}) ended with exitcode {code}",
            state.name,
            child.pid
        );
        drop(state);
        unregister_child(&self.shared);
        Ok(Some(code))
    }

    /// Whether the child runs: started and not yet ended. Reaps it if it has ended.
    /// `false` before the start and after [`close`](Self::close).
    pub fn is_alive(&self) -> bool {
        match self.started("check") {
            Ok((child, None)) => matches!(self.try_reap(&child), Ok(None)),
            _ => false,
        }
    }

    /// The exit code: `None` while the child runs (or before the start); `0` when the
    /// worker returned, `1` when it panicked or returned `Err`, `n` after
    /// [`exit(n)`](crate::exit), `-signal` when a signal killed it. Reaps the child if
    /// it has ended.
    pub fn exitcode(&self) -> Option<i32> {
        match self.started("check") {
            Ok((_, Some(code))) => Some(code),
            Ok((child, None)) => self.try_reap(&child).ok().flatten(),
            Err(_) => match self.state().phase {
                Phase::Closed { exitcode, .. } => exitcode,
                _ => None,
            },
        }
    }

    /// Sends `SIGTERM` to the child (Python's `terminate`). Its exit code becomes
    /// `-15` unless it handles the signal. Does nothing if the child has ended.
    pub fn terminate(&self) -> Result<()> {
        self.signal("terminate", Signal::SIGTERM)
    }

    /// Sends `SIGINT` to the child (Python 3.14's `interrupt`). Unless the worker
    /// handles the signal, its exit code becomes `-2`. Does nothing if the child has
    /// ended.
    pub fn interrupt(&self) -> Result<()> {
        self.signal("interrupt", Signal::SIGINT)
    }

    /// Sends `SIGKILL` to the child. Its exit code becomes `-9`. Does nothing if the
    /// child has ended.
    pub fn kill(&self) -> Result<()> {
        self.signal("kill", Signal::SIGKILL)
    }

    fn signal(&self, op: &'static str, signal: Signal) -> Result<()> {
        // The state lock is held across the signal, so the child cannot be reaped
        // (and its pid reused) in between; the pidfd makes that doubly sure.
        let state = self.state();
        match &state.phase {
            Phase::Started {
                child,
                exitcode: None,
            } => match sys::pidfd_send_signal(child.pidfd.as_fd(), signal) {
                Ok(()) | Err(Errno::ESRCH) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Phase::Started { .. } => Ok(()),
            Phase::Initial(_) => Err(ProcessError::NotStarted(op).into()),
            Phase::Closed { .. } => Err(ProcessError::Closed.into()),
        }
    }

    /// Something [`wait`](crate::wait()) can watch: ready once the child has ended.
    pub fn sentinel(&self) -> Result<Sentinel> {
        let (child, _) = self.started("watch")?;
        Ok(Sentinel::new(child.pidfd.clone()))
    }

    /// Releases the handle's resources (the child's pidfd and channel). Fails with
    /// [`ProcessError::StillRunning`] while the child runs; does nothing on a process
    /// never started or already closed. Afterwards only [`name`](Self::name),
    /// [`exitcode`](Self::exitcode) and [`daemon`](Self::daemon) still answer.
    pub fn close(&self) -> Result<()> {
        let exitcode = match self.started("close") {
            Ok((child, exitcode)) => {
                let exitcode = match exitcode {
                    Some(code) => code,
                    None => match self.try_reap(&child)? {
                        Some(code) => code,
                        None => return Err(ProcessError::StillRunning.into()),
                    },
                };
                Some(exitcode)
            }
            Err(Error::Process(ProcessError::NotStarted(_))) => None,
            Err(Error::Process(ProcessError::Closed)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.state().phase = Phase::Closed { exitcode };
        Ok(())
    }

    /// Waits for the child to end and returns the value its worker returned.
    ///
    /// When the worker did not return a value (it panicked, returned `Err`, called
    /// [`exit`](crate::exit), or was killed) the error is an [`Error::Child`] that says
    /// which, with the panic message where there is one. Can be called again: each call
    /// decodes the value anew.
    pub fn join_value(&self) -> Result<R>
    where
        R: DeserializeOwned,
    {
        let requested = std::any::type_name::<R>();
        if requested != self.shared.output_type {
            return Err(ProcessError::OutputType {
                expected: self.shared.output_type,
                requested,
            }
            .into());
        }
        let code = self.join()?;
        let (child, _) = self.started("join")?;
        let name = self.name();
        let reports = lock(&child.reports);
        match &reports.report {
            Some(Ok(Report::Value(value))) if code == 0 => {
                let fds = value
                    .fds
                    .iter()
                    .map(OwnedFd::try_clone)
                    .collect::<io::Result<Vec<_>>>()?;
                Ok(codec::decode(&value.bytes, fds)?)
            }
            Some(Ok(Report::Panic {
                message, location, ..
            })) => Err(ChildError::panicked(name, code, message.clone(), location.clone()).into()),
            Some(Ok(Report::Failed(message))) => {
                Err(ChildError::failed(name, code, message.clone()).into())
            }
            Some(Err(e)) => Err(e.clone().into()),
            _ => Err(ChildError::no_value(name, code).into()),
        }
    }
}

impl Process<()> {
    /// An unstarted process that runs a `#[process]` struct: the same as
    /// `process.into_process()`.
    pub fn new<P>(process: P) -> Self
    where
        P: Worker<Args = P, Output = ()>,
    {
        Process::from_worker::<P>(process)
    }
}

/// The started, not yet reaped children of this process.
static CHILDREN: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());

fn register_child(shared: &Arc<Shared>) {
    lock(&CHILDREN).push(shared.clone());
}

fn unregister_child(shared: &Arc<Shared>) {
    lock(&CHILDREN).retain(|s| !Arc::ptr_eq(s, shared));
}

/// The children of the current process that are still running, as Python's
/// `active_children()`. Reaps the ones that have ended, so their exit codes become
/// readable on their handles.
///
/// The handles are untyped (`Process<()>`): use them to join, check or terminate.
pub fn active_children() -> Vec<Process> {
    let children: Vec<Arc<Shared>> = lock(&CHILDREN).clone();
    children
        .into_iter()
        .map(|shared| Process {
            shared,
            _output: PhantomData,
        })
        .filter(Process::is_alive)
        .collect()
}

/// At exit: terminate daemonic children, then join every child, as Python does.
/// Registered with [`exit`] by [`Process::start`]; the exit function calls it.
///
/// Holds no lock while it signals or joins: [`active_children`] copies the list out of
/// its lock, and each handle takes its own lock only for a moment, never across a wait.
/// Another thread may be inside the runtime (starting, listing, describing children)
/// while this one exits.
fn shutdown_children() {
    for p in active_children() {
        if p.daemon() {
            log::info!("calling terminate() for daemon {}", p.name());
            let _ = p.terminate();
        }
    }
    for p in active_children() {
        log::info!("calling join() for process {}", p.name());
        if let Err(e) = p.join() {
            log::warn!("cannot join {}: {e}", p.name());
        }
    }
}
