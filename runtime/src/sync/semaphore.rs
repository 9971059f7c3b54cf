//! [`Semaphore`] and [`BoundedSemaphore`]: counters of permits shared between
//! processes, which take back the permits of processes that die holding them.
//!
//! # Layout
//!
//! One page: a [`SemState`] (an internal [`RawLock`], the value, the bound, a flag
//! for sleepers and the futex word they sleep on, a small journal), then a table of
//! [`SemSlot`]s, one per process that has used the semaphore: its pid and the permits
//! it holds. Every change happens under the internal lock. A change that touches two
//! words (the value and a holder's count) is journaled first, so that a process killed
//! in the middle of it leaves nothing half done: whoever takes the internal lock over
//! from it rolls the change back, then takes back the permits of the dead.
//!
//! A waiter that finds no permit sleeps at once (no spinning, see `acquire_slow`).
//! Sleepers raise the flag and wait on `seq`; a release that finds the flag up lowers
//! it, bumps `seq` and wakes one sleeper, which raises the flag again when it takes its
//! permit (others may sleep) and passes a surplus on to the next: so a busy process
//! releasing while another sleeps makes one system call per sleep, not one per
//! release. Sleepers also wake every 100 ms (the first time after 10 ms) to look for
//! holders that died, whose permits they reclaim; that also bounds the delay of a
//! wake-up lost with a process that died.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{ReleaseError, SyncError};
use super::{Atomics, Checks, Shm, passed};
use crate::os::futex::{self, Acquired, RawLock};
use crate::os::identity::{current_pid, process_is_dead};
use crate::os::sys;

/// The largest value a semaphore can have: 2147483647, as POSIX's `SEM_VALUE_MAX` on
/// Linux. Releasing a [`Semaphore`] at this value is an error.
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// Bytes of a semaphore's region: one page.
const REGION_LEN: usize = 4096;

/// Rounds of waiting for the internal lock (a yield every 64) before sleeping on it.
const INTERNAL_SPINS: u32 = 512;

/// `SemState::j_counter` naming the `untracked` counter.
const UNTRACKED: u32 = u32::MAX;

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct SemState {
    /// Held during every change (never while sleeping).
    lock: RawLock,
    /// The permits available.
    value: AtomicU32,
    /// The bound of `value` (SEM_VALUE_MAX for a `Semaphore`).
    max: AtomicU32,
    /// Non-zero while threads may sleep in `acquire` without a wake-up on its way.
    sleepers: AtomicU32,
    /// Permits held by processes that found no free slot: never reclaimed.
    untracked: AtomicU32,
    /// Permits taken back from dead processes, over the semaphore's life.
    reclaimed: AtomicU32,
    /// Slots at and above this index have never been used.
    hwm: AtomicU32,
    /// Non-zero while a two-word change is in progress; the words below hold what to
    /// restore.
    journal: AtomicU32,
    j_value: AtomicU32,
    /// 0: no counter; `i + 1`: slot `i`'s `held`; `UNTRACKED`: `untracked`.
    j_counter: AtomicU32,
    j_count: AtomicU32,
    /// Bumped by every wake-up; the futex sleepers wait on.
    seq: AtomicU32,
}

// SAFETY: repr(C), atomics only.
unsafe impl Atomics for SemState {}

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct SemSlot {
    /// The process this slot belongs to; 0 while free.
    pid: AtomicU32,
    /// Permits it holds.
    held: AtomicU32,
    _reserved: [AtomicU32; 2],
}

// SAFETY: repr(C), atomics only.
unsafe impl Atomics for SemSlot {}

/// The number of processes a semaphore keeps track of at once (the table fills the
/// rest of the page).
#[cfg(test)]
const SLOTS: usize =
    (REGION_LEN - std::mem::size_of::<SemState>()) / std::mem::size_of::<SemSlot>();

/// Which holder count a change touches.
#[derive(Clone, Copy)]
enum Counter {
    None,
    Slot(usize),
    Untracked,
}

/// How long `acquire` may wait.
#[derive(Clone, Copy)]
enum Block {
    No,
    Until(Option<Instant>),
}

/// What `Semaphore` and `BoundedSemaphore` share.
pub(crate) struct SemCore {
    shm: Shm<SemState>,
    /// This handle's guess of its process's slot: `pid << 32 | index`.
    slot: AtomicU64,
}

impl Clone for SemCore {
    fn clone(&self) -> Self {
        SemCore {
            shm: self.shm.clone(),
            slot: AtomicU64::new(self.slot.load(Ordering::Relaxed)),
        }
    }
}

