//! Taking an item: the record at the head, its descriptors or spilled memory, waking
//! producers and waiting for items.

use std::os::fd::OwnedFd;

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::ipc::error::{ChannelError, Corruption};
use crate::ipc::ring::{self, Ring, Word};
use crate::os::futex;
use crate::os::sealed::SealedMap;
use crate::wire::codec::MAX_MESSAGE_LEN;
use crate::wire::courier;
use crate::wire::pages;
use crate::wire::payload::Payload;

use super::layout::{INLINE, SKIP, SPILL};
use super::raw_queue::{Fail, Patience, RawQueue, lock, nap_until, try_lock_now};

impl RawQueue {
    /// Takes one item: its encoded bytes go to `out` (cleared first), its descriptors
    /// are returned. (The handles use [`get_item`](Self::get_item).)
    #[cfg(test)]
    pub(crate) fn get(&self, out: &mut Vec<u8>, patience: Patience) -> Result<Vec<OwnedFd>, Fail> {
        let got = self.take(out, None, patience)?;
        got.copy_spilled(out);
        Ok(got.fds)
    }

    /// As [`get`](Self::get), but an item that was spilled comes back mapped
    /// ([`Got::spilled`], `out` left empty) rather than copied into `out`: it is decoded
    /// where it is.
    #[inline]
    pub(crate) fn get_item(&self, out: &mut Vec<u8>, patience: Patience) -> Result<Got, Fail> {
        if self.take_plain_now(out) {
            return Ok(Got {
                fds: Vec::new(),
                spilled: None,
            });
        }
        self.take(out, None, patience)
    }

    /// `get` of an item of 1 to 16 encoded bytes without descriptors, if the consumer
    /// lock is free and that is what is at the head: its bytes, in a 16-byte block,
    /// and their count. `None` otherwise, having changed nothing (for `get`).
    #[inline]
    pub(crate) fn get_small_now(&self) -> Option<([u8; 16], usize)> {
        let held = try_lock_now(&self.header().ring.rx.lock)?;
        let ring = self.ring();
        let head = Word(self.header().ring.head.word.load(Ordering::Relaxed));
        let tail = ring.tail(head);
        let header = ring.header(head, tail, |k| k == INLINE).ok()??;
        let block = ring.small_payload(head, &header)?;
        ring.release(Ring::after(head, &header));
        self.give_back();
        drop(held);
        self.wake_producers();
        Some((block, header.len as usize))
    }

    /// The common case of `get`, tried first: the consumer lock free and a plain
    /// record (no descriptors, not spilled) at the head, taken as `try_take` takes it.
    /// `false` if any of that is not so, having changed nothing: `take` then does it
    /// all, waiting as its caller allows (and reporting garbage).
    #[inline]
    fn take_plain_now(&self, out: &mut Vec<u8>) -> bool {
        let Some(held) = try_lock_now(&self.header().ring.rx.lock) else {
            return false;
        };
        let ring = self.ring();
        let head = Word(self.header().ring.head.word.load(Ordering::Relaxed));
        let tail = ring.tail(head);
        let Ok(Some(header)) = ring.header(head, tail, |k| k == INLINE) else {
            return false;
        };
        out.clear();
        ring.read_payload(head, &header, out);
        ring.release(Ring::after(head, &header));
        self.give_back();
        drop(held);
        self.wake_producers();
        true
    }

    /// Takes up to `max` items (at least one, waiting for it within `patience`) under
    /// one hold of the consumer lock, freeing their records with one store: their
    /// encoded bytes go to `out` (cleared first), item `i` ending at `ends[i]` (cleared
    /// first too). Stops before a record with descriptors or spilled memory unless it
    /// is the first: then it is the only item, and its descriptors are returned.
    pub(crate) fn get_many(
        &self,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        max: usize,
        patience: Patience,
    ) -> Result<Vec<OwnedFd>, Fail> {
        ends.clear();
        let got = self.take(out, Some((ends, max.max(1))), patience)?;
        got.copy_spilled(out);
        if ends.is_empty() {
            // The item at the head held descriptors or spilled: taken alone.
            ends.push(out.len());
        }
        Ok(got.fds)
    }

