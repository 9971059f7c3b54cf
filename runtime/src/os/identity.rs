//! Who a process is: this process's id and thread id, cached; its [`Stamp`] (pid,
//! pid namespace, start time), and whether the process of a stamp still runs, as one of
//! three answers ([`Liveness`]): a waiter takes over only on a certain death.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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

/// What a waiter may conclude about a process it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The very process recorded still runs.
    Alive,
    /// It ended: no such process, a zombie, or the pid now names a process that started
    /// at another time (the pid was reused).
    Dead,
    /// Cannot tell (`/proc` hidden or missing, no permission, another pid namespace, no
    /// identity recorded yet): a waiter must go on waiting, never take over.
    Unknown,
}

/// A process's identity packed in one `u64`, so that it is written and read in one
/// atomic operation (no torn read between its parts):
///
/// | bits   | field                                                                 |
/// |--------|-----------------------------------------------------------------------|
/// | 63..42 | pid as the process sees it (pids are below 2^22, `PID_MAX_LIMIT`)      |
/// | 41..22 | its pid namespace: `(inode % (2^20 - 1)) + 1`; 0 = unknown            |
/// | 21..0  | its start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot): `(ticks % (2^22 - 1)) + 1`; 0 = unknown |
///
/// A stamp with pid 0 names no process; [`released`] keeps the namespace of the last
/// holder in it. Two processes with the same pid in the same namespace get the same
/// start field only if they started the same tick modulo 2^22 - 1 ticks (11 hours at
/// 100 Hz); namespace inodes are small consecutive numbers above `0xF000_0000`, so two
/// namespaces alive together get the same field only past a million of them.
pub(crate) type Stamp = u64;

const PID_SHIFT: u32 = 42;
const NS_SHIFT: u32 = 22;
const FIELD_NS: u64 = (1 << 20) - 1;
const FIELD_START: u64 = (1 << 22) - 1;

/// The pid recorded in `stamp` (0: none).
#[inline]
pub(crate) fn stamp_pid(stamp: Stamp) -> u32 {
    (stamp >> PID_SHIFT) as u32
}

fn stamp_ns(stamp: Stamp) -> u64 {
    (stamp >> NS_SHIFT) & FIELD_NS
}

fn stamp_start(stamp: Stamp) -> u64 {
    stamp & FIELD_START
}

fn pack(pid: u32, ns: u64, start: u64) -> Stamp {
    (u64::from(pid) & ((1 << 22) - 1)) << PID_SHIFT
        | (ns & FIELD_NS) << NS_SHIFT
        | (start & FIELD_START)
}

fn ns_field(inode: u64) -> u64 {
    inode % FIELD_NS + 1
}

fn start_field(ticks: u64) -> u64 {
    ticks % FIELD_START + 1
}

/// This process's stamp, cached in [`MY_STAMP`] (renewed in a forked child, whose pid
/// differs). Every lock and unlock writes it: the cached case is two loads and a
/// compare, inlined; finding it out reads `/proc` and is out of line.
#[inline]
pub(crate) fn my_stamp() -> Stamp {
    let pid = current_pid();
    let cached = MY_STAMP.load(Ordering::Relaxed);
    if cached != 0 && stamp_pid(cached) == pid {
        return cached;
    }
    my_stamp_slow(pid)
}

/// This process's stamp once known (0 until then); a forked child sees its parent's,
/// whose pid is not its own, and renews it.
static MY_STAMP: AtomicU64 = AtomicU64::new(0);

#[cold]
#[inline(never)]
fn my_stamp_slow(pid: u32) -> Stamp {
    let ns = own_pid_namespace().map_or(0, ns_field);
    let start = read_stat(pid)
        .ok()
        .flatten()
        .map_or(0, |s| start_field(s.start));
    let stamp = pack(pid, ns, start);
    MY_STAMP.store(stamp, Ordering::Relaxed);
    stamp
}

