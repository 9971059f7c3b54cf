//! Which part of its life this process is in: a top-level program, a child still being
//! bootstrapped, or a child whose worker runs (and on which thread); set by the child's
//! constructor in `child`, read wherever the answer changes what to do.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::ThreadId;

use crate::process::bootstrap::{self, Selector};

/// The phase of this process's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The child's constructor has not run yet (code running in another constructor).
    Unknown,
    /// This process was not started as a multiproc child.
    Top,
    /// A child that has not yet started its worker.
    Bootstrap,
    /// A child whose worker runs.
    Worker,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Unknown, Phase::Top, Phase::Bootstrap, Phase::Worker];
}

static PHASE: AtomicU8 = AtomicU8::new(Phase::Unknown as u8);
static WORKER_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// The current phase.
pub(crate) fn current() -> Phase {
    let raw = PHASE.load(Ordering::Relaxed);
    Phase::ALL
        .into_iter()
        .find(|p| *p as u8 == raw)
        .unwrap_or(Phase::Unknown)
}

/// Enters `phase`.
pub(crate) fn enter(phase: Phase) {
    PHASE.store(phase as u8, Ordering::Relaxed);
}

/// Records the calling thread as the one that runs the worker.
pub(crate) fn set_worker_thread() {
    let _ = WORKER_THREAD.set(std::thread::current().id());
}

/// Whether the calling thread runs the worker.
pub(crate) fn on_worker_thread() -> bool {
    WORKER_THREAD.get() == Some(&std::thread::current().id())
}

/// Whether a process started now would be started during this child's bootstrap,
/// before its worker runs (Python's "bootstrapping phase" error).
pub(crate) fn is_bootstrapping() -> bool {
    match current() {
        Phase::Bootstrap => true,
        // Called before the constructor ran (from another constructor): decide by the
        // arguments.
        Phase::Unknown => Selector::parse(&bootstrap::process_args()).is_some(),
        Phase::Top | Phase::Worker => false,
    }
}