    /// `get`, or `get_many` if `batch` holds where the ends go and the most items.
    #[inline(never)]
    fn take(
        &self,
        out: &mut Vec<u8>,
        mut batch: Option<(&mut Vec<usize>, usize)>,
        patience: Patience,
    ) -> Result<Got, Fail> {
        let deadline = patience.deadline();
        loop {
            let Some(held) = lock(&self.header().ring.rx.lock, patience, "consumer") else {
                return Err(Fail::Timeout);
            };
            let took = match batch.as_mut() {
                Some((ends, max)) => self.try_take_many(out, ends, *max),
                None => self.try_take(out),
            };
            self.give_back();
            match took {
                Ok(Took::Item(fds)) => {
                    drop(held);
                    self.wake_producers();
                    return Ok(Got { fds, spilled: None });
                }
                Ok(Took::Spilled(region, len, fds)) => {
                    drop(held);
                    self.wake_producers();
                    out.clear();
                    let spilled = map_spilled(region, len)?;
                    return Ok(Got {
                        fds,
                        spilled: Some(spilled),
                    });
                }
                Ok(Took::Corrupt(corrupt)) => {
                    let failed = self.recover(corrupt, patience);
                    drop(held);
                    self.wake_producers();
                    return Err(failed);
                }
                Ok(Took::Skip) => drop(held),
                Ok(Took::Lost) => {
                    drop(held);
                    self.wake_producers();
                    log::debug!(
                        "skipped a queued item whose descriptors a consumer that died had taken"
                    );
                }
                Ok(Took::Empty) => {
                    drop(held);
                    if self.is_closed() && !self.has_items() {
                        return Err(Fail::Closed);
                    }
                    if !patience.waits() {
                        return Err(Fail::NotNow);
                    }
                    if !self.wait_for_items(deadline) {
                        return Err(Fail::Timeout);
                    }
                }
                Err(e) => {
                    drop(held);
                    self.wake_producers();
                    return Err(e);
                }
            }
        }
    }

    /// With the consumer lock held: takes the records at the head that hold neither
    /// descriptors nor spilled memory, up to `max` of them, and frees them with one
    /// store; if the record at the head is another kind, takes it alone as `try_take`
    /// does (and pushes no end).
    fn try_take_many(
        &self,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        max: usize,
    ) -> Result<Took, Fail> {
        let ring = self.ring();
        let ctl = &self.header().ring;
        let mut head = Word(ctl.head.word.load(Ordering::Relaxed));
        let mut tail = ring.tail(head);
        match ring.header(head, tail, |_| true) {
            Ok(Some(first)) if first.kind == INLINE => {}
            Ok(None) => return Ok(Took::Empty),
            // Any other kind, or garbage: taken, or reported, as by a single `get`.
            _ => return self.try_take(out),
        }
        out.clear();
        // Room for what is there now, at most (the count is the peer's word: bounded),
        // so that the loop's pushes do not grow the buffers item by item.
        ends.reserve(
            max.min(Ring::items(head, tail) as usize)
                .min(BATCH_RESERVE / 16),
        );
        // The bytes in use from `head`, counted down record by record: the words are
        // checked once per read of the tail, not once per record.
        let mut used = ring.used(head, tail).unwrap_or(0);
        out.reserve((used as usize).min(BATCH_RESERVE));
        while ends.len() < max {
            if used == 0 {
                tail = ring.fresh_tail();
                used = match ring.used(head, tail) {
                    Ok(used) if used > 0 => used,
                    // Nothing more, or garbage: the next take reports it.
                    _ => break,
                };
            }
            // Anything but a plain record ends the batch: the next take deals with it
            // (garbage included, which it then reports).
            let Ok(header) = ring.header_in(head, used, |k| k == INLINE) else {
                break;
            };
            ring.read_payload(head, &header, out);
            ends.push(out.len());
            let next = Ring::after(head, &header);
            // Within `used` (checked by `header_in`).
            used -= next.pos().wrapping_sub(head.pos());
            head = next;
        }
        ring.release_batch(head);
        Ok(Took::Item(Vec::new()))
    }

