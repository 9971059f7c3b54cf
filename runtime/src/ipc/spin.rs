//! Bounded, adaptive spinning before a blocking wait.
//!
//! Waking a process that sleeps costs tens of microseconds when it runs on another CPU
//! (a futex or socket wake-up, then a reschedule), while a process that busy-checks a
//! word in shared memory sees a change in a fraction of a microsecond. So a waiter
//! first checks for a while, then sleeps. The while adapts: it doubles when the wait
//! ended during the spin and halves when the waiter had to sleep anyway, between
//! [`MIN_SPIN`] and [`MAX_SPIN`]. An idle waiter therefore spins a couple of
//! microseconds and then costs nothing.
//!
//! The first checks only pause the CPU; later ones yield it (`sched_yield`), so that a
//! peer that shares this CPU gets to run and answer instead of waiting for the end of
//! our time slice. Each side of a ring records the CPU it last ran on beside its word
//! ([`cpu_tag`]); a waiter that finds the party it waits for on its own CPU yields from
//! the start, since pausing cannot help that party run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The shortest spin, in nanoseconds.
const MIN_SPIN: u32 = 2_000;
/// The longest spin, in nanoseconds.
const MAX_SPIN: u32 = 100_000;
/// Where a new handle starts.
const START_SPIN: u32 = 20_000;
/// How long a waiter only pauses between checks before it yields the CPU, when the
/// party it waits for runs on another CPU.
const PAUSE_PHASE: Duration = Duration::from_micros(2);
/// Pauses between two checks.
const PAUSES_PER_ROUND: u32 = 4;
/// Rounds between two readings of the clock while pausing.
const ROUNDS_PER_CLOCK: u32 = 8;

/// The adaptive spin limit of one handle in one process.
#[derive(Debug)]
pub(crate) struct Spinner {
    limit_ns: AtomicU32,
}

impl Default for Spinner {
    fn default() -> Self {
        Spinner {
            limit_ns: AtomicU32::new(START_SPIN),
        }
    }
}

impl Spinner {
    /// Checks `ready` until it holds (`true`), the spin limit passes or `deadline` does
    /// (`false`).
    /// `peer` is the [`cpu_tag`] the party waited for left (0: unknown).
    pub(crate) fn spin(
        &self,
        deadline: Option<Instant>,
        peer: u32,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if ready() {
            return true;
        }
        let limit = self
            .limit_ns
            .load(Ordering::Relaxed)
            .clamp(MIN_SPIN, MAX_SPIN);
        let start = Instant::now();
        let end = start + Duration::from_nanos(u64::from(limit));
        let end = match deadline {
            Some(d) if d < end => d,
            _ => end,
        };
        let shares_cpu = peer != 0 && peer == cpu_tag();
        let mut pausing = !shares_cpu;
        let pause_end = start + PAUSE_PHASE;
        let mut round = 0u32;
        loop {
            if pausing {
                for _ in 0..PAUSES_PER_ROUND {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
            round += 1;
            if ready() {
                let grown = limit.saturating_mul(2).min(MAX_SPIN);
                self.limit_ns.store(grown, Ordering::Relaxed);
                return true;
            }
            if pausing && round % ROUNDS_PER_CLOCK != 0 {
                continue;
            }
            let now = Instant::now();
            pausing &= now < pause_end;
            if now < end {
                continue;
            }
            if deadline.is_none_or(|d| d > end) {
                // The spin limit, not the caller's deadline, ended it.
                self.limit_ns
                    .store((limit / 2).max(MIN_SPIN), Ordering::Relaxed);
            }
            return false;
        }
    }
}

/// The CPU this thread runs on, plus one; 0 if unknown. A few nanoseconds (glibc
/// reads it from the thread's `rseq` area).
pub(crate) fn cpu_tag() -> u32 {
    // SAFETY: sched_getcpu takes no argument and only reads the CPU number.
    let cpu = unsafe { nix::libc::sched_getcpu() };
    u32::try_from(cpu).map_or(0, |c| c.wrapping_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_and_adapts() {
        let s = Spinner::default();
        let start = Instant::now();
        assert!(!s.spin(None, 0, || false));
        assert!(start.elapsed() >= Duration::from_nanos(u64::from(START_SPIN)));
        assert_eq!(s.limit_ns.load(Ordering::Relaxed), START_SPIN / 2);
        let mut n = 0;
        assert!(s.spin(None, 0, || {
            n += 1;
            n > 3
        }));
        assert_eq!(s.limit_ns.load(Ordering::Relaxed), START_SPIN);
        for _ in 0..20 {
            s.spin(None, 0, || false);
        }
        assert_eq!(s.limit_ns.load(Ordering::Relaxed), MIN_SPIN);
    }

    #[test]
    fn respects_a_deadline() {
        let s = Spinner::default();
        assert!(!s.spin(Some(Instant::now()), 0, || false));
        // A deadline that ends the spin early does not shrink the limit.
        assert_eq!(s.limit_ns.load(Ordering::Relaxed), START_SPIN);
    }
}
