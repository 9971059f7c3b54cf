//! [`Event`]: a flag shared between processes, that processes can wait for.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Atomics, Shm};
use crate::os::futex::{self, Wait};
use crate::os::sys;

/// Set in the event's word while the flag is set.
const SET: u32 = 1;
/// Set in the word while the flag is clear and someone may sleep on it.
const SLEEPERS: u32 = 2;
/// The rest of the word counts the times the flag was raised, so that a waiter woken
/// by a `set` returns even if the flag was cleared again before it looked.
const GENERATION: u32 = 4;
/// Rounds of busy-waiting (a spin, then a yield of the CPU) before sleeping: a reply
/// from a process that runs on another CPU, or on the same one, often comes sooner than
/// a futex sleep and wake-up would.
const SPIN_ROUNDS: u32 = 20;
const SPINS_PER_ROUND: u32 = 50;

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct EventState {
    /// Generation, SLEEPERS and SET (any value is a valid state).
    word: AtomicU32,
}

// SAFETY: repr(C), one atomic.
unsafe impl Atomics for EventState {}

/// A flag shared between processes: Python's `multiprocessing.Event`.
///
/// [`set`](Event::set) raises it and wakes every waiter; [`clear`](Event::clear) lowers
/// it; [`wait`](Event::wait) returns once it is raised.
///
/// ```
/// use multiproc::Event;
///
/// #[multiproc::worker]
/// fn starter(go: Event) {
///     go.set();
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let go = Event::new()?;
///     let p = starter::spawn(go.clone())?;
///     go.wait(); // returns once the child has set it
///     assert!(go.is_set());
///     p.join()?;
///     Ok(())
/// }
/// ```
///
/// An event has no owner, so nothing is left behind when a process using it dies: a
/// waiter that dies absorbs nothing, and a process that dies before setting the event
/// simply never sets it (wait with a timeout where that can happen). A waiter woken by
/// `set` returns even if the flag was cleared again before it looked.
///
/// A waiter spins and yields the CPU for a few tens of microseconds before it sleeps
/// on the futex: a `set` from a process on another CPU is then seen in about 0.1 µs,
/// without the cost of waking a sleeping thread.
#[derive(Clone)]
pub struct Event {
    shm: Shm<EventState>,
}

impl Event {
    /// A new event, clear.
    pub fn new() -> crate::error::Result<Event> {
        Ok(Event {
            shm: Shm::create("event", 0)?,
        })
    }

    #[inline]
    fn word(&self) -> &AtomicU32 {
        &self.shm.get().word
    }

    /// Whether the flag is raised.
    pub fn is_set(&self) -> bool {
        self.word().load(Ordering::Acquire) & SET != 0
    }

    /// Raises the flag and wakes every process and thread waiting for it.
    pub fn set(&self) {
        let word = self.word();
        let mut seen = word.load(Ordering::Relaxed);
        loop {
            if seen & SET != 0 {
                return;
            }
            let raised = (seen & !SLEEPERS).wrapping_add(GENERATION) | SET;
            match word.compare_exchange_weak(seen, raised, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        if seen & SLEEPERS != 0 {
            futex::wake(word, u32::MAX);
        }
    }

    /// Lowers the flag.
    pub fn clear(&self) {
        let word = self.word();
        let mut seen = word.load(Ordering::Relaxed);
        while seen & SET != 0 {
            match word.compare_exchange_weak(
                seen,
                seen & !SET,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => seen = now,
            }
        }
    }

    /// Waits until the flag is raised.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the flag; whether it is raised (as Python's
    /// `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(sys::deadline_after(timeout)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let word = self.word();
        let first = word.load(Ordering::Acquire);
        // Raised now, or raised since `first` (even if cleared again since).
        let raised = |now: u32| now & SET != 0 || (now ^ first) & !(SET | SLEEPERS) != 0;
        if raised(first) {
            return true;
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return false;
        }
        for round in 0..SPIN_ROUNDS {
            for _ in 0..SPINS_PER_ROUND {
                std::hint::spin_loop();
                if raised(word.load(Ordering::Acquire)) {
                    return true;
                }
            }
            if round % 4 == 3 && deadline.is_some_and(|d| d <= Instant::now()) {
                return raised(word.load(Ordering::Acquire));
            }
            std::thread::yield_now();
        }
        loop {
            let seen = word.load(Ordering::Acquire);
            if raised(seen) {
                return true;
            }
            if seen & SLEEPERS == 0
                && word
                    .compare_exchange(seen, seen | SLEEPERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if futex::wait(word, seen | SLEEPERS, deadline) == Wait::TimedOut {
                return raised(word.load(Ordering::Acquire));
            }
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Event {
            shm: Shm::deserialize(deserializer)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_and_timeouts() {
        let e = Event::new().unwrap();
        assert!(!e.is_set());
        assert!(!e.wait_timeout(Duration::ZERO));
        let start = Instant::now();
        assert!(!e.wait_timeout(Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(45));
        e.set();
        assert!(e.is_set());
        e.wait();
        assert!(e.wait_timeout(Duration::from_millis(50)));
        e.clear();
        assert!(!e.is_set());
    }

    #[test]
    fn a_waiter_sees_a_set_even_if_cleared_at_once() {
        let e = Event::new().unwrap();
        let waiter = {
            let e = e.clone();
            std::thread::spawn(move || e.wait_timeout(Duration::from_secs(30)))
        };
        // Once the waiter announced itself as a sleeper, it has read the word.
        while e.word().load(Ordering::Relaxed) & SLEEPERS == 0 {
            std::thread::yield_now();
        }
        e.set();
        e.clear();
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn set_wakes_every_waiter() {
        let e = Event::new().unwrap();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || e.wait_timeout(Duration::from_secs(30)))
            })
            .collect();
        e.set();
        for w in waiters {
            assert!(w.join().unwrap());
        }
    }
}
