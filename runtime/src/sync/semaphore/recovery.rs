//! Surviving deaths: the journal of two-word changes, the table of which process
//! holds which permits, and taking back the permits of dead holders.

use std::sync::atomic::{AtomicU32, Ordering, fence};

use super::sem_core::{Counter, SemCore, SemSlot, SemState, UNTRACKED};
use crate::os::futex;
use crate::os::identity::{Liveness, current_pid, liveness, my_stamp};

impl SemCore {
    pub(super) fn counter<'a>(&'a self, st: &'a SemState, which: Counter) -> Option<&'a AtomicU32> {
        match which {
            Counter::None => None,
            Counter::Slot(i) => self.slots().get(i).map(|s| &s.held),
            Counter::Untracked => Some(&st.untracked),
        }
    }

    /// The journal's tag for a counter.
    pub(super) fn tag(which: Counter) -> u32 {
        match which {
            Counter::None => 0,
            Counter::Slot(i) => i as u32 + 1,
            Counter::Untracked => UNTRACKED,
        }
    }

    /// Sets the value (from `old`) and one holder count together, journaled: a process
    /// killed half way leaves the journal to undo it.
    #[inline]
    pub(super) fn commit(&self, st: &SemState, old: u32, value: u32, which: Counter, count: u32) {
        match self.counter(st, which) {
            Some(c) => Self::journaled(st, old, value, Self::tag(which), c, count),
            None => {
                st.j_value.store(old, Ordering::Relaxed);
                st.j_counter.store(0, Ordering::Relaxed);
                st.journal.store(1, Ordering::Relaxed);
                fence(Ordering::Release);
                st.value.store(value, Ordering::Relaxed);
                fence(Ordering::Release);
                st.journal.store(0, Ordering::Relaxed);
            }
        }
    }

    /// [`commit`](SemCore::commit) of a known counter (tagged `tag` in the journal).
    #[inline(always)]
    pub(super) fn journaled(
        st: &SemState,
        old: u32,
        value: u32,
        tag: u32,
        counter: &AtomicU32,
        count: u32,
    ) {
        st.j_value.store(old, Ordering::Relaxed);
        st.j_counter.store(tag, Ordering::Relaxed);
        st.j_count
            .store(counter.load(Ordering::Relaxed), Ordering::Relaxed);
        st.journal.store(1, Ordering::Relaxed);
        fence(Ordering::Release);
        st.value.store(value, Ordering::Relaxed);
        counter.store(count, Ordering::Relaxed);
        fence(Ordering::Release);
        st.journal.store(0, Ordering::Relaxed);
    }