    /// With the consumer lock held: takes the record at the head, if any.
    fn try_take(&self, out: &mut Vec<u8>) -> Result<Took, Fail> {
        let ring = self.ring();
        let ctl = &self.header().ring;
        let head = Word(ctl.head.word.load(Ordering::Relaxed));
        let tail = ring.tail(head);
        let header = match ring.header(head, tail, |k| (INLINE..=SKIP).contains(&k)) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(Took::Empty),
            // Nothing between head and tail can be trusted: the caller drops it all
            // (see `recover`), so that the queue works again for what comes next.
            Err(corrupt) => return Ok(Took::Corrupt(corrupt)),
        };
        if header.kind == SKIP {
            self.pass_skip(&ring, head, &header);
            return Ok(Took::Skip);
        }
        out.clear();
        ring.read_payload(head, &header, out);
        let fds = match header.kind {
            INLINE => Vec::new(),
            _ => match self.take_batch(header.seq) {
                Ok(Taken::Batch(fds)) => fds,
                Ok(Taken::Lost) => {
                    ring.release(Ring::after(head, &header));
                    return Ok(Took::Lost);
                }
                Ok(Taken::Missing) => {
                    ring.release(Ring::after(head, &header));
                    return Err(ChannelError::Corrupt(Corruption::new(format!(
                        "a queued item whose descriptors (batch {}) were never sent; 1 item \
                         dropped",
                        header.seq
                    )))
                    .into());
                }
                Err(e) => {
                    // Without its descriptors the item cannot be decoded: drop it.
                    ring.release(Ring::after(head, &header));
                    return Err(e);
                }
            },
        };
        ring.release(Ring::after(head, &header));
        if header.kind != SPILL {
            return Ok(Took::Item(fds));
        }
        let len = <[u8; 8]>::try_from(&out[..])
            .map(u64::from_le_bytes)
            .ok()
            .and_then(|len| usize::try_from(len).ok())
            .filter(|len| *len <= MAX_MESSAGE_LEN);
        let mut fds = fds.into_iter();
        match (len, fds.next()) {
            (Some(len), Some(region)) => Ok(Took::Spilled(region, len, fds.collect())),
            _ => Err(ChannelError::Corrupt(Corruption::new(
                "a spilled item without its length or memory",
            ))
            .into()),
        }
    }

    /// Takes descriptor batch `seq` from the courier, telling a batch that a
    /// consumer which died had taken (the item is lost with that consumer) from one
    /// that was never sent (a peer's forged record).
    fn take_batch(&self, seq: u64) -> Result<Taken, Fail> {
        let mark = seq.wrapping_add(1);
        // Noted before taking: a consumer that dies after taking leaves the mark.
        let before = self.header().wake.taking.swap(mark, Ordering::SeqCst);
        match self.courier.take(seq)? {
            courier::Taken::Batch(fds) => Ok(Taken::Batch(fds)),
            courier::Taken::Lost if before == mark => Ok(Taken::Lost),
            courier::Taken::Lost => Ok(Taken::Missing),
        }
    }

    fn wake_producers(&self) {
        let wake = &self.header().wake;
        // Ordered after the releasing swap, which is a full barrier.
        if wake.not_full_waiters.load(Ordering::SeqCst) > 0 {
            wake.not_full.fetch_add(1, Ordering::SeqCst);
            futex::wake(&wake.not_full, u32::MAX);
        }
    }

    fn wait_for_items(&self, deadline: Option<Instant>) -> bool {
        let producer_cpu = self.header().ring.tail.cpu.load(Ordering::Relaxed);
        if self.spin.spin(deadline, producer_cpu, || {
            self.has_items() || self.is_closed()
        }) {
            return true;
        }
        let wake = &self.header().wake;
        wake.not_empty_waiters.fetch_add(1, Ordering::SeqCst);
        let seen = wake.not_empty.load(Ordering::SeqCst);
        let outcome = if self.has_items() || self.is_closed() {
            futex::Wait::Woken
        } else {
            futex::wait(&wake.not_empty, seen, nap_until(deadline))
        };
        wake.not_empty_waiters.fetch_sub(1, Ordering::SeqCst);
        outcome == futex::Wait::Woken || deadline.is_none_or(|d| Instant::now() < d)
    }
}

