//! A byte ring in shared memory carrying variable-length records: the data path of
//! [`Queue`](crate::Queue) and of [`Connection`](crate::Connection).
//!
//! # Layout
//!
//! A ring is two words in a control block ([`RingControl`]) and a power-of-two data
//! area. The producer's word (`tail`) and the consumer's word (`head`), each on a cache
//! line apart from the side's lock, each pack a
//! 32-bit byte position and a 32-bit counter: `counter << 32 | position`. Positions and
//! counters only grow (wrapping at 2^32); the data offset of a position is
//! `position & (size - 1)`. A single store of a word publishes both a new position and
//! a new count, so a process that dies between two instructions never leaves them out
//! of step.
//!
//! A record is a 16-byte header (`len: u32`, `kind: u32`, `seq: u64`, little-endian)
//! and `len` payload bytes, padded to a multiple of 16, so positions stay 16-aligned
//! and a header never wraps around the end of the data area (a payload may: it is
//! copied in two pieces).
//!
//! # Protocol
//!
//! The producer writes a record at `tail` and then publishes it with one atomic swap of
//! the `tail` word; the consumer reads the records between `head` and `tail` and frees
//! them with one swap of the `head` word. Whoever writes a word holds the matching
//! [`RawLock`] (many producers and many consumers may share a ring), and a process
//! that dies holding one leaves its word as it was: a record is either wholly published
//! or not at all, and a record is either still there or wholly consumed.
//!
//! # Trust
//!
//! The shared memory is writable by every process holding the handle, so nothing read
//! from it is trusted: the distance between `head` and `tail`, a record's length and
//! kind are checked before use, every offset is masked into the data area, and data
//! is only ever copied, with atomic loads and stores of checked lengths, between the
//! ring and a private buffer, where it is checked (the policy is in
//! [`crate::os::shm`]'s docs: a plain read of bytes another process may write is a data
//! race). A corrupt ring gives [`Corrupt`], never an access out of bounds.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::ipc::spin::cpu_tag;
use crate::os::futex::RawLock;
use crate::os::shm::{copy_from_shared, copy_to_shared};

/// Bytes in a record header.
pub(crate) const RECORD_HEADER: u32 = 16;
/// The smallest data area.
pub(crate) const MIN_RING: usize = 4096;
/// The largest data area (positions are 32-bit and must stay well apart).
pub(crate) const MAX_RING: usize = 1 << 30;

/// One cache line of shared state, so that the producer's and the consumer's words do
/// not share a line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What only one side of a ring touches: its lock, and its last view of the other
/// side's word (a lower bound of the real one, so that it reads the other side's line
/// only when its view says it must). On a line of its own, so that the other side's
/// reads never pull it away while the lock is taken and released.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Side {
    pub(crate) lock: RawLock,
    _pad: AtomicU32,
    pub(crate) seen: AtomicU64,
}

/// What one side publishes for the other: its word, and the CPU it last ran on
/// ([`cpu_tag`]), for a waiter deciding how to spin.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// `count << 32 | position`.
    pub(crate) word: AtomicU64,
    pub(crate) cpu: AtomicU32,
}

/// The control block of one ring: each side's private line and published line.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RingControl {
    /// The producers' lock and their last view of `head`.
    pub(crate) tx: Line<Side>,
    /// The producers' word.
    pub(crate) tail: Line<Published>,
    /// The consumers' lock and their last view of `tail`.
    pub(crate) rx: Line<Side>,
    /// The consumers' word.
    pub(crate) head: Line<Published>,
}

/// A word of a ring: a byte position and a count, packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    #[inline]
    pub(crate) fn pos(self) -> u32 {
        self.0 as u32
    }

    #[inline]
    pub(crate) fn count(self) -> u32 {
        (self.0 >> 32) as u32
    }

    #[inline]
    pub(crate) fn new(count: u32, pos: u32) -> Word {
        Word((u64::from(count) << 32) | u64::from(pos))
    }

    /// The word after one more record of `bytes` bytes.
    #[inline]
    pub(crate) fn advance(self, bytes: u32) -> Word {
        Word::new(self.count().wrapping_add(1), self.pos().wrapping_add(bytes))
    }
}

