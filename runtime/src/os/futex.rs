//! Futexes on shared memory, and [`RawLock`]: a lock in shared memory whose holder may
//! die without wedging the others.
//!
//! These are the building blocks of the cross-process queues and locks: they live in a
//! [`SharedRegion`](crate::os::shm::SharedRegion), so every futex here is a shared (not
//! process-private) one.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;

use crate::os::identity::{
    Liveness, Stamp, current_pid, liveness, liveness_unstamped, my_stamp, released, stamp_pid,
};
use crate::os::sys;

/// How a futex wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Woken, or the word no longer held the expected value (also spurious wake-ups:
    /// callers re-check their condition).
    Woken,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, until woken or `deadline` (`None`: forever).
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wait {
    let timeout = match sys::remaining(deadline) {
        Some(left) if left.is_zero() => return Wait::TimedOut,
        Some(left) => Some(libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
        }),
        None => None,
    };
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; FUTEX_WAIT
    // only reads it. The timeout pointer is null or points to a live timespec.
    let res = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timeout_ptr,
        )
    };
    match Errno::result(res) {
        Err(Errno::ETIMEDOUT) => Wait::TimedOut,
        // Woken, value changed (EAGAIN), or a signal (EINTR): the caller re-checks.
        _ => Wait::Woken,
    }
}

/// Wakes up to `count` waiters sleeping on `word`; returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> u32 {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access it.
    let res = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
    u32::try_from(res).unwrap_or(0)
}

/// Set in a [`RawLock`] word while a process sleeps waiting for it.
const WAITERS: u32 = 1 << 31;
/// Spins before sleeping: a hand-off between two busy processes rarely needs a syscall.
const SPINS: u32 = 100;
/// How long a waiter sleeps before it checks that the holder still lives: first, then
/// from then on.
pub(crate) const FIRST_CHECK: Duration = Duration::from_millis(10);
pub(crate) const NEXT_CHECKS: Duration = Duration::from_millis(100);

/// How [`RawLock::lock`] got the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Acquired {
    /// From a holder that released it.
    Clean,
    /// From a holder process that died holding it: what it protects may be half
    /// updated.
    OwnerDied,
}

/// A lock word in shared memory: 0 when free, else the holder's process id, with
/// [`WAITERS`] set while someone sleeps on it; beside it, the holder's [`Stamp`] (pid,
/// pid namespace, start time), which tells a dead holder from a live process that got
/// the same pid since.
///
/// Uncontended, `lock` and `unlock` are two atomic operations each. A waiter spins a
/// little, then sleeps on the futex; while it sleeps it checks now and then
/// (10 ms, then every 100 ms) whether the holder still lives, and takes the lock over,
/// reporting [`Acquired::OwnerDied`], only if the holder is certainly dead
/// ([`Liveness::Dead`]): a holder it cannot judge (`/proc` hidden or missing, another
/// pid namespace) keeps the lock. Ownership is per process: any thread of the holding
/// process may unlock it. A lock whose holder died is noticed by `lock`, not by
/// `try_lock`.
///
/// # The stamp
///
/// The holder writes its stamp right after it takes the word, and leaves
/// [`released`] (no pid, its namespace) before it lets go. A waiter judges:
/// - stamp of the word's pid: by [`liveness`] (a reused pid is seen by its start time);
/// - no pid in the stamp: the holder took the word and has not stamped yet (or died
///   right there). Only "no such process" or a zombie counts as dead then, and only if
///   the previous holder's namespace is the waiter's ([`liveness_unstamped`]); this is
///   the one place a reused pid can still wedge the lock: the holder must die in the
///   few instructions between the two stores *and* its pid be reused before a check;
/// - another pid: a waiter is taking over (it claims the stamp first, then the word);
///   only its certain death lets another waiter take over from it.
///
/// A waiter takes over by swapping the stamp it judged for its own (so that two
/// waiters never both take over), then the word.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RawLock {
    word: AtomicU32,
    _reserved: AtomicU32,
    stamp: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<RawLock>() == 16);
const _: () = assert!(std::mem::align_of::<RawLock>() == 8);

// SAFETY: repr(C), atomics only: any bits are valid and every access is atomic.
unsafe impl crate::os::shm::Atomics for RawLock {}

