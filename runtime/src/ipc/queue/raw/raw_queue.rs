//! [`RawQueue`]: one process's handle on a queue's region, its locks, the state it
//! reads without them, and what crosses to another process.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ipc::error::{ChannelError, Corruption};
use crate::ipc::ring::{self, Ring, Word};
use crate::ipc::spin::Spinner;
use crate::os::futex::{Acquired, FIRST_CHECK, RawLock};
use crate::os::identity::process_is_dead;
use crate::os::shm::SharedRegion;
use crate::os::sys;
use crate::wire::codec::PortableFd;
use crate::wire::courier::Courier;

use super::layout::{DATA_OFFSET, Flavor, Header, MAGIC};
use super::sparse;

/// The longest a blocked operation sleeps before it looks at the queue again: the
/// process that should wake it may have died between publishing its change and the
/// wake-up call.
pub(super) const RECHECK: Duration = Duration::from_secs(1);

/// The end of the next sleep of a wait that ends at `deadline`.
pub(super) fn nap_until(deadline: Option<Instant>) -> Option<Instant> {
    let nap = Instant::now() + RECHECK;
    Some(deadline.map_or(nap, |d| d.min(nap)))
}

/// How long an operation may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    /// Not at all.
    None,
    /// Until the deadline (`None`: forever).
    Until(Option<Instant>),
}

impl Patience {
    pub(super) fn deadline(self) -> Option<Instant> {
        match self {
            Patience::None => Some(Instant::now()),
            Patience::Until(d) => d,
        }
    }

    pub(super) fn waits(self) -> bool {
        matches!(self, Patience::Until(_))
    }
}

/// Why a raw put or get did not happen.
#[derive(Debug)]
pub(crate) enum Fail {
    /// Full (put) or empty (get), without waiting.
    NotNow,
    Timeout,
    Closed,
    Failed(Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Failed(e.into())
    }
}

impl From<ChannelError> for Fail {
    fn from(e: ChannelError) -> Self {
        Fail::Failed(e.into())
    }
}

impl From<ring::Corrupt> for Fail {
    fn from(e: ring::Corrupt) -> Self {
        Fail::Failed(ChannelError::Corrupt(Corruption::new(e.0)).into())
    }
}

/// The shared part of a queue, as one process holds it.
#[derive(Debug)]
pub(crate) struct RawQueue {
    pub(super) region: SharedRegion,
    pub(super) courier: Courier,
    pub(super) bell: PortableFd,
    pub(super) ring_size: usize,
    /// The part of the ring that stays in memory: `ring_size` unless it grows
    /// (`grow.rs`).
    pub(super) resident: usize,
    /// How long a put about to grow the ring waits for a rewind (`grow.rs`).
    pub(super) grow_wait: Duration,
    pub(super) max_items: u32,
    pub(super) spin: Spinner,
}

/// What crosses to another process: the descriptors; everything else is in the region.
#[derive(Serialize, Deserialize)]
struct Wire {
    region: SharedRegion,
    courier: Courier,
    bell: PortableFd,
}

/// Holds a ring lock, and releases it when dropped.
pub(super) struct Held<'a>(&'a RawLock);

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// Takes a ring lock within `patience`. Without patience (the `try_` forms) it never
/// waits for a living holder, not even for the bounded work a holder does under it:
/// a holder stopped with SIGSTOP would make that wait unbounded. A holder that died
/// is taken over, after one liveness check.
#[inline]
pub(super) fn lock<'a>(lock: &'a RawLock, patience: Patience, what: &str) -> Option<Held<'a>> {
    if lock.try_lock() {
        return Some(Held(lock));
    }
    lock_contended(lock, patience, what)
}

/// Takes a ring lock if it is free right now; `None` otherwise, without looking at
/// its holder (the fast paths' first try, which fall back to `lock`).
#[inline(always)]
pub(super) fn try_lock_now(lock: &RawLock) -> Option<Held<'_>> {
    // Not `then_some(Held(..))`: that makes a `Held` either way, whose drop unlocks.
    if lock.try_lock() {
        Some(Held(lock))
    } else {
        None
    }
}