/// A record's header, as read from the ring (not yet trusted beyond its bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) len: u32,
    pub(crate) kind: u32,
    pub(crate) seq: u64,
}

/// The shared memory of a ring is not what the protocol allows: a peer wrote garbage
/// into it (or a bug did). Holds what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) String);

/// The bytes a record of `len` payload bytes takes, header and padding included;
/// `None` if that does not fit in 32 bits.
#[inline]
pub(crate) fn record_bytes(len: usize) -> Option<u32> {
    let padded = len.checked_add(15)? & !15;
    u32::try_from(padded.checked_add(RECORD_HEADER as usize)?).ok()
}

/// A ring: its control block and its data area, both in a mapped shared region that
/// outlives this value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring<'a> {
    pub(crate) ctl: &'a RingControl,
    data: *mut u8,
    size: u32,
}

impl<'a> Ring<'a> {
    /// A ring over `ctl` and the `size` bytes at `data`.
    ///
    /// # Safety
    ///
    /// `data` must point to `size` bytes of shared memory, aligned to 16 and mapped for
    /// as long as `'a`, and `size` must be a power of two between [`MIN_RING`] and
    /// [`MAX_RING`]. Every access to the data area, here and in other processes, is
    /// atomic (see [`crate::os::shm`]).
    pub(crate) unsafe fn new(ctl: &'a RingControl, data: *mut u8, size: usize) -> Ring<'a> {
        debug_assert!(size.is_power_of_two() && (MIN_RING..=MAX_RING).contains(&size));
        debug_assert_eq!(data as usize % 16, 0);
        Ring {
            ctl,
            data,
            size: size as u32,
        }
    }

    #[inline]
    fn mask(&self) -> u32 {
        self.size - 1
    }

    /// The bytes in use between `head` and `tail`; [`Corrupt`] if more than the ring
    /// holds or not a whole number of records.
    #[inline]
    pub(crate) fn used(&self, head: Word, tail: Word) -> Result<u32, Corrupt> {
        let used = tail.pos().wrapping_sub(head.pos());
        if used > self.size || used % RECORD_HEADER != 0 || head.pos() % RECORD_HEADER != 0 {
            return Err(self.apart(head, tail));
        }
        Ok(used)
    }

    /// What `used` says of words that do not describe the ring: out of line, so that
    /// the checks inline into every fast path without the message's formatting.
    #[cold]
    #[inline(never)]
    fn apart(&self, head: Word, tail: Word) -> Corrupt {
        Corrupt(format!(
            "positions {} and {} are {} bytes apart in a ring of {}",
            head.pos(),
            tail.pos(),
            tail.pos().wrapping_sub(head.pos()),
            self.size
        ))
    }

    /// The items between `head` and `tail` (as counted by the two words).
    #[inline]
    pub(crate) fn items(head: Word, tail: Word) -> u32 {
        tail.count().wrapping_sub(head.count())
    }

    // --- producer side (the caller holds the tx lock) ---

    /// The free bytes for a producer at `tail`, reading the consumer's `head` only if
    /// the last one seen leaves less than `wanted`.
    #[inline(always)]
    pub(crate) fn free(&self, tail: Word, wanted: u32) -> Result<u32, Corrupt> {
        let seen = Word(self.ctl.tx.seen.load(Ordering::Relaxed));
        let used = tail.pos().wrapping_sub(seen.pos());
        // `used`'s checks, without its error: a bad view is looked at again below.
        if used <= self.size && (used | seen.pos()) % RECORD_HEADER == 0 {
            let free = self.size - used;
            if free >= wanted {
                return Ok(free);
            }
        }
        self.fresh_free(tail)
    }

    /// `free` once the last view of `head` leaves too little: reads `head`.
    #[inline(never)]
    fn fresh_free(&self, tail: Word) -> Result<u32, Corrupt> {
        let head = Word(self.ctl.head.word.load(Ordering::Acquire));
        self.ctl.tx.seen.store(head.0, Ordering::Relaxed);
        Ok(self.size - self.used(head, tail)?)
    }

    /// Writes a record at `tail` (which the caller checked has room for
    /// `record_bytes(payload.len())`), without publishing it; returns the word that
    /// publishes it.
    #[inline(always)]
    pub(crate) fn write(&self, tail: Word, kind: u32, seq: u64, payload: &[u8]) -> Word {
        let len = payload.len() as u32;
        let total = record_bytes(payload.len()).unwrap_or(u32::MAX);
        debug_assert!(total <= self.size);
        let first = u64::from(len) | (u64::from(kind) << 32);
        // Positions are multiples of 16 and the area's size is too: a header never
        // wraps, and is two aligned words.
        let at = (tail.pos() & self.mask()) as usize;
        self.store_pair(at, first.to_le(), seq.to_le());
        let at = tail.pos().wrapping_add(RECORD_HEADER);
        match self.whole(at, 16) {
            // A small payload is copied as one 16-byte block, two words: the record's
            // padding holds it, so nothing past the record is touched.
            Some(at) if (1..=16).contains(&payload.len()) => {
                let mut block = [0u8; 16];
                block[..payload.len()].copy_from_slice(payload);
                let (low, high) = halves(&block);
                self.store_pair(at, low, high);
            }
            _ => self.copy_in(at, payload),
        }
        tail.advance(total)
    }

    /// Stores two words at data offset `at` (16-aligned, `at + 16 <= size`: the
    /// callers' positions are multiples of 16, masked into the area).
    #[inline(always)]
    fn store_pair(&self, at: usize, low: u64, high: u64) {
        debug_assert!(at % 16 == 0 && at + 16 <= self.size as usize);
        // SAFETY: `at..at + 16` is inside the data area (mapped for `'a`) and 16-aligned
        // (the area is); every access to it, in any process, is atomic.
        unsafe {
            let word = self.data.add(at).cast::<u64>();
            AtomicU64::from_ptr(word).store(low, Ordering::Relaxed);
            AtomicU64::from_ptr(word.add(1)).store(high, Ordering::Relaxed);
        }
    }

    /// Loads the two words at data offset `at` (as in `store_pair`).
    #[inline(always)]
    fn load_pair(&self, at: usize) -> (u64, u64) {
        debug_assert!(at % 16 == 0 && at + 16 <= self.size as usize);
        // SAFETY: as in `store_pair`.
        unsafe {
            let word = self.data.add(at).cast::<u64>();
            (
                AtomicU64::from_ptr(word).load(Ordering::Relaxed),
                AtomicU64::from_ptr(word.add(1)).load(Ordering::Relaxed),
            )
        }
    }

    /// The offset of position `pos` if `len` bytes from there do not wrap around the
    /// end of the data area.
    #[inline]
    fn whole(&self, pos: u32, len: u32) -> Option<usize> {
        let at = pos & self.mask();
        (at + len <= self.size).then_some(at as usize)
    }

    /// Publishes records written up to `tail` (a full barrier, so that a following
    /// load of a waiter count is ordered after it).
    #[inline]
    pub(crate) fn publish(&self, tail: Word) {
        self.ctl.tail.word.swap(tail.0, Ordering::SeqCst);
        if cpu_due(tail) {
            note_cpu(&self.ctl.tail.cpu);
        }
    }

    /// Publishes several records at once (as [`publish`](Self::publish)), noting the
    /// CPU every time: a batch pays for it once.
    #[inline]
    pub(crate) fn publish_batch(&self, tail: Word) {
        self.ctl.tail.word.swap(tail.0, Ordering::SeqCst);
        note_cpu(&self.ctl.tail.cpu);
    }

    #[inline(never)]
    fn copy_in(&self, pos: u32, bytes: &[u8]) {
        // A record is never larger than the ring (checked by the caller through
        // `free`), so `bytes` is at most `size` long.
        let bytes = &bytes[..bytes.len().min(self.size as usize)];
        let at = (pos & self.mask()) as usize;
        let first = bytes.len().min(self.size as usize - at);
        // SAFETY: `at + first <= size` and `bytes.len() - first <= at <= size`: both
        // copies stay inside the data area, which is mapped for `'a`. Atomic copies,
        // because other processes map the same memory.
        unsafe {
            copy_to_shared(&bytes[..first], self.data.add(at));
            copy_to_shared(&bytes[first..], self.data);
        }
    }

    // --- consumer side (the caller holds the rx lock) ---

    /// The producer's word, reading the producer's line only if the last one seen
    /// shows nothing past `head`.
    #[inline(always)]
    pub(crate) fn tail(&self, head: Word) -> Word {
        let seen = Word(self.ctl.rx.seen.load(Ordering::Relaxed));
        let used = seen.pos().wrapping_sub(head.pos());
        // `used`'s checks, without its error: a bad view is read again.
        if used != 0 && used <= self.size && (used | head.pos()) % RECORD_HEADER == 0 {
            return seen;
        }
        self.fresh_tail()
    }

    /// The producer's word, read from its line.
    #[inline]
    pub(crate) fn fresh_tail(&self) -> Word {
        let tail = Word(self.ctl.tail.word.load(Ordering::Acquire));
        self.ctl.rx.seen.store(tail.0, Ordering::Relaxed);
        tail
    }

    /// The header of the record at `head`, checked against the bytes in use and the
    /// kinds `valid_kind` accepts.
    #[inline]
    pub(crate) fn header(
        &self,
        head: Word,
        tail: Word,
        valid_kind: impl Fn(u32) -> bool,
    ) -> Result<Option<RecordHeader>, Corrupt> {
        let used = self.used(head, tail)?;
        if used == 0 {
            return Ok(None);
        }
        self.header_in(head, used, valid_kind).map(Some)
    }

    /// The header of the record at `head`, `used` bytes (not 0) being in use from
    /// there as [`used`](Self::used) counted them (so that a loop over several records
    /// need not check the words for each).
    #[inline(always)]
    pub(crate) fn header_in(
        &self,
        head: Word,
        used: u32,
        valid_kind: impl Fn(u32) -> bool,
    ) -> Result<RecordHeader, Corrupt> {
        debug_assert!(used > 0 && used % RECORD_HEADER == 0 && head.pos() % RECORD_HEADER == 0);
        // A whole number of 16-byte records is in use (checked by `used`): the header
        // is two aligned words inside the area.
        let (first, seq) = self.load_pair((head.pos() & self.mask()) as usize);
        let (first, seq) = (u64::from_le(first), u64::from_le(seq));
        let header = RecordHeader {
            len: first as u32,
            kind: (first >> 32) as u32,
            seq,
        };
        let total = record_bytes(header.len as usize);
        if total.is_none_or(|t| t > used) || !valid_kind(header.kind) {
            return Err(bad_record(&header, used, total.is_none_or(|t| t > used)));
        }
        Ok(header)
    }

    /// Appends the payload of the record at `head` (whose header was checked) to `out`.
    #[inline(always)]
    pub(crate) fn read_payload(&self, head: Word, header: &RecordHeader, out: &mut Vec<u8>) {
        if let Some(block) = self.small_payload(head, header) {
            // The whole block, then cut: a copy of a constant length is two moves,
            // one of `len` bytes a call.
            let start = out.len();
            out.extend_from_slice(&block);
            out.truncate(start + header.len as usize);
            return;
        }
        let len = (header.len as usize).min(self.size as usize);
        self.read_large(head.pos().wrapping_add(RECORD_HEADER), len, out);
    }

    /// The payload of the record at `head` (whose header was checked) as one 16-byte
    /// block, its first `header.len` bytes the payload, if it is 1 to 16 bytes long.
    #[inline(always)]
    pub(crate) fn small_payload(&self, head: Word, header: &RecordHeader) -> Option<[u8; 16]> {
        let at = head.pos().wrapping_add(RECORD_HEADER);
        let at = self
            .whole(at, 16)
            .filter(|_| (1..=16).contains(&header.len))?;
        // Inside the record: a payload of 1 to 16 bytes is padded to 16, and the
        // caller checked the record against the bytes in use.
        let (low, high) = self.load_pair(at);
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&low.to_ne_bytes());
        block[8..].copy_from_slice(&high.to_ne_bytes());
        Some(block)
    }