/// The stamp a holder leaves when it lets go: no process, its namespace kept (a
/// waiter that finds the next holder not stamped yet judges it in that namespace).
#[inline]
pub(crate) fn released() -> Stamp {
    my_stamp() & (FIELD_NS << NS_SHIFT)
}

/// The inode of this process's pid namespace, if `/proc` tells it.
fn own_pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

/// What `/proc/<pid>/stat` says.
struct Stat {
    zombie: bool,
    start: u64,
}

/// `Ok(None)`: the file exists but does not parse; `Err`: it cannot be read.
fn read_stat(pid: u32) -> std::io::Result<Option<Stat>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The name (field 2) may hold anything, ")" too: the fields after it follow the
    // last ")". Then come state (field 3) and field 22, the start time.
    Ok(stat.rsplit_once(") ").and_then(|(_, rest)| {
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next()?;
        let start = fields.nth(22 - 4)?.parse().ok()?;
        Some(Stat {
            zombie: state.starts_with('Z') || state.starts_with('X'),
            start,
        })
    }))
}

/// Whether a process `pid` exists in this pid namespace (`None`: cannot tell).
fn exists(pid: u32) -> Option<bool> {
    let pid = i32::try_from(pid).ok().filter(|p| *p > 0)?;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Some(true),
        Err(nix::errno::Errno::ESRCH) => Some(false),
        Err(_) => None,
    }
}

/// Whether the process of `stamp` still runs. Fails closed: anything but certainty
/// of its end is [`Liveness::Alive`] or [`Liveness::Unknown`].
pub(crate) fn liveness(stamp: Stamp) -> Liveness {
    let mine = my_stamp();
    if stamp == mine {
        return Liveness::Alive;
    }
    let pid = stamp_pid(stamp);
    if pid == 0 {
        return Liveness::Unknown;
    }
    // A pid means something here only if it was taken in this namespace.
    let ns = stamp_ns(stamp);
    if ns == 0 || ns != stamp_ns(mine) {
        return Liveness::Unknown;
    }
    match exists(pid) {
        Some(false) => return Liveness::Dead,
        Some(true) => {}
        None => return Liveness::Unknown,
    }
    match read_stat(pid) {
        Ok(Some(stat)) if stat.zombie => Liveness::Dead,
        // Its start time was not recorded: existing is all we know.
        Ok(Some(_)) if stamp_start(stamp) == 0 => Liveness::Unknown,
        Ok(Some(stat)) if start_field(stat.start) != stamp_start(stamp) => Liveness::Dead,
        Ok(Some(_)) => Liveness::Alive,
        // Gone between the two looks, or `/proc` hidden, missing or unparsable.
        Ok(None) | Err(_) => match exists(pid) {
            Some(false) => Liveness::Dead,
            _ => Liveness::Unknown,
        },
    }
}

/// Whether process `pid` of this namespace, whose start time was not recorded, has
/// ended; `namespace` is a stamp that tells which pid namespace `pid` belongs to
/// (usually [`released`] by the previous holder). Only "no such process" or a zombie
/// is [`Liveness::Dead`]; a live process with that pid may be another one, so
/// [`Liveness::Unknown`].
pub(crate) fn liveness_unstamped(pid: u32, namespace: Stamp) -> Liveness {
    let ns = stamp_ns(namespace);
    if pid == 0 || ns == 0 || ns != stamp_ns(my_stamp()) {
        return Liveness::Unknown;
    }
    match exists(pid) {
        Some(false) => Liveness::Dead,
        Some(true) => match read_stat(pid) {
            Ok(Some(stat)) if stat.zombie => Liveness::Dead,
            _ => Liveness::Unknown,
        },
        None => Liveness::Unknown,
    }
}

/// Whether process `pid` (of this namespace) has certainly ended: no such process, or a
/// zombie. A process that cannot be looked at counts as alive.
pub(crate) fn process_is_dead(pid: u32) -> bool {
    match exists(pid) {
        Some(false) => true,
        Some(true) => matches!(read_stat(pid), Ok(Some(stat)) if stat.zombie),
        None => false,
    }
}