/// `lock` once the word was found taken.
#[inline(never)]
fn lock_contended<'a>(lock: &'a RawLock, patience: Patience, what: &str) -> Option<Held<'a>> {
    let acquired = match patience {
        Patience::None if lock.try_lock() => Acquired::Clean,
        Patience::None => match lock.holder() {
            // `lock` checks a holder's life after its first slice of waiting: a
            // deadline just past that slice takes a dead holder's lock over.
            Some(pid) if process_is_dead(pid) => {
                lock.lock(Some(Instant::now() + 3 * FIRST_CHECK))?
            }
            _ => return None,
        },
        Patience::Until(deadline) => lock.lock(deadline)?,
    };
    if acquired == Acquired::OwnerDied {
        log::debug!("took over the {what} lock of a queue from a process that died");
    }
    Some(Held(lock))
}

impl RawQueue {
    /// A new queue whose ring keeps `ring_bytes` in memory: growable (`grow.rs`)
    /// if it has no capacity in items, fixed otherwise.
    pub(crate) fn new(
        ring_bytes: usize,
        max_items: usize,
        type_hash: u64,
        flavor: Flavor,
    ) -> io::Result<RawQueue> {
        let virtual_size = if max_items == 0 { ring::MAX_RING } else { 0 };
        Self::create(ring_bytes, virtual_size, max_items, type_hash, flavor)
    }

    /// A new queue whose ring keeps `ring_bytes` in memory and grows up to
    /// `virtual_size` bytes (not at all if that is not larger).
    pub(super) fn create(
        ring_bytes: usize,
        virtual_size: usize,
        max_items: usize,
        type_hash: u64,
        flavor: Flavor,
    ) -> io::Result<RawQueue> {
        let area = sparse::create(flavor, ring_bytes, virtual_size)?;
        let ring_size = area.ring_size;
        let max_items = u32::try_from(max_items).unwrap_or(u32::MAX).min(1 << 30);
        let queue = RawQueue {
            region: area.region,
            courier: Courier::new()?,
            bell: PortableFd::new(sys::eventfd()?),
            ring_size,
            resident: area.resident,
            grow_wait: sparse::GROW_WAIT,
            max_items,
            spin: Spinner::default(),
        };
        let info = &queue.header().info;
        info.ring_size.store(ring_size as u64, Ordering::Relaxed);
        if queue.grows() {
            info.resident.store(area.resident as u64, Ordering::Relaxed);
        }
        info.max_items
            .store(u64::from(max_items), Ordering::Relaxed);
        info.type_hash.store(type_hash, Ordering::Relaxed);
        info.flavor.store(flavor as u32, Ordering::Relaxed);
        info.magic.store(MAGIC, Ordering::Release);
        Ok(queue)
    }

    pub(super) fn header(&self) -> &Header {
        // SAFETY: offset 0 is aligned (the mapping is page-aligned) and the header fits
        // before DATA_OFFSET; it is made of atomics, valid for any bits.
        unsafe { self.region.get::<Header>(0) }
    }

    pub(super) fn ring(&self) -> Ring<'_> {
        // SAFETY: the data area is the `ring_size` bytes after DATA_OFFSET, inside the
        // region (checked at creation or when received), and lives as long as `self`;
        // `ring_size` is a power of two within the ring's limits.
        unsafe {
            Ring::new(
                &self.header().ring,
                self.region.as_ptr().add(DATA_OFFSET),
                self.ring_size,
            )
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.header().info.closed.load(Ordering::SeqCst) != 0
    }

    /// The words of both sides, read without locks.
    fn words(&self) -> (Word, Word) {
        let ctl = &self.header().ring;
        let head = Word(ctl.head.word.load(Ordering::Acquire));
        let tail = Word(ctl.tail.word.load(Ordering::Acquire));
        (head, tail)
    }