    /// `read_payload` of a payload that is not one 16-byte block.
    #[inline(never)]
    fn read_large(&self, at: u32, len: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + len, 0);
        self.copy_out(at, &mut out[start..]);
    }

    /// The word after the record at `head`.
    #[inline]
    pub(crate) fn after(head: Word, header: &RecordHeader) -> Word {
        head.advance(record_bytes(header.len as usize).unwrap_or(0))
    }

    /// Frees the records up to `head` (a full barrier, as `publish`).
    #[inline]
    pub(crate) fn release(&self, head: Word) {
        self.ctl.head.word.swap(head.0, Ordering::SeqCst);
        if cpu_due(head) {
            note_cpu(&self.ctl.head.cpu);
        }
    }

    /// Frees several records at once (as [`publish_batch`](Self::publish_batch)).
    #[inline]
    pub(crate) fn release_batch(&self, head: Word) {
        self.ctl.head.word.swap(head.0, Ordering::SeqCst);
        note_cpu(&self.ctl.head.cpu);
    }

    #[inline(never)]
    fn copy_out(&self, pos: u32, out: &mut [u8]) {
        let len = out.len().min(self.size as usize);
        let at = (pos & self.mask()) as usize;
        let first = len.min(self.size as usize - at);
        let (start, end) = out[..len].split_at_mut(first);
        // SAFETY: as in `copy_in`, both pieces are inside the data area; `out` is a
        // private buffer of at least `len` bytes.
        unsafe {
            copy_from_shared(self.data.add(at), start);
            copy_from_shared(self.data, end);
        }
    }
}

