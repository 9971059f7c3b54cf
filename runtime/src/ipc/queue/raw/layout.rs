//! The shared region of a queue: its constants and the header at its start (the
//! picture is in the module docs).

use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::ipc::ring::{Line, RingControl};
use crate::os::shm::Atomics;

pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"mpqueue1");
/// Where the data area starts.
pub(super) const DATA_OFFSET: usize = 4096;
/// The default data area: room for a few 1 MiB items in flight.
pub(crate) const DEFAULT_RING: usize = 4 << 20;

pub(super) const INLINE: u32 = 1;
pub(super) const INLINE_FDS: u32 = 2;
pub(super) const SPILL: u32 = 3;
/// No item: the bytes up to the end of the ring's lap, left when a growable ring
/// rewinds to its start (`grow.rs`).
pub(super) const SKIP: u32 = 4;

/// Which queue type a region belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Queue = 1,
    Simple = 2,
    Joinable = 3,
}

impl Flavor {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Flavor::Queue => "Queue",
            Flavor::Simple => "SimpleQueue",
            Flavor::Joinable => "JoinableQueue",
        }
    }
}

#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Info {
    pub(super) magic: AtomicU64,
    pub(super) ring_size: AtomicU64,
    /// 0: unbounded.
    pub(super) max_items: AtomicU64,
    pub(super) type_hash: AtomicU64,
    pub(super) flavor: AtomicU32,
    pub(super) closed: AtomicU32,
    /// A growable ring: the start of the data area that stays in memory (the rest is
    /// given back once read); 0: a ring of fixed size, all of it in memory.
    pub(super) resident: AtomicU64,
}

#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Wake {
    pub(super) not_empty: AtomicU32,
    pub(super) not_empty_waiters: AtomicU32,
    pub(super) not_full: AtomicU32,
    pub(super) not_full_waiters: AtomicU32,
    /// Processes in `wait` on this queue.
    pub(super) watchers: AtomicU32,
    /// Set when the eventfd was signalled and not yet found stale.
    pub(super) bell: AtomicU32,
    /// The next descriptor batch number.
    pub(super) fd_seq: AtomicU64,
    /// One more than the number of the batch a consumer is taking or took last (0:
    /// none yet), noted before it takes it.
    pub(super) taking: AtomicU64,
}

#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Join {
    /// `task_done` calls, compared with the items put (the tail word's count).
    pub(super) done: AtomicU32,
    pub(super) seq: AtomicU32,
    pub(super) waiters: AtomicU32,
}

/// The state of a growable ring's giving back of memory, changed only under the
/// consumer lock.
#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Grow {
    /// The position up to which the memory read was given back (a ring position, as
    /// the words' low halves).
    pub(super) punched: AtomicU64,
    /// Set while a consumer holds the producer lock to give memory back or rewind
    /// (bounded work), so that a `try_put` waits for it a little instead of saying
    /// "full" about a queue that never is.
    pub(super) giving_back: AtomicU32,
}

#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Header {
    pub(super) info: Line<Info>,
    pub(super) ring: RingControl,
    pub(super) wake: Line<Wake>,
    pub(super) join: Line<Join>,
    pub(super) grow: Line<Grow>,
}

// SAFETY: repr(C); every field is an atomic, a `RawLock` (one atomic) or a `Line` of
// them, so any bits are valid and every access is atomic.
unsafe impl Atomics for Header {}

const _: () = assert!(std::mem::size_of::<Header>() <= DATA_OFFSET);
const _: () = assert!(std::mem::offset_of!(Header, wake) == 320);
const _: () = assert!(std::mem::offset_of!(Header, grow) == 448);