impl SemCore {
    fn new(name: &str, value: u32, max: u32) -> crate::error::Result<SemCore> {
        if value > SEM_VALUE_MAX {
            return Err(SyncError::invalid_argument(format!(
                "semaphore initial value must be at most {SEM_VALUE_MAX}, not {value}"
            ))
            .into());
        }
        let shm = Shm::<SemState>::create(name, REGION_LEN - std::mem::size_of::<SemState>())?;
        let st = shm.get();
        st.value.store(value, Ordering::Relaxed);
        st.max.store(max, Ordering::Relaxed);
        Ok(SemCore {
            shm,
            slot: AtomicU64::new(0),
        })
    }

    #[inline(always)]
    fn state(&self) -> &SemState {
        self.shm.get()
    }

    #[inline(always)]
    fn slots(&self) -> &[SemSlot] {
        self.shm.table()
    }

    fn max(st: &SemState) -> u32 {
        st.max.load(Ordering::Relaxed).min(SEM_VALUE_MAX)
    }

    /// Slots in use are below this (bounded by the table, whatever shared memory says).
    fn hwm(&self, st: &SemState) -> usize {
        (st.hwm.load(Ordering::Relaxed) as usize).min(self.slots().len())
    }

    /// Takes the internal lock, repairing what a holder that died left.
    #[inline]
    fn lock(&self) -> &SemState {
        let st = self.state();
        if !st.lock.try_lock() {
            self.lock_slow(st);
        }
        st
    }

    /// The internal lock is held for a few instructions at a time: spin, then let the
    /// holder's CPU go (it may share ours), and only then sleep on it, which makes every
    /// release of the holder a system call until we get it (and is how a dead holder is
    /// noticed).
    #[cold]
    fn lock_slow(&self, st: &SemState) {
        for round in 0..INTERNAL_SPINS {
            if round % 64 == 63 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            if st.lock.holder().is_none() && st.lock.try_lock() {
                return;
            }
        }
        let mut how = st.lock.lock(None);
        while how.is_none() {
            how = st.lock.lock(None);
        }
        if how == Some(Acquired::OwnerDied) {
            self.recover(st);
        }
    }

    #[inline]
    fn unlock(st: &SemState) {
        st.lock.unlock();
    }

    fn counter<'a>(&'a self, st: &'a SemState, which: Counter) -> Option<&'a AtomicU32> {
        match which {
            Counter::None => None,
            Counter::Slot(i) => self.slots().get(i).map(|s| &s.held),
            Counter::Untracked => Some(&st.untracked),
        }
    }

    /// The journal's tag for a counter.
    fn tag(which: Counter) -> u32 {
        match which {
            Counter::None => 0,
            Counter::Slot(i) => i as u32 + 1,
            Counter::Untracked => UNTRACKED,
        }
    }

