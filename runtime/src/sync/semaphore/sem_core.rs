//! `SemCore`, what both semaphore types share: the shared page (state and holder
//! table), its internal lock, and how it crosses to another process.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::os::futex::{Acquired, RawLock};
use crate::sync::error::SyncError;
use crate::sync::{Atomics, Shm};

/// The largest value a semaphore can have: 2147483647, as POSIX's `SEM_VALUE_MAX` on
/// Linux. Releasing a [`Semaphore`](crate::Semaphore) at this value is an error.
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// Bytes of a semaphore's region: one page.
const REGION_LEN: usize = 4096;

/// Rounds of waiting for the internal lock (a yield every 64) before sleeping on it.
const INTERNAL_SPINS: u32 = 512;

/// `SemState::j_counter` naming the `untracked` counter.
pub(super) const UNTRACKED: u32 = u32::MAX;

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct SemState {
    /// Held during every change (never while sleeping).
    pub(super) lock: RawLock,
    /// The permits available.
    pub(super) value: AtomicU32,
    /// The bound of `value` (SEM_VALUE_MAX for a `Semaphore`).
    pub(super) max: AtomicU32,
    /// Non-zero while threads may sleep in `acquire` without a wake-up on its way.
    pub(super) sleepers: AtomicU32,
    /// Permits held by processes that found no free slot: never reclaimed.
    pub(super) untracked: AtomicU32,
    /// Permits taken back from dead processes, over the semaphore's life.
    pub(super) reclaimed: AtomicU32,
    /// Slots at and above this index have never been used.
    pub(super) hwm: AtomicU32,
    /// Non-zero while a two-word change is in progress; the words below hold what to
    /// restore.
    pub(super) journal: AtomicU32,
    pub(super) j_value: AtomicU32,
    /// 0: no counter; `i + 1`: slot `i`'s `held`; `UNTRACKED`: `untracked`.
    pub(super) j_counter: AtomicU32,
    pub(super) j_count: AtomicU32,
    /// Bumped by every wake-up; the futex sleepers wait on.
    pub(super) seq: AtomicU32,
}

// SAFETY: repr(C), atomics only.
unsafe impl Atomics for SemState {}

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct SemSlot {
    /// The process this slot belongs to; 0 while free.
    pub(super) pid: AtomicU32,
    /// Permits it holds.
    pub(super) held: AtomicU32,
    /// The [`Stamp`](crate::os::identity::Stamp) of that process: tells it from a
    /// later one with the same pid.
    pub(super) who: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<SemSlot>() == 16);
const _: () = assert!(std::mem::size_of::<SemState>() == 64);

// SAFETY: repr(C), atomics only.
unsafe impl Atomics for SemSlot {}

/// The number of processes a semaphore keeps track of at once (the table fills the
/// rest of the page).
#[cfg(test)]
pub(super) const SLOTS: usize =
    (REGION_LEN - std::mem::size_of::<SemState>()) / std::mem::size_of::<SemSlot>();

/// Which holder count a change touches.
#[derive(Clone, Copy)]
pub(super) enum Counter {
    None,
    Slot(usize),
    Untracked,
}

/// How long `acquire` may wait.
#[derive(Clone, Copy)]
pub(super) enum Block {
    No,
    Until(Option<Instant>),
}

/// What `Semaphore` and `BoundedSemaphore` share.
pub(crate) struct SemCore {
    pub(super) shm: Shm<SemState>,
    /// This handle's guess of its process's slot: `pid << 32 | index`.
    pub(super) slot: AtomicU64,
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
    pub(super) fn new(name: &str, value: u32, max: u32) -> crate::error::Result<SemCore> {
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
    pub(super) fn state(&self) -> &SemState {
        self.shm.get()
    }

    #[inline(always)]
    pub(super) fn slots(&self) -> &[SemSlot] {
        self.shm.table()
    }

    pub(super) fn max(st: &SemState) -> u32 {
        st.max.load(Ordering::Relaxed).min(SEM_VALUE_MAX)
    }

    /// Slots in use are below this (bounded by the table, whatever shared memory says).
    pub(super) fn hwm(&self, st: &SemState) -> usize {
        (st.hwm.load(Ordering::Relaxed) as usize).min(self.slots().len())
    }

    /// Takes the internal lock, repairing what a holder that died left.
    #[inline]
    pub(super) fn lock(&self) -> &SemState {
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
    pub(super) fn unlock(st: &SemState) {
        st.lock.unlock();
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