impl RawLock {
    /// Takes the lock if it is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        let taken = self
            .word
            .compare_exchange(0, current_pid(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if taken {
            self.stamp_mine();
        }
        taken
    }

    /// Records this process as the holder, right after it took the word.
    #[inline]
    fn stamp_mine(&self) {
        self.stamp.store(my_stamp(), Ordering::Release);
    }

    /// Takes the lock, waiting until `deadline` (`None`: as long as it takes);
    /// `None` if the deadline passed first.
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Option<Acquired> {
        if self.try_lock() {
            return Some(Acquired::Clean);
        }
        self.lock_contended(deadline)
    }

    /// `lock` once the word was found taken: spins, then sleeps (out of line, so
    /// that the free case stays a few instructions).
    #[inline(never)]
    fn lock_contended(&self, deadline: Option<Instant>) -> Option<Acquired> {
        let me = current_pid();
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if self.word.load(Ordering::Relaxed) == 0
                && self
                    .word
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                self.stamp_mine();
                return Some(Acquired::Clean);
            }
        }
        let mut check = FIRST_CHECK;
        loop {
            let word = self.word.load(Ordering::Relaxed);
            if word == 0 {
                // Others may sleep too: keep the flag, so that our unlock wakes one.
                if self
                    .word
                    .compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.stamp_mine();
                    return Some(Acquired::Clean);
                }
                continue;
            }
            if word & WAITERS == 0
                && self
                    .word
                    .compare_exchange(word, word | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let slice_end = Instant::now() + check;
            let until = match deadline {
                Some(d) if d < slice_end => d,
                _ => slice_end,
            };
            if wait(&self.word, word | WAITERS, Some(until)) == Wait::Woken {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            check = NEXT_CHECKS;
            if self.take_over_if_dead() {
                return Some(Acquired::OwnerDied);
            }
        }
    }

    /// Takes the lock over if its holder certainly died; whether it did.
    fn take_over_if_dead(&self) -> bool {
        let pid = self.word.load(Ordering::Acquire) & !WAITERS;
        if pid == 0 {
            return false;
        }
        let seen: Stamp = self.stamp.load(Ordering::Acquire);
        let verdict = match stamp_pid(seen) {
            p if p == pid => liveness(seen),
            0 => liveness_unstamped(pid, seen),
            // Another waiter is taking over: only its death frees the lock.
            _ => liveness(seen),
        };
        if verdict != Liveness::Dead {
            return false;
        }
        let mine = my_stamp();
        if self
            .stamp
            .compare_exchange(seen, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // Someone else took over, or a holder stamped: judge again at the next check.
            return false;
        }
        let me = current_pid();
        loop {
            let word = self.word.load(Ordering::Relaxed);
            if word & !WAITERS != pid {
                // The lock changed hands since it was judged (the stamp came back to the
                // same value): the holder judged dead is not the holder any more.
                let _ =
                    self.stamp
                        .compare_exchange(mine, seen, Ordering::Relaxed, Ordering::Relaxed);
                return false;
            }
            if self
                .word
                .compare_exchange(word, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// Releases the lock, waking one sleeper if there is one.
    #[inline]
    pub(crate) fn unlock(&self) {
        self.stamp.store(released(), Ordering::Relaxed);
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            wake(&self.word, 1);
        }
    }

    /// The process holding the lock, if any.
    #[inline]
    pub(crate) fn holder(&self) -> Option<u32> {
        Some(self.word.load(Ordering::Relaxed) & !WAITERS).filter(|pid| *pid != 0)
    }

    /// Releases the lock if this process holds it, waking one sleeper if there is one;
    /// otherwise leaves it as it is and returns its holder (`None`: it was free). A dead
    /// process whose pid this one got since is not this one (their stamps differ).
    #[inline]
    pub(crate) fn unlock_if_mine(&self) -> Result<(), Option<u32>> {
        let me = current_pid();
        let mine = my_stamp();
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let pid = word & !WAITERS;
            if pid != me {
                return Err(Some(pid).filter(|pid| *pid != 0));
            }
            let stamp = self.stamp.load(Ordering::Acquire);
            // No pid in the stamp: another thread of ours took the word and is about to
            // stamp it (or a dead process with our pid died right there: fails open,
            // see the type's doc).
            if stamp != mine && stamp_pid(stamp) != 0 {
                return Err(Some(pid));
            }
            // A plain store, not a swap: while this process holds the word, only it
            // writes the stamp (a waiter replaces a stamp only after judging its
            // process dead, and this one lives), so `stamp` is what is there.
            self.stamp.store(released(), Ordering::Relaxed);
            // Only the WAITERS flag can change under us while we hold the lock.
            match self
                .word
                .compare_exchange_weak(word, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if word & WAITERS != 0 {
                        wake(&self.word, 1);
                    }
                    return Ok(());
                }
                Err(now) => {
                    self.stamp.store(stamp, Ordering::Relaxed);
                    word = now;
                }
            }
        }
    }
}

/// Sleep slices of a waiter that checks now and then for processes that died: the
/// first short, the next ones longer (as [`RawLock`](RawLock) does).
pub(crate) struct Checks {
    next: std::time::Instant,
}

