//! Putting several items at once: their records written under one hold of the
//! producer lock and published by one store of the tail word, then one look at the
//! sleepers. Taking several at once is `get.rs`'s `get_many`.
//!
//! A batch is as safe against a process killed at any instruction as one record: the
//! records are written past the published tail, where no consumer looks, and the one
//! store that publishes them publishes all of them; a producer killed before it leaves
//! them unpublished, to be overwritten by the next producer.

use std::sync::atomic::Ordering;

use crate::ipc::ring::{self, Ring, Word};

use super::layout::INLINE;
use super::raw_queue::{Fail, Patience, RawQueue, lock};

impl RawQueue {
    /// Whether an encoded item of `len` bytes goes into the ring as it is (not spilled
    /// into memory of its own): what [`put_many`](Self::put_many) takes.
    pub(crate) fn fits_inline(&self, len: usize) -> bool {
        len <= crate::wire::codec::MAX_MESSAGE_LEN
            && ring::record_bytes(len).is_some_and(|n| n as usize <= self.resident / 2)
    }

    /// Queues encoded items that hold no descriptors and each [`fits_inline`]: item
    /// `i` is `bytes[ends[i - 1]..ends[i]]` (the first starts at `from`). Writes as
    /// many as there is room for now, in order, and returns how many: at least one,
    /// waiting for room within `patience`.
    ///
    /// [`fits_inline`]: Self::fits_inline
    pub(crate) fn put_many(
        &self,
        bytes: &[u8],
        from: usize,
        ends: &[usize],
        patience: Patience,
    ) -> Result<usize, Fail> {
        let Some(first_end) = ends.first() else {
            return Ok(0);
        };
        let first_need = item_need(first_end.saturating_sub(from));
        let deadline = patience.deadline();
        loop {
            if self.is_closed() {
                return Err(Fail::Closed);
            }
            let Some(held) = lock(&self.header().ring.tx.lock, patience, "producer") else {
                return Err(Fail::Timeout);
            };
            match self.try_write_many(bytes, from, ends) {
                Ok(written) => {
                    drop(held);
                    self.wake_consumers();
                    return Ok(written);
                }
                Err(Blocked::Corrupt(corrupt)) => {
                    drop(held);
                    return Err(self.recover_as_producer(corrupt, patience));
                }
                Err(Blocked::NoRoom) => {
                    drop(held);
                    if !patience.waits() {
                        return Err(Fail::NotNow);
                    }
                    if !self.wait_for_room(first_need, deadline) {
                        return Err(Fail::Timeout);
                    }
                }
                Err(Blocked::Closed) => return Err(Fail::Closed),
            }
        }
    }

    /// With the producer lock held: writes as many of the items as fit (at least one,
    /// or the reason none did) and publishes them with one store.
    fn try_write_many(&self, bytes: &[u8], from: usize, ends: &[usize]) -> Result<usize, Blocked> {
        let header = self.header();
        if self.is_closed() {
            return Err(Blocked::Closed);
        }
        let ring = self.ring();
        let tail = Word(header.ring.tail.word.load(Ordering::Relaxed));
        let mut room = ends.len();
        if self.max_items > 0 {
            let wanted = u32::try_from(ends.len()).unwrap_or(u32::MAX);
            let seen = Word(header.ring.tx.seen.load(Ordering::Relaxed));
            let mut items = Ring::items(seen, tail);
            if items.saturating_add(wanted) > self.max_items {
                let head = Word(header.ring.head.word.load(Ordering::Acquire));
                header.ring.tx.seen.store(head.0, Ordering::Relaxed);
                items = Ring::items(head, tail);
            }
            // A count "below zero" is garbage in the words: `free` judges them.
            if items <= u32::MAX / 2 {
                room = room.min(self.max_items.saturating_sub(items) as usize);
                if room == 0 {
                    return Err(Blocked::NoRoom);
                }
            }
        }
        // One pass: the free bytes as last seen, the consumer's word read again only
        // when the next record does not fit them (`free` counts from `next`, past
        // the records written and not yet published).
        let mut free = 0;
        let mut next = tail;
        let mut written = 0;
        let mut start = from;
        for end in &ends[..room] {
            let payload = &bytes[start.min(*end)..*end];
            let need = item_need(payload.len());
            if need > free {
                free = match ring.free(next, need) {
                    Ok(free) => free,
                    Err(corrupt) if written == 0 => return Err(Blocked::Corrupt(corrupt)),
                    // Words that went bad after the first: publish what is written (a
                    // record is published whole or not at all), the next put reports.
                    Err(_) => break,
                };
                if need > free {
                    break;
                }
            }
            next = ring.write(next, INLINE, 0, payload);
            free -= need;
            written += 1;
            start = *end;
        }
        if written == 0 {
            return Err(Blocked::NoRoom);
        }
        ring.publish_batch(next);
        Ok(written)
    }
}

/// The ring bytes an item of `len` encoded bytes takes (more than any ring for an
/// item too large to be written inline, which the caller does not pass).
fn item_need(len: usize) -> u32 {
    ring::record_bytes(len).unwrap_or(u32::MAX)
}

/// Why no item of a batch was written.
enum Blocked {
    Closed,
    /// The words do not describe a ring: the queue needs recovering.
    Corrupt(ring::Corrupt),
    NoRoom,
}
