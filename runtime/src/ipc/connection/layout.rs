//! The shared region of a pipe: its constants and the header before the rings.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use crate::ipc::ring::{Line, RingControl};
use crate::os::shm::Atomics;

pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"mppipe01");
pub(super) const DATA_OFFSET: usize = 4096;
/// The ring of each direction.
pub(super) const RING: usize = 64 << 10;
/// The only kind of ring record.
pub(super) const MSG: u32 = 1;
/// Bytes of the sequence number at the start of a message frame.
pub(super) const SEQ_LEN: usize = 8;
/// The longest a blocked receive sleeps before it looks at the ring again: a sender
/// may have died between publishing a message and ringing the doorbell.
pub(super) const RECHECK: Duration = Duration::from_secs(1);

#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Info {
    pub(super) magic: AtomicU64,
    pub(super) ring_size: AtomicU64,
    pub(super) type_hash: AtomicU64,
    pub(super) duplex: AtomicU32,
    /// Handles of each end that exist, in every process (see [`Inner::counted`]).
    pub(super) holders: [AtomicU32; 2],
}

#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct DirWake {
    /// Receivers asleep (or in `wait`) on this direction.
    pub(super) sleepers: AtomicU32,
    /// A doorbell was sent since the last sleeper went to sleep.
    pub(super) rung: AtomicU32,
}

/// One direction: end `d` sends on direction `d`.
#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Dir {
    pub(super) ring: RingControl,
    pub(super) wake: Line<DirWake>,
}

#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct Header {
    pub(super) info: Line<Info>,
    pub(super) dirs: [Dir; 2],
}

// SAFETY: repr(C); every field is an atomic, a `RawLock` (one atomic), a `Line` or an
// array of them, so any bits are valid and every access is atomic.
unsafe impl Atomics for Header {}

const _: () = assert!(std::mem::size_of::<Header>() <= DATA_OFFSET);