    /// Sets the value (from `old`) and one holder count together, journaled: a process
    /// killed half way leaves the journal to undo it.
    #[inline]
    fn commit(&self, st: &SemState, old: u32, value: u32, which: Counter, count: u32) {
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
    fn journaled(st: &SemState, old: u32, value: u32, tag: u32, counter: &AtomicU32, count: u32) {
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
    fn cached_slot<'a>(&self, slots: &'a [SemSlot]) -> Option<(usize, &'a SemSlot)> {
        let cached = self.slot.load(Ordering::Relaxed);
        let i = cached as u32 as usize;
        let me = current_pid();
        let slot = slots.get(i)?;
        ((cached >> 32) as u32 == me && slot.pid.load(Ordering::Relaxed) == me).then_some((i, slot))
    }

    /// Under the internal lock, taken over from a process that died holding it: undoes
    /// its change in progress, then takes back the permits of the dead.
    #[cold]
    fn recover(&self, st: &SemState) {
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
    fn my_slot(&self, st: &SemState, me: u32) -> Option<usize> {
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
    fn claim_slot(&self, st: &SemState, me: u32) -> Option<usize> {
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
    fn reclaim_dead(&self, st: &SemState, all: bool) -> u32 {
        let me = current_pid();
        let slots = self.slots();
        let mut total = 0u32;
        for (i, slot) in slots[..self.hwm(st)].iter().enumerate() {
            let pid = slot.pid.load(Ordering::Relaxed);
            let held = slot.held.load(Ordering::Relaxed);
            if pid == 0 || pid == me || (!all && held == 0) {
                continue;
            }
            if !process_is_dead(pid) {
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

    /// Takes a permit (the value is above 0), recording it as this process's.
    #[inline]
    fn take(&self, st: &SemState, value: u32) {
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
    fn wake_due(st: &SemState) -> bool {
        if st.sleepers.load(Ordering::Relaxed) == 0 {
            return false;
        }
        st.sleepers.store(0, Ordering::Relaxed);
        st.seq.fetch_add(1, Ordering::Release);
        true
    }

    #[inline]
    fn acquire(&self, block: Block) -> bool {
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
    fn acquire_slow(&self, block: Block) -> bool {
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
    fn release(&self) -> Result<(), ReleaseError> {
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
    fn release_slow(&self) -> Result<(), ReleaseError> {
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
    fn forget(&self) {
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

    fn value(&self) -> u32 {
        self.state().value.load(Ordering::Relaxed)
    }

    fn reclaimed(&self) -> u32 {
        self.state().reclaimed.load(Ordering::Relaxed)
    }

    fn max_value(&self) -> u32 {
        Self::max(self.state())
    }
}

impl Serialize for SemCore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SemCore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SemCore {
            shm: Shm::deserialize(deserializer)?,
            slot: AtomicU64::new(0),
        })
    }
}

macro_rules! semaphore_api {
    ($ty:ident) => {
        impl $ty {
            /// Takes a permit, waiting as long as it takes for one.
            pub fn acquire(&self) {
                self.core.acquire(Block::Until(None));
            }

            /// Takes a permit, waiting at most `timeout`; whether it got one. A zero
            /// timeout only tries.
            pub fn acquire_timeout(&self, timeout: Duration) -> bool {
                self.core
                    .acquire(Block::Until(Some(sys::deadline_after(timeout))))
            }

            /// Takes a permit if one is available now; whether it got one.
            pub fn try_acquire(&self) -> bool {
                self.core.acquire(Block::No)
            }

            /// Takes a permit and returns a guard that gives it back when dropped.
            pub fn permit(&self) -> SemaphoreGuard<'_> {
                self.acquire();
                SemaphoreGuard { core: &self.core }
            }

            /// [`permit`](Self::permit), if one is available now.
            pub fn try_permit(&self) -> Option<SemaphoreGuard<'_>> {
                self.try_acquire()
                    .then_some(SemaphoreGuard { core: &self.core })
            }

            /// [`permit`](Self::permit), waiting at most `timeout`.
            pub fn permit_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
                self.acquire_timeout(timeout)
                    .then_some(SemaphoreGuard { core: &self.core })
            }

            /// The permits available now.
            pub fn value(&self) -> u32 {
                self.core.value()
            }

            /// How many permits were taken back from processes that died holding them,
            /// over the semaphore's life.
            pub fn reclaimed(&self) -> u32 {
                self.core.reclaimed()
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.core.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Ok($ty {
                    core: SemCore::deserialize(deserializer)?,
                })
            }
        }
    };
}

/// A semaphore shared between processes: Python's `multiprocessing.Semaphore`.
///
/// It counts permits: [`acquire`](Semaphore::acquire) takes one, waiting while there
/// is none; [`release`](Semaphore::release) gives one back, and may raise the count
/// above its initial value (use [`BoundedSemaphore`] to forbid that). Hand it to other
/// processes as a worker argument, a `#[process]` field, or through a queue or a pipe.
///
/// ```
/// use multiproc::Semaphore;
///
/// #[multiproc::worker]
/// fn limited(sem: Semaphore, i: u32) {
///     let _permit = sem.permit(); // at most two workers in here at once
///     println!("worker {i} got in");
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let sem = Semaphore::new(2)?;
///     let workers: Vec<_> = (0..4)
///         .map(|i| limited::spawn(sem.clone(), i))
///         .collect::<Result<_, _>>()?;
///     for w in workers {
///         w.join()?;
///     }
///     assert_eq!(sem.value(), 2);
///     Ok(())
/// }
/// ```
///
/// # Permits of processes that die
///
/// Python's semaphores have no owner, so a process killed while holding a permit takes
/// it to the grave, and the others may wait forever. Here the semaphore records which
/// process holds which permits: a permit counts as held by the process that took it
/// until a release gives it back. A release gives back one of the releasing process's
/// own permits if it holds any, else one held by another process, else (for a
/// `Semaphore`) it adds a permit. When a process dies holding permits, a process
/// waiting in `acquire` notices (after 10 ms, then every 100 ms) and puts them back,
/// logging a warning; [`reclaimed`](Semaphore::reclaimed) counts them. Semaphores are
/// not poisoned: a permit is a count, not data.
///
/// # Caveats
///
/// - "Dies" means ends, however: a process that *exits* holding permits has them taken
///   back too. A semaphore used as a counter of items (a producer releases, a consumer
///   acquires and never releases) should have the consumer call
///   [`SemaphoreGuard::forget`] (or release and acquire in pairs): otherwise a consumer
///   that ends hands back the items it consumed but no producer's release matched.
/// - The table has room for 253 processes at once (the slots of dead processes are
///   reused). Permits taken by further processes are not recorded, and are lost if
///   their process dies holding them.
/// - Only a waiting acquisition (blocking, or with a timeout of 10 ms or more) looks for
///   dead holders; [`try_acquire`](Semaphore::try_acquire) does not.
/// - A process is identified by its pid (see [`Lock`](crate::Lock)'s caveats).
pub struct Semaphore {
    core: SemCore,
}

impl Semaphore {
    /// A semaphore with `value` permits (at most [`SEM_VALUE_MAX`]).
    pub fn new(value: u32) -> crate::error::Result<Semaphore> {
        Ok(Semaphore {
            core: SemCore::new("semaphore", value, SEM_VALUE_MAX)?,
        })
    }

    /// Gives a permit back (or adds one), waking a waiter if there is one. An error
    /// only at [`SEM_VALUE_MAX`].
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.core.release()
    }
}

semaphore_api!(Semaphore);

impl Clone for Semaphore {
    fn clone(&self) -> Self {
        Semaphore {
            core: self.core.clone(),
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

/// A semaphore that cannot be released above its initial value: Python's
/// `multiprocessing.BoundedSemaphore`.
///
/// Releasing it at its initial value is an error ("semaphore or lock released too many
/// times"), and changes nothing. Otherwise it is a [`Semaphore`], with the same
/// handling of processes that die holding permits.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let sem = multiproc::BoundedSemaphore::new(2)?;
/// assert!(sem.release().unwrap_err().is_too_many());
/// sem.acquire();
/// sem.release().unwrap();
/// assert_eq!(sem.value(), 2);
/// # Ok(())
/// # }
/// ```
pub struct BoundedSemaphore {
    core: SemCore,
}

impl BoundedSemaphore {
    /// A semaphore with `value` permits (at most [`SEM_VALUE_MAX`]), never more.
    pub fn new(value: u32) -> crate::error::Result<BoundedSemaphore> {
        Ok(BoundedSemaphore {
            core: SemCore::new("bounded-semaphore", value, value)?,
        })
    }

    /// Gives a permit back, waking a waiter if there is one; an error if the value is
    /// at its bound.
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.core.release()
    }

    /// The bound: the initial value.
    pub fn max_value(&self) -> u32 {
        self.core.max_value()
    }
}

semaphore_api!(BoundedSemaphore);

impl Clone for BoundedSemaphore {
    fn clone(&self) -> Self {
        BoundedSemaphore {
            core: self.core.clone(),
        }
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("max_value", &self.max_value())
            .finish()
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`], given back when dropped.
pub struct SemaphoreGuard<'a> {
    core: &'a SemCore,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken for good: it is not given back now, nor when this
    /// process ends.
    pub fn forget(self) {
        self.core.forget();
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // A bounded semaphore at its bound means someone released our permit already.
        let _ = self.core.release();
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_python() {
        let sem = Semaphore::new(2).unwrap();
        sem.acquire();
        sem.acquire();
        assert_eq!(sem.value(), 0);
        assert!(!sem.try_acquire());
        let start = Instant::now();
        assert!(!sem.acquire_timeout(Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(45));
        sem.release().unwrap();
        sem.release().unwrap();
        sem.release().unwrap();
        assert_eq!(sem.value(), 3);
        assert_eq!(format!("{sem:?}"), "Semaphore { value: 3 }");
        assert!(Semaphore::new(SEM_VALUE_MAX + 1).is_err());
    }

    #[test]
    fn bounded_refuses_to_go_above() {
        let sem = BoundedSemaphore::new(2).unwrap();
        let err = sem.release().unwrap_err();
        assert_eq!(err.to_string(), "semaphore or lock released too many times");
        assert_eq!(sem.value(), 2);
        sem.acquire();
        sem.acquire();
        sem.release().unwrap();
        sem.release().unwrap();
        assert!(sem.release().is_err());
        assert_eq!(
            format!("{sem:?}"),
            "BoundedSemaphore { value: 2, max_value: 2 }"
        );
    }

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
        assert_eq!(SLOTS, 253);
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
