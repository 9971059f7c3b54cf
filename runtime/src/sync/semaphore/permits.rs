//! Taking and giving back permits: `acquire` (sleeping when there is none) and
//! `release` (waking a sleeper), and the counts.

use std::sync::atomic::Ordering;

use super::sem_core::{Block, Counter, SemCore, SemState};
use crate::os::futex;
use crate::os::identity::current_pid;
use crate::sync::error::ReleaseError;
use crate::sync::{Checks, passed};

impl SemCore {
    /// Takes a permit (the value is above 0), recording it as this process's.
    #[inline]
    pub(super) fn take(&self, st: &SemState, value: u32) {
        let which = match self.claim_slot(st, current_pid()) {
            Some(i) => Counter::Slot(i),
            None => Counter::Untracked,
        };
        let held = self
            .counter(st, which)
            .map_or(0, |c| c.load(Ordering::Relaxed));
        self.commit(st, value, value - 1, which, held.saturating_add(1));
    }

    /// Lowers the sleepers' flag and bumps `seq`, if the flag is up: whether a sleeper
    /// is to be woken (after the internal lock is released). Under the internal lock.
    #[inline]
    pub(super) fn wake_due(st: &SemState) -> bool {
        if st.sleepers.load(Ordering::Relaxed) == 0 {
            return false;
        }
        st.sleepers.store(0, Ordering::Relaxed);
        st.seq.fetch_add(1, Ordering::Release);
        true
    }

    #[inline]
    pub(super) fn acquire(&self, block: Block) -> bool {
        let st = self.state();
        if st.lock.try_lock() {
            let value = st.value.load(Ordering::Relaxed);
            if value > 0 {
                // The common case: this handle knows its process's slot.
                let slots = self.slots();
                match self.cached_slot(slots) {
                    Some((i, slot)) => {
                        let held = slot.held.load(Ordering::Relaxed);
                        Self::journaled(
                            st,
                            value,
                            value - 1,
                            i as u32 + 1,
                            &slot.held,
                            held.saturating_add(1),
                        );
                    }
                    None => self.take(st, value),
                }
                Self::unlock(st);
                return true;
            }
            Self::unlock(st);
            if let Block::No = block {
                return false;
            }
        }
        self.acquire_slow(block)
    }

    #[cold]
    pub(super) fn acquire_slow(&self, block: Block) -> bool {
        let st = self.lock();
        let value = st.value.load(Ordering::Relaxed);
        if value > 0 {
            self.take(st, value);
            Self::unlock(st);
            return true;
        }
        Self::unlock(st);
        let Block::Until(deadline) = block else {
            return false;
        };
        // No spinning for a permit before sleeping (as a POSIX semaphore): between two
        // busy processes, a spinning waiter catches each permit as it comes back, and the
        // permit then travels between the CPUs at every operation (measured: 2.5 times
        // slower than letting the holder go on alone while the waiter sleeps).
        let mut checks = Checks::new();
        let mut st = self.lock();
        let mut slept = false;
        loop {
            if checks.due() && self.reclaim_dead(st, false) > 0 {
                st.sleepers.store(0, Ordering::Relaxed);
                st.seq.fetch_add(1, Ordering::Release);
                futex::wake(&st.seq, u32::MAX);
            }
            let value = st.value.load(Ordering::Relaxed);
            if value > 0 {
                self.take(st, value);
                let mut wake = false;
                if slept {
                    // Others may sleep too: pass a surplus on, or keep the flag up for
                    // the next release.
                    if value > 1 {
                        st.seq.fetch_add(1, Ordering::Release);
                        st.sleepers.store(0, Ordering::Relaxed);
                        wake = true;
                    } else {
                        st.sleepers.store(1, Ordering::Relaxed);
                    }
                }
                Self::unlock(st);
                if wake {
                    futex::wake(&st.seq, 1);
                }
                return true;
            }
            if passed(deadline) {
                Self::unlock(st);
                return false;
            }
            st.sleepers.store(1, Ordering::Relaxed);
            let seen = st.seq.load(Ordering::Relaxed);
            Self::unlock(st);
            futex::wait(&st.seq, seen, Some(checks.until(deadline)));
            slept = true;
            st = self.lock();
        }
    }