enum Took {
    Item(Vec<OwnedFd>),
    Spilled(OwnedFd, usize, Vec<OwnedFd>),
    /// Taken by a consumer that died: skipped.
    Lost,
    /// The rest of a lap a growable ring rewound from (`grow.rs`): passed over.
    Skip,
    Empty,
    /// The ring holds garbage: to be recovered, with the consumer lock still held.
    Corrupt(ring::Corrupt),
}

/// What the courier held for a record.
enum Taken {
    Batch(Vec<OwnedFd>),
    /// A consumer that died took it.
    Lost,
    /// It was never sent.
    Missing,
}

/// An item taken: its descriptors and, if it was spilled, its bytes mapped.
#[derive(Debug)]
pub(crate) struct Got {
    /// The descriptors of the handles in the item.
    pub(crate) fds: Vec<OwnedFd>,
    /// The bytes of an item that was spilled, mapped read-only; `None` when they are in
    /// the caller's buffer.
    pub(crate) spilled: Option<Payload>,
}

/// The most bytes a batch take reserves for its items before it reads them.
const BATCH_RESERVE: usize = 1 << 20;

impl Got {
    /// Copies the bytes of a spilled item into `out` (which holds nothing then): one
    /// copy out of the mapping into a buffer that is not zero-filled first.
    fn copy_spilled(&self, out: &mut Vec<u8>) {
        if let Some(spilled) = &self.spilled {
            out.clear();
            out.reserve(spilled.len());
            pages::prefer_huge_pages(out);
            out.extend_from_slice(spilled);
        }
    }
}