impl Checks {
    pub(crate) fn new() -> Checks {
        Checks {
            next: std::time::Instant::now() + crate::os::futex::FIRST_CHECK,
        }
    }

    /// When to wake up at the latest: the next check, or `deadline` if sooner.
    pub(crate) fn until(&self, deadline: Option<std::time::Instant>) -> std::time::Instant {
        match deadline {
            Some(d) if d < self.next => d,
            _ => self.next,
        }
    }

    /// Whether a check is due now; if so, schedules the next one.
    pub(crate) fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + crate::os::futex::NEXT_CHECKS;
        true
    }
}

/// Whether `deadline` (`None`: never) has passed.
pub(crate) fn passed(deadline: Option<std::time::Instant>) -> bool {
    deadline.is_some_and(|d| std::time::Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::identity::process_is_dead;
    use crate::os::shm::SharedRegion;
    use std::sync::Arc;

    /// Runs `f` in a forked child that then ends at once, and reaps it.
    fn in_forked_child(f: impl FnOnce()) {
        // SAFETY: the child only runs `f` (atomic operations) and `_exit`s.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                f();
                // SAFETY: ends the forked child without running the parent's atexit.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
    }

    fn shared_lock() -> (SharedRegion, &'static RawLock) {
        let region = SharedRegion::new("test-lock", 64).unwrap();
        // SAFETY: offset 0 is aligned, in bounds; a RawLock is one AtomicU32.
        let lock: &RawLock = unsafe { region.get(0) };
        // The region outlives every use in these tests.
        let lock: &'static RawLock = unsafe { &*(lock as *const RawLock) };
        (region, lock)
    }

    #[test]
    fn lock_and_unlock() {
        let lock = RawLock::default();
        assert_eq!(lock.lock(None), Some(Acquired::Clean));
        assert_eq!(lock.holder(), Some(std::process::id()));
        assert!(!lock.try_lock());
        let soon = Some(Instant::now() + Duration::from_millis(30));
        let start = Instant::now();
        // Held by this (living) process: the wait times out.
        let other = std::thread::scope(|s| s.spawn(|| lock.lock(soon)).join().unwrap());
        assert_eq!(other, None);
        assert!(start.elapsed() >= Duration::from_millis(25));
        lock.unlock();
        assert!(lock.try_lock());
        lock.unlock();
        assert_eq!(lock.holder(), None);
    }

    #[test]
    fn contended_by_threads() {
        let lock = Arc::new(RawLock::default());
        let counter = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (lock, counter) = (lock.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        assert_eq!(lock.lock(None), Some(Acquired::Clean));
                        // A non-atomic read-modify-write, made safe by the lock.
                        let v = counter.load(Ordering::Relaxed);
                        counter.store(v + 1, Ordering::Relaxed);
                        lock.unlock();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 40_000);
    }

    #[test]
    fn a_holder_that_died_is_taken_over() {
        let (_region, lock) = shared_lock();
        in_forked_child(|| {
            assert!(lock.try_lock());
            // Ends holding the lock.
        });
        assert!(lock.holder().is_some());
        assert_ne!(lock.holder(), Some(std::process::id()));
        // A deadline instead of a bound on the time taken: a waiter that never noticed
        // the death times out (`None`) and fails the test, however loaded the machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        assert_eq!(lock.lock(Some(deadline)), Some(Acquired::OwnerDied));
        assert_eq!(lock.holder(), Some(std::process::id()));
        lock.unlock();
        assert_eq!(lock.lock(None), Some(Acquired::Clean));
        lock.unlock();
    }

    #[test]
    fn a_deadline_still_applies_to_a_dead_holder_check() {
        let (_region, lock) = shared_lock();
        in_forked_child(|| assert!(lock.try_lock()));
        // try_lock does not look at the holder.
        assert!(!lock.try_lock());
        let soon = Some(Instant::now() + Duration::from_millis(1));
        // The first check comes after 10 ms: a 1 ms deadline passes first.
        assert_eq!(lock.lock(soon), None);
        assert_eq!(lock.lock(None), Some(Acquired::OwnerDied));
        lock.unlock();
    }

    #[test]
    fn dead_processes_are_recognised() {
        assert!(!process_is_dead(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: a zombie counts as dead.
        let fd = crate::os::sys::pidfd_open(nix::unistd::Pid::from_raw(pid as i32)).unwrap();
        crate::os::sys::poll_until(
            &[(std::os::fd::AsFd::as_fd(&fd), nix::poll::PollFlags::POLLIN)],
            None,
        )
        .unwrap();
        assert!(process_is_dead(pid));
        child.wait().unwrap();
        assert!(process_is_dead(pid));
    }
}
