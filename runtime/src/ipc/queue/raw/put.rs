//! Putting an item: writing its record (or spilling a large item into memory of its
//! own), waking consumers, and waiting for room.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::poll::PollFlags;

use crate::ipc::ring::{self, Ring, Word};
use crate::os::futex;
use crate::os::sealed;
use crate::os::sys;
use crate::wire::codec::MAX_MESSAGE_LEN;

use super::layout::{INLINE, INLINE_FDS, SPILL};
use super::raw_queue::{Fail, Patience, RawQueue, nap_until, try_lock_now};

impl RawQueue {
    /// Queues one encoded item with its descriptors.
    #[inline]
    pub(crate) fn put(
        &self,
        bytes: &[u8],
        fds: Vec<OwnedFd>,
        patience: Patience,
    ) -> Result<(), Fail> {
        if fds.is_empty() {
            if let Some(done) = self.put_plain_now(bytes) {
                return done;
            }
        }
        self.put_general(Item::Bytes(bytes), fds, patience)
    }

    /// Queues one item already encoded into a sealed `memfd` of `len` bytes (one too
    /// large for the ring: `codec::encode_message`), with its descriptors: it is
    /// spilled as it is, without another copy.
    pub(crate) fn put_sealed(
        &self,
        memfd: OwnedFd,
        len: usize,
        fds: Vec<OwnedFd>,
        patience: Patience,
    ) -> Result<(), Fail> {
        self.put_general(Item::Sealed(memfd, len), fds, patience)
    }

    /// The common case of `put`, tried first: an item without descriptors that fits
    /// the ring inline, the producer lock free, and room for it without growing the
    /// ring. `None` if any of that is not so, having changed nothing: `put_general`
    /// then does it all, waiting as its caller allows.
    #[inline]
    fn put_plain_now(&self, bytes: &[u8]) -> Option<Result<(), Fail>> {
        let need = ring::record_bytes(bytes.len()).filter(|n| *n as usize <= self.resident / 2)?;
        let held = try_lock_now(&self.header().ring.tx.lock)?;
        if self.would_grow(need) {
            return None;
        }
        match self.try_write(INLINE, bytes, need, &[]) {
            Ok(Written::Yes) => {
                drop(held);
                self.wake_consumers();
                Some(Ok(()))
            }
            Ok(Written::Closed) => Some(Err(Fail::Closed)),
            // Garbage to recover from, or no room: the general path's work.
            _ => None,
        }
    }

    /// `put`, whatever the item and the state of the queue.
    #[inline(never)]
    fn put_general(
        &self,
        item: Item<'_>,
        fds: Vec<OwnedFd>,
        patience: Patience,
    ) -> Result<(), Fail> {
        let (bytes, len): (&[u8], usize) = match &item {
            Item::Bytes(bytes) => (bytes, bytes.len()),
            Item::Sealed(_, len) => (&[], *len),
        };
        if len > MAX_MESSAGE_LEN {
            return Err(Fail::Failed(
                crate::wire::error::CodecError::new(
                    crate::wire::error::CodecErrorKind::Oversized,
                    format!("{len} bytes, above the limit of {MAX_MESSAGE_LEN}",),
                )
                .into(),
            ));
        }
        let inline = match item {
            Item::Bytes(bytes) => {
                ring::record_bytes(bytes.len()).filter(|n| *n as usize <= self.resident / 2)
            }
            Item::Sealed(..) => None,
        };
        let (kind, payload, need, fds): (u32, &[u8], u32, Vec<OwnedFd>) = match inline {
            Some(need) if fds.is_empty() => (INLINE, bytes, need, fds),
            Some(need) => (INLINE_FDS, bytes, need, fds),
            None => {
                let mut all = Vec::with_capacity(fds.len() + 1);
                all.push(match item {
                    Item::Bytes(bytes) => spill(bytes)?,
                    Item::Sealed(memfd, _) => memfd,
                });
                all.extend(fds);
                (SPILL, &[], ring::record_bytes(8).unwrap_or(32), all)
            }
        };
        let spilled_len = (len as u64).to_le_bytes();
        let payload = if kind == SPILL {
            &spilled_len[..]
        } else {
            payload
        };
        let deadline = patience.deadline();
        // A put that may wait first gives consumers a moment to rewind the ring before
        // it grows it (`grow.rs`).
        let mut may_grow = !patience.waits();
        loop {
            if self.is_closed() {
                return Err(Fail::Closed);
            }
            let Some(held) = self.producer_lock(patience) else {
                return Err(Fail::Timeout);
            };
            if !may_grow && self.would_grow(need) {
                drop(held);
                may_grow = true;
                if !self.wait_for_rewind(need, deadline) {
                    return Err(Fail::Timeout);
                }
                continue;
            }
            match self.try_write(kind, payload, need, &fds)? {
                Written::Yes => {
                    drop(held);
                    self.wake_consumers();
                    return Ok(());
                }
                Written::Closed => return Err(Fail::Closed),
                Written::Corrupt(corrupt) => {
                    drop(held);
                    return Err(self.recover_as_producer(corrupt, patience));
                }
                Written::NoRoom => {
                    drop(held);
                    if !patience.waits() {
                        return Err(Fail::NotNow);
                    }
                    if !self.wait_for_room(need, deadline) {
                        return Err(Fail::Timeout);
                    }
                }
                Written::CourierFull => {
                    drop(held);
                    if !patience.waits() {
                        return Err(Fail::NotNow);
                    }
                    let ready =
                        sys::poll_until(&[(self.courier.send_fd(), PollFlags::POLLOUT)], deadline)?;
                    if ready[0].is_empty() {
                        return Err(Fail::Timeout);
                    }
                }
            }
        }
    }

