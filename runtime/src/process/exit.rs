//! How this process ends: [`exit`], the exit function that shuts the children down
//! (Python's `util._exit_function`), the `atexit` hook that runs it when the program
//! ends normally, and a child's last steps after its worker.
//!
//! The list of children belongs to [`handle`](super::handle), above this module: when it
//! starts a child it registers its shutdown with [`join_children_at_exit`], and the exit
//! function calls what was registered. No lock is held while the exit function runs,
//! and the registered shutdown takes the list out of its lock before it signals or
//! joins anyone: another thread may be inside the runtime, holding or waiting for a
//! lock, while this one exits.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};

use nix::libc;

use crate::process::context;
use crate::process::phase::{self, Phase};
use crate::process::report::Report;

/// Ends the current process with exit code `code`, as Python's `sys.exit(code)`.
///
/// In a worker, this ends the child the way returning does: the child's own children
/// are joined (daemonic ones terminated), the exit is logged, and the parent sees
/// [`exitcode()`](crate::Process::exitcode) `Some(code)`. On the worker's thread the
/// worker's stack unwinds first, so destructors run. In the top-level program, it is
/// [`std::process::exit`] after the same clean-up of children.
pub fn exit(code: i32) -> ! {
    match phase::current() {
        phase @ (Phase::Worker | Phase::Bootstrap) => {
            if cfg!(panic = "unwind") && phase == Phase::Worker && phase::on_worker_thread() {
                panic::resume_unwind(Box::new(ExitRequest(code)))
            }
            end_child(code, None)
        }
        Phase::Top | Phase::Unknown => std::process::exit(code),
    }
}

/// The payload [`exit`] unwinds the worker's stack with; the child's run catches it.
pub(crate) struct ExitRequest(pub(crate) i32);

static EXIT_HOOK: Once = Once::new();
static EXITING: AtomicBool = AtomicBool::new(false);
/// What shuts the children down; registered by the handle layer with its first child.
static SHUTDOWN_CHILDREN: OnceLock<fn()> = OnceLock::new();

/// Makes sure the exit function runs when this process exits normally.
pub(crate) fn ensure_exit_hook() {
    EXIT_HOOK.call_once(|| {
        // SAFETY: registers a plain function with no captured state.
        let res = unsafe { libc::atexit(exit_hook) };
        if res != 0 {
            log::warn!("cannot register the exit function; children will not be joined at exit");
        }
    });
}

/// Makes the exit function call `shutdown` (which terminates daemonic children and joins
/// the others), and makes sure the exit function runs at exit. Called by the handle
/// layer when it starts a child; `shutdown` must hold no lock while it waits.
pub(crate) fn join_children_at_exit(shutdown: fn()) {
    let _ = SHUTDOWN_CHILDREN.set(shutdown);
    ensure_exit_hook();
}

extern "C" fn exit_hook() {
    // Unwinding out of an atexit handler would abort.
    let _ = panic::catch_unwind(exit_function);
}

/// What Python's `util._exit_function` does: terminate daemonic children, join the
/// others. Runs once, at the first of: the child's worker ending, `exit`, or `atexit`.
pub(crate) fn exit_function() {
    if EXITING.swap(true, Ordering::SeqCst) {
        return;
    }
    log::info!("process shutting down");
    log::debug!("running all \"atexit\" finalizers with priority >= 0");
    if let Some(shutdown) = SHUTDOWN_CHILDREN.get() {
        shutdown();
    }
    log::debug!("running the remaining \"atexit\" finalizers");
}

/// Python's end of `Process._bootstrap`: the exit function (children joined), the
/// failure report, the last log line, flushed streams, then the exit.
///
/// The report goes to the parent last, just before the exit, so that the parent's
/// wake-up for it usually finds the child already gone and reaps it at once.
pub(crate) fn end_child(code: i32, report: Option<(Report, UnixStream)>) -> ! {
    exit_function();
    if let Some(text) = report.as_ref().and_then(|(r, _)| r.stderr_text()) {
        let name = context::current_name();
        let _ = std::io::stderr()
            .lock()
            .write_all(format!("Process {name}:\n{text}\n").as_bytes());
    }
    log::info!("process exiting with exitcode {code}");
    let _ = std::io::stdout().flush();
    if let Some((report, channel)) = report {
        if let Err(e) = report.send(&channel) {
            log::debug!("cannot send the result to the parent: {e}");
        }
    }
    std::process::exit(code)
}