/// Maps a spilled item, after checking what a producer's spill always is, so that a
/// peer's forgery is refused before anything is mapped: a `memfd` of exactly `len`
/// bytes, sealed against resizing and writing, without holes (a producer writes every
/// byte; a sparse region would cost the reader a page per hole it reads). See
/// [`crate::os::sealed`] for why reading a write-sealed mapping cannot race.
fn map_spilled(fd: OwnedFd, len: usize) -> Result<Payload, Fail> {
    match SealedMap::open(fd, len) {
        Ok(map) => Ok(Payload::sealed(map)),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(ChannelError::Corrupt(
            Corruption::new(format!("a spilled item refused: {e}; 1 item dropped")),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// What tests wait for instead of sleeping and hoping (not for other code: the counts
/// change under the caller's feet).
#[cfg(test)]
impl RawQueue {
    /// Threads asleep in a `get` (past spinning, about to wait or waiting on the futex).
    pub(crate) fn sleeping_getters(&self) -> u32 {
        self.header().wake.not_empty_waiters.load(Ordering::SeqCst)
    }

    /// The futex word that sleeping getters wait on: every wake-up of them moves it.
    pub(crate) fn not_empty_word(&self) -> u32 {
        self.header().wake.not_empty.load(Ordering::SeqCst)
    }

    /// Calls of `wait` watching this queue (armed, not yet returned).
    pub(crate) fn watchers(&self) -> u32 {
        self.header().wake.watchers.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::queue::raw::layout::Flavor;
    use crate::ipc::queue::raw::put::Written;
    use crate::ipc::queue::raw::raw_queue::RECHECK;
    use crate::ipc::ring;
    use std::time::Duration;

    #[test]
    fn a_batch_stops_before_garbage_which_the_next_take_reports() {
        let q = RawQueue::new(4096, 0, 0, Flavor::Queue).unwrap();
        // Three 5-byte items: records of 32 bytes at data offsets 0, 32 and 64.
        let bytes = b"aaaaabbbbbccccc";
        assert_eq!(
            q.put_many(bytes, 0, &[5, 10, 15], Patience::None).unwrap(),
            3
        );
        // A peer forges the second record's length.
        let second = q
            .region
            .as_ptr()
            .wrapping_add(super::super::layout::DATA_OFFSET + 32);
        // SAFETY: inside the region's data area; shared memory is written atomically.
        unsafe { crate::os::shm::copy_to_shared(&u32::MAX.to_le_bytes(), second) };
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        let fds = q.get_many(&mut out, &mut ends, 10, Patience::None).unwrap();
        assert!(fds.is_empty());
        assert_eq!((&out[..], &ends[..]), (&b"aaaaa"[..], &[5][..]));
        // The garbage is reported, and dropped with what follows it.
        let err = q
            .get_many(&mut out, &mut ends, 10, Patience::None)
            .unwrap_err();
        assert!(matches!(err, Fail::Failed(_)), "{err:?}");
        assert_eq!(q.len(), 0);
        // The queue works again.
        assert_eq!(q.put_many(b"dd", 0, &[1, 2], Patience::None).unwrap(), 2);
        q.get_many(&mut out, &mut ends, 10, Patience::None).unwrap();
        assert_eq!((&out[..], &ends[..]), (&b"dd"[..], &[1, 2][..]));
    }

    #[test]
    fn the_fast_paths_leave_a_busy_lock_to_its_holder() {
        let q = RawQueue::new(4096, 0, 0, Flavor::Queue).unwrap();
        let tx = lock(&q.header().ring.tx.lock, Patience::None, "producer").unwrap();
        assert!(matches!(
            q.put(b"x", Vec::new(), Patience::None),
            Err(Fail::Timeout)
        ));
        // Still held: a second try fails the same way.
        assert!(matches!(
            q.put(b"x", Vec::new(), Patience::None),
            Err(Fail::Timeout)
        ));
        drop(tx);
        q.put(b"x", Vec::new(), Patience::None).unwrap();
        let rx = lock(&q.header().ring.rx.lock, Patience::None, "consumer").unwrap();
        let mut out = Vec::new();
        for _ in 0..2 {
            assert!(matches!(
                q.get(&mut out, Patience::None),
                Err(Fail::Timeout)
            ));
        }
        drop(rx);
        q.get(&mut out, Patience::None).unwrap();
        assert_eq!(out, b"x");
    }

    #[test]
    fn a_sleeper_finds_an_item_whose_producer_never_woke_it() {
        let q = RawQueue::new(4096, 0, 0, Flavor::Queue).unwrap();
        std::thread::scope(|s| {
            // A deadline far beyond the re-check, so that a getter relying on the
            // deadline instead of the re-check shows in the time it took.
            let deadline = Instant::now() + RECHECK * 60;
            let q = &q;
            let getter = s.spawn(move || {
                let mut out = Vec::new();
                q.get(&mut out, Patience::Until(Some(deadline))).unwrap();
                out
            });
            // Let the getter go to sleep, then publish as a producer that dies before
            // its wake-up call would: no wake.
            while q.header().wake.not_empty_waiters.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let held = lock(&q.header().ring.tx.lock, Patience::None, "producer").unwrap();
            let need = ring::record_bytes(3).unwrap();
            assert!(matches!(
                q.try_write(INLINE, b"abc", need, &[]),
                Ok(Written::Yes)
            ));
            drop(held);
            let start = Instant::now();
            assert_eq!(getter.join().unwrap(), b"abc");
            // The re-check finds it after about RECHECK; half the deadline is a bound
            // that a loaded machine does not reach, and that a getter that waited
            // for its deadline does.
            assert!(start.elapsed() < RECHECK * 30);
        });
    }
}