    /// With the producer lock held: writes and publishes the record if it may.
    #[inline(always)]
    pub(super) fn try_write(
        &self,
        kind: u32,
        payload: &[u8],
        need: u32,
        fds: &[OwnedFd],
    ) -> Result<Written, Fail> {
        let header = self.header();
        if self.is_closed() {
            return Ok(Written::Closed);
        }
        let ring = self.ring();
        let tail = Word(header.ring.tail.word.load(Ordering::Relaxed));
        if self.max_items > 0 {
            let seen = Word(header.ring.tx.seen.load(Ordering::Relaxed));
            if Ring::items(seen, tail) >= self.max_items {
                let head = Word(header.ring.head.word.load(Ordering::Acquire));
                header.ring.tx.seen.store(head.0, Ordering::Relaxed);
                let items = Ring::items(head, tail);
                if items >= self.max_items && items <= u32::MAX / 2 {
                    return Ok(Written::NoRoom);
                }
            }
        }
        let free = match ring.free(tail, need) {
            Ok(free) => free,
            Err(corrupt) => return Ok(Written::Corrupt(corrupt)),
        };
        if free < need {
            return Ok(Written::NoRoom);
        }
        let mut seq = 0;
        if !fds.is_empty() {
            // Reserve the number before sending: a producer that dies after this
            // leaves a gap, never two batches under one number.
            seq = header.wake.fd_seq.load(Ordering::Relaxed);
            header
                .wake
                .fd_seq
                .store(seq.wrapping_add(1), Ordering::Relaxed);
            match self.courier.send(seq, fds) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Written::CourierFull),
                Err(e) => return Err(e.into()),
            }
        }
        let next = ring.write(tail, kind, seq, payload);
        ring.publish(next);
        Ok(Written::Yes)
    }

    pub(super) fn wake_consumers(&self) {
        let wake = &self.header().wake;
        // Ordered after the publishing swap, which is a full barrier.
        if wake.not_empty_waiters.load(Ordering::SeqCst) > 0 {
            wake.not_empty.fetch_add(1, Ordering::SeqCst);
            futex::wake(&wake.not_empty, u32::MAX);
        }
        if wake.watchers.load(Ordering::SeqCst) > 0 {
            self.ring_bell();
        }
    }

    pub(super) fn wait_for_room(&self, need: u32, deadline: Option<Instant>) -> bool {
        let consumer_cpu = self.header().ring.head.cpu.load(Ordering::Relaxed);
        if self.spin.spin(deadline, consumer_cpu, || {
            self.has_room(need) || self.is_closed()
        }) {
            return true;
        }
        let wake = &self.header().wake;
        wake.not_full_waiters.fetch_add(1, Ordering::SeqCst);
        let seen = wake.not_full.load(Ordering::SeqCst);
        let outcome = if self.has_room(need) || self.is_closed() {
            futex::Wait::Woken
        } else {
            futex::wait(&wake.not_full, seen, nap_until(deadline))
        };
        wake.not_full_waiters.fetch_sub(1, Ordering::SeqCst);
        outcome == futex::Wait::Woken || deadline.is_none_or(|d| Instant::now() < d)
    }
}

/// What `put_general` queues: encoded bytes, or a sealed `memfd` of that many bytes.
enum Item<'a> {
    Bytes(&'a [u8]),
    Sealed(OwnedFd, usize),
}

pub(super) enum Written {
    Yes,
    Closed,
    /// The words do not describe a ring: the queue needs recovering.
    Corrupt(ring::Corrupt),
    NoRoom,
    CourierFull,
}

/// An item too large for the ring, in a `memfd` of its own, written with `pwrite` and
/// sealed against writing and resizing: consumers map it read-only and decode it
/// where it is ([`crate::os::sealed`]).
fn spill(bytes: &[u8]) -> Result<OwnedFd, Fail> {
    Ok(sealed::seal_parts("queue-item", &[bytes])?)
}