    /// This process's slot as this handle last found it, if it still is.
    #[inline(always)]
    pub(super) fn cached_slot<'a>(&self, slots: &'a [SemSlot]) -> Option<(usize, &'a SemSlot)> {
        let cached = self.slot.load(Ordering::Relaxed);
        let i = cached as u32 as usize;
        let me = current_pid();
        let slot = slots.get(i)?;
        ((cached >> 32) as u32 == me && slot.pid.load(Ordering::Relaxed) == me).then_some((i, slot))
    }

    /// Under the internal lock, taken over from a process that died holding it: undoes
    /// its change in progress, then takes back the permits of the dead.
    #[cold]
    pub(super) fn recover(&self, st: &SemState) {
        fence(Ordering::Acquire);
        if st.journal.load(Ordering::Relaxed) != 0 {
            let value = st.j_value.load(Ordering::Relaxed).min(Self::max(st));
            st.value.store(value, Ordering::Relaxed);
            let count = st.j_count.load(Ordering::Relaxed);
            let counter = match st.j_counter.load(Ordering::Relaxed) {
                0 => Counter::None,
                UNTRACKED => Counter::Untracked,
                i => Counter::Slot(i as usize - 1),
            };
            if let Some(c) = self.counter(st, counter) {
                c.store(count, Ordering::Relaxed);
            }
            st.journal.store(0, Ordering::Relaxed);
        }
        self.reclaim_dead(st, true);
        // The dead process may have been about to wake someone: wake them all.
        st.sleepers.store(0, Ordering::Relaxed);
        st.seq.fetch_add(1, Ordering::Release);
        futex::wake(&st.seq, u32::MAX);
    }

    /// This process's slot, if it has one.
    #[inline]
    pub(super) fn my_slot(&self, st: &SemState, me: u32) -> Option<usize> {
        let slots = self.slots();
        let cached = self.slot.load(Ordering::Relaxed);
        if (cached >> 32) as u32 == me {
            let i = cached as u32 as usize;
            if slots
                .get(i)
                .is_some_and(|s| s.pid.load(Ordering::Relaxed) == me)
            {
                return Some(i);
            }
        }
        let i = slots[..self.hwm(st)]
            .iter()
            .position(|s| s.pid.load(Ordering::Relaxed) == me)?;
        self.slot
            .store(u64::from(me) << 32 | i as u64, Ordering::Relaxed);
        Some(i)
    }

    /// This process's slot, claimed if it has none; `None` if the table is full even
    /// after freeing the slots of dead processes. Under the internal lock.
    pub(super) fn claim_slot(&self, st: &SemState, me: u32) -> Option<usize> {
        if let Some(i) = self.my_slot(st, me) {
            return Some(i);
        }
        let slots = self.slots();
        for attempt in 0..2 {
            let hwm = self.hwm(st);
            let free = slots[..hwm]
                .iter()
                .position(|s| s.pid.load(Ordering::Relaxed) == 0)
                .or_else(|| (hwm < slots.len()).then_some(hwm));
            if let Some(i) = free {
                let slot = &slots[i];
                slot.held.store(0, Ordering::Relaxed);
                slot.who.store(my_stamp(), Ordering::Relaxed);
                slot.pid.store(me, Ordering::Relaxed);
                if i >= hwm {
                    st.hwm.store(i as u32 + 1, Ordering::Relaxed);
                }
                self.slot
                    .store(u64::from(me) << 32 | i as u64, Ordering::Relaxed);
                return Some(i);
            }
            if attempt == 0 {
                self.reclaim_dead(st, true);
            }
        }
        None
    }

    /// Takes back the permits of dead processes (and with `all`, frees the slots of dead
    /// processes holding none). Under the internal lock. Returns the permits reclaimed.
    pub(super) fn reclaim_dead(&self, st: &SemState, all: bool) -> u32 {
        let me = current_pid();
        let slots = self.slots();
        let mut total = 0u32;
        for (i, slot) in slots[..self.hwm(st)].iter().enumerate() {
            let pid = slot.pid.load(Ordering::Relaxed);
            let held = slot.held.load(Ordering::Relaxed);
            if pid == 0 || pid == me || (!all && held == 0) {
                continue;
            }
            // Only a certain death gives the permits back: a holder that cannot be judged
            // (`/proc` hidden, another pid namespace) keeps them.
            if liveness(slot.who.load(Ordering::Relaxed)) != Liveness::Dead {
                continue;
            }
            if held > 0 {
                let value = st.value.load(Ordering::Relaxed);
                let back = value.saturating_add(held).min(Self::max(st));
                self.commit(st, value, back, Counter::Slot(i), 0);
                st.reclaimed.store(
                    st.reclaimed.load(Ordering::Relaxed).saturating_add(held),
                    Ordering::Relaxed,
                );
                total = total.saturating_add(held);
                log::warn!(
                    "process {pid} died holding {held} permit(s) of a semaphore: taken back"
                );
            }
            slot.pid.store(0, Ordering::Relaxed);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::semaphore::sem_core::SLOTS;
    use crate::sync::semaphore::{BoundedSemaphore, Semaphore};
    use std::time::Duration;

    #[test]
    fn a_change_cut_short_by_death_is_rolled_back() {
        let sem = Semaphore::new(1).unwrap();
        // A forked child takes the internal lock, journals a change, makes half of it
        // (the value drops, the holder's count does not rise) and dies.
        // SAFETY: the child only uses atomics in shared memory, then `_exit`s.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let st = sem.core.state();
                let ok = st.lock.try_lock();
                st.j_value.store(1, Ordering::Relaxed);
                st.j_counter.store(UNTRACKED, Ordering::Relaxed);
                st.j_count.store(0, Ordering::Relaxed);
                st.journal.store(1, Ordering::Relaxed);
                st.value.store(0, Ordering::Relaxed);
                // SAFETY: ends the forked child at once.
                unsafe { nix::libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        assert_eq!(sem.value(), 0);
        // The next user takes the internal lock over and undoes the half change: the
        // permit is there.
        assert!(sem.acquire_timeout(Duration::from_secs(10)));
        assert_eq!(sem.core.state().journal.load(Ordering::Relaxed), 0);
        assert_eq!(sem.core.state().untracked.load(Ordering::Relaxed), 0);
        sem.release().unwrap();
        assert_eq!(sem.value(), 1);
    }

    #[test]
    fn the_table_has_the_documented_size() {
        assert_eq!(SLOTS, 252);
        let sem = Semaphore::new(1).unwrap();
        assert_eq!(sem.core.slots().len(), SLOTS);
    }

    #[test]
    fn permits_are_recorded_per_process() {
        let sem = BoundedSemaphore::new(3).unwrap();
        let me = current_pid();
        let guard = sem.permit();
        sem.acquire();
        let st = sem.core.state();
        let i = sem.core.my_slot(st, me).unwrap();
        assert_eq!(sem.core.slots()[i].held.load(Ordering::Relaxed), 2);
        drop(guard);
        assert_eq!(sem.core.slots()[i].held.load(Ordering::Relaxed), 1);
        sem.permit().forget();
        assert_eq!(sem.core.slots()[i].held.load(Ordering::Relaxed), 1);
        assert_eq!(sem.value(), 1);
    }

    #[test]
    fn a_dead_holders_permits_come_back() {
        let sem = Semaphore::new(1).unwrap();
        // A forked child takes the permit and ends without giving it back.
        // SAFETY: the child only uses atomics and its own memory, then `_exit`s.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = sem.try_acquire();
                // SAFETY: ends the forked child at once.
                unsafe { nix::libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        assert_eq!(sem.value(), 0);
        assert!(sem.acquire_timeout(Duration::from_secs(10)));
        assert_eq!(sem.reclaimed(), 1);
    }
}