/// What `header` says of a record that does not fit the bytes in use (`too_long`) or
/// is of a kind the caller does not take (out of line, as `apart`).
#[cold]
#[inline(never)]
fn bad_record(header: &RecordHeader, used: u32, too_long: bool) -> Corrupt {
    if too_long {
        Corrupt(format!(
            "a record of {} bytes where {used} are in use",
            header.len
        ))
    } else {
        Corrupt(format!("a record of unknown kind {}", header.kind))
    }
}

/// A 16-byte block as the two words that hold it in memory.
#[inline(always)]
fn halves(block: &[u8; 16]) -> (u64, u64) {
    let mut low = [0u8; 8];
    let mut high = [0u8; 8];
    low.copy_from_slice(&block[..8]);
    high.copy_from_slice(&block[8..]);
    (u64::from_ne_bytes(low), u64::from_ne_bytes(high))
}

/// Whether a single publish or release that leaves `word` notes its CPU: the first
/// of every [`CPU_EVERY`] records. The CPU is a hint for a waiter's spin (see
/// `spin.rs`) and a process rarely moves, while reading it costs as much as the rest
/// of a small record's publish.
#[inline]
fn cpu_due(word: Word) -> bool {
    word.count() % CPU_EVERY == 1
}

/// Records per noting of the CPU by single publishes and releases.
const CPU_EVERY: u32 = 16;

/// Records this thread's CPU in `slot` (a line the caller has just written anyway).
fn note_cpu(slot: &AtomicU32) {
    let tag = cpu_tag();
    if slot.load(Ordering::Relaxed) != tag {
        slot.store(tag, Ordering::Relaxed);
    }
}

/// The data area size for a requested buffer of `bytes`: a power of two within
/// [`MIN_RING`]..=[`MAX_RING`].
pub(crate) fn ring_size_for(bytes: usize) -> usize {
    bytes
        .clamp(MIN_RING, MAX_RING)
        .checked_next_power_of_two()
        .unwrap_or(MAX_RING)
        .min(MAX_RING)
}

#[cfg(test)]
mod tests;