    #[inline]
    pub(super) fn release(&self) -> Result<(), ReleaseError> {
        let st = self.state();
        if st.lock.try_lock() {
            // The common case: this process gives back one of its own permits.
            let value = st.value.load(Ordering::Relaxed);
            let slots = self.slots();
            if let Some((i, slot)) = self.cached_slot(slots) {
                let held = slot.held.load(Ordering::Relaxed);
                if held > 0 && value < Self::max(st) {
                    Self::journaled(st, value, value + 1, i as u32 + 1, &slot.held, held - 1);
                    let wake = Self::wake_due(st);
                    Self::unlock(st);
                    if wake {
                        futex::wake(&st.seq, 1);
                    }
                    return Ok(());
                }
            }
            Self::unlock(st);
        }
        self.release_slow()
    }

    #[cold]
    pub(super) fn release_slow(&self) -> Result<(), ReleaseError> {
        let st = self.lock();
        let value = st.value.load(Ordering::Relaxed);
        if value >= Self::max(st) {
            Self::unlock(st);
            return Err(ReleaseError::too_many());
        }
        // Give back one of this process's permits, else one another process holds,
        // else one held untracked; else the release adds a permit.
        let slots = self.slots();
        let mine = self
            .my_slot(st, current_pid())
            .filter(|&i| slots[i].held.load(Ordering::Relaxed) > 0);
        let which = match mine {
            Some(i) => Counter::Slot(i),
            None => match slots[..self.hwm(st)]
                .iter()
                .position(|s| s.held.load(Ordering::Relaxed) > 0)
            {
                Some(i) => Counter::Slot(i),
                None if st.untracked.load(Ordering::Relaxed) > 0 => Counter::Untracked,
                None => Counter::None,
            },
        };
        let count = self
            .counter(st, which)
            .map_or(0, |c| c.load(Ordering::Relaxed).saturating_sub(1));
        self.commit(st, value, value + 1, which, count);
        let wake = Self::wake_due(st);
        Self::unlock(st);
        if wake {
            futex::wake(&st.seq, 1);
        }
        Ok(())
    }

    /// Stops counting one of this process's permits as held (it stays taken).
    pub(super) fn forget(&self) {
        let st = self.lock();
        let which = match self.my_slot(st, current_pid()) {
            Some(i) if self.slots()[i].held.load(Ordering::Relaxed) > 0 => Counter::Slot(i),
            _ => Counter::Untracked,
        };
        if let Some(c) = self.counter(st, which) {
            c.store(
                c.load(Ordering::Relaxed).saturating_sub(1),
                Ordering::Relaxed,
            );
        }
        Self::unlock(st);
    }

    pub(super) fn value(&self) -> u32 {
        self.state().value.load(Ordering::Relaxed)
    }

    pub(super) fn reclaimed(&self) -> u32 {
        self.state().reclaimed.load(Ordering::Relaxed)
    }

    pub(super) fn max_value(&self) -> u32 {
        Self::max(self.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::semaphore::{BoundedSemaphore, Semaphore};

    #[test]
    fn threads_wait_for_permits() {
        let sem = Semaphore::new(0).unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let sem = sem.clone();
                std::thread::spawn(move || sem.acquire())
            })
            .collect();
        for _ in 0..3 {
            sem.release().unwrap();
        }
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(sem.value(), 0);
    }

    #[test]
    fn threads_hammering_never_exceed_the_value() {
        use std::sync::atomic::AtomicUsize;
        let sem = BoundedSemaphore::new(2).unwrap();
        let inside = std::sync::Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (sem, inside) = (sem.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let _permit = sem.permit();
                        assert!(inside.fetch_add(1, Ordering::SeqCst) < 2);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sem.value(), 2);
    }
}
