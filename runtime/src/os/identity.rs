//! Who a process is: this process's id and thread id, cached, and whether another
//! process has ended.

use std::sync::atomic::{AtomicU32, Ordering};

use nix::libc;

/// This process's id, cached (a getpid call costs more than a whole lock operation).
#[inline]
pub(crate) fn current_pid() -> u32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    current_pid_slow()
}

/// The cached id; 0 until known, and again in a forked child.
static PID: AtomicU32 = AtomicU32::new(0);

#[cold]
fn current_pid_slow() -> u32 {
    /// 0: no fork handler yet; 1: a thread is registering it; 2: registered.
    static AT_FORK: AtomicU32 = AtomicU32::new(0);
    extern "C" fn forget_pid() {
        PID.store(0, Ordering::Relaxed);
    }
    let pid = std::process::id();
    if AT_FORK.load(Ordering::Acquire) != 2 {
        // Never wait for the registering thread: a child forked meanwhile would wait
        // for it forever (the thread does not exist there). Without the handler in
        // place the id is not cached, so a child can never inherit it.
        if AT_FORK
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return pid;
        }
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
        AT_FORK.store(2, Ordering::Release);
    }
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// Whether process `pid` has ended: gone, or a zombie its parent has not reaped yet.
pub(crate) fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

/// The kernel's id of the calling thread, cached per thread (and renewed in a forked
/// child, whose thread has a new id).
#[inline]
pub(crate) fn current_tid() -> u32 {
    use std::cell::Cell;
    thread_local! {
        /// (process id, thread id) as seen when last asked.
        static IDS: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
    }
    let pid = current_pid();
    IDS.with(|ids| {
        let (seen_pid, tid) = ids.get();
        if seen_pid == pid && tid != 0 {
            return tid;
        }
        // Thread ids are positive `pid_t`s.
        let tid = nix::unistd::gettid().as_raw().unsigned_abs();
        ids.set((pid, tid));
        tid
    })
}