    /// Items in the queue: put and not yet taken.
    pub(crate) fn len(&self) -> usize {
        let (head, tail) = self.words();
        let items = Ring::items(head, tail);
        // A count "below zero" is a torn read of the two words: call it empty.
        if items > u32::MAX / 2 {
            0
        } else {
            items as usize
        }
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        (self.max_items > 0).then_some(self.max_items as usize)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.max_items > 0 && self.len() >= self.max_items as usize
    }

    pub(super) fn has_items(&self) -> bool {
        let (head, tail) = self.words();
        head.pos() != tail.pos()
    }

    /// Whether a record of `need` bytes would fit now (a hint for waiting, taken
    /// without the lock).
    pub(super) fn has_room(&self, need: u32) -> bool {
        let (head, tail) = self.words();
        let used = tail.pos().wrapping_sub(head.pos());
        let items = Ring::items(head, tail);
        used <= self.ring_size as u32 - need.min(self.ring_size as u32)
            && (self.max_items == 0 || items < self.max_items || items > u32::MAX / 2)
    }

    // --- crossing to another process ---

    pub(crate) fn wire(&self) -> impl Serialize + '_ {
        WireRef {
            region: &self.region,
            courier: &self.courier,
            bell: &self.bell,
        }
    }

    /// A queue received from another process, checked against what the receiver
    /// expects.
    pub(crate) fn from_wire<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
        type_hash: u64,
        type_name: &str,
        flavor: Flavor,
    ) -> Result<RawQueue, D::Error> {
        use serde::de::Error as _;
        let Wire {
            region,
            courier,
            bell,
        } = Wire::deserialize(deserializer)?;
        if region.len() < DATA_OFFSET + ring::MIN_RING {
            return Err(D::Error::custom("a queue's shared memory is too small"));
        }
        // SAFETY: as in `header`.
        let info = &unsafe { region.get::<Header>(0) }.info;
        if info.magic.load(Ordering::Acquire) != MAGIC {
            return Err(D::Error::custom("not a multiproc queue"));
        }
        let ring_size = usize::try_from(info.ring_size.load(Ordering::Relaxed)).unwrap_or(0);
        if !ring_size.is_power_of_two()
            || !(ring::MIN_RING..=ring::MAX_RING).contains(&ring_size)
            || region.len() < DATA_OFFSET + ring_size
        {
            return Err(D::Error::custom(
                "a queue whose ring does not fit its memory",
            ));
        }
        let got = info.flavor.load(Ordering::Relaxed);
        if got != flavor as u32 {
            let name = [Flavor::Queue, Flavor::Simple, Flavor::Joinable]
                .into_iter()
                .find(|f| *f as u32 == got)
                .map_or("something else", Flavor::name);
            return Err(D::Error::custom(format!(
                "a {name} received as a {}",
                flavor.name()
            )));
        }
        if info.type_hash.load(Ordering::Relaxed) != type_hash {
            return Err(D::Error::custom(format!(
                "a queue of another item type received as a queue of `{type_name}`"
            )));
        }
        let Some(resident) =
            sparse::resident_from(info.resident.load(Ordering::Relaxed), ring_size)
        else {
            return Err(D::Error::custom(
                "a queue whose resident ring does not fit its ring",
            ));
        };
        let max_items = u32::try_from(info.max_items.load(Ordering::Relaxed))
            .unwrap_or(u32::MAX)
            .min(1 << 30);
        Ok(RawQueue {
            region,
            courier,
            bell,
            ring_size,
            resident,
            grow_wait: sparse::GROW_WAIT,
            max_items,
            spin: Spinner::default(),
        })
    }
}

#[derive(Serialize)]
struct WireRef<'a> {
    region: &'a SharedRegion,
    courier: &'a Courier,
    bell: &'a PortableFd,
}
