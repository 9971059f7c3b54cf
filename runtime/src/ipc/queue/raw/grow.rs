//! Growing and shrinking the ring of an unbounded queue.
//!
//! A queue without a capacity in items should not be bounded in bytes either
//! (Python's `Queue()` never blocks a `put`). Its ring is therefore a *sparse* one: a
//! `memfd` of a large virtual size (made in `sparse.rs`: up to
//! [`MAX_RING`](ring::MAX_RING), within
//! [`sparse_budget`](crate::os::shm::sparse_budget)), of which only the pages
//! written hold memory (a `memfd` reserves nothing up front). Only the first `resident` bytes of the data area (the
//! buffer size asked for, 4 MiB by default) are meant to stay in memory:
//!
//! - **Growth.** Producers write records anywhere in the virtual ring, as in a fixed
//!   one: while consumers keep up, positions stay within the resident part (see
//!   rewinding below); a backlog makes the ring run on into the rest, touching new
//!   pages, until it reaches the virtual size. A blocking `put` whose record would be
//!   the first beyond the resident part in a lap first waits (up to `GROW_WAIT`, 10 ms)
//!   for the consumers to empty the queue and rewind it: faulting in fresh pages
//!   costs more than that wait when consumers are keeping up (measured with 1 MiB
//!   items between two processes: 0.2-0.3 GB/s without the wait, the same as a
//!   fixed ring's 0.8-1 GB/s with it), and a queue nobody reads grows after it.
//! - **Shrinking as the consumers read.** Under the consumer lock, after each take,
//!   the memory read beyond the resident part is given back a chunk at a time
//!   (`fallocate(PUNCH_HOLE)`, see [`punch_hole`]): only pages wholly behind the head
//!   (read and freed), never one that holds a live record. A punched page reads as
//!   zeros, so a page is punched only after the head's release was published, and
//!   while holding the producer lock too (taken without waiting; otherwise later), so
//!   that no producer writes its next lap into a page as it is punched; pages a
//!   producer has already written again are left alone.
//! - **Rewinding.** When a consumer finds the queue empty with its head past half
//!   the resident part, it moves both words to the start of the next lap, holding
//!   both locks: a `SKIP` record covering the rest of the lap is published by the
//!   tail word, then consumed by the head word, and what was written beyond the
//!   resident part is punched. A queue in steady use so keeps running in its
//!   resident pages (the second half is slack for a backlog that comes and goes)
//!   and never pays for faulting in new ones. Measured on the development VM: a
//!   fresh shared page costs 11 us to fault in and 2-3 us to punch, against under
//!   0.5 us per page for reusing a resident one.
//!
//! # Deaths
//!
//! Every step is one atomic store of a word under its lock, as for any record: a
//! consumer killed after publishing the `SKIP` record and before consuming it leaves
//! a record that the next consumer passes over (`get.rs`); one killed before punching
//! leaves memory that the next chunk boundary or rewind gives back (the `punched`
//! mark only moves after the punch). A punch never reaches a live record, so no crash
//! makes one read as zeros.
//!
//! Records are addressed by 32-bit positions, so the virtual ring is at most
//! [`MAX_RING`](ring::MAX_RING) (1 GiB); an item larger than half the resident part does not take
//! ring space at all (it is spilled into memory of its own, see `put.rs`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::ipc::ring::{self, RECORD_HEADER, Ring, Word};
use crate::os::futex;
use crate::os::shm::{copy_to_shared, punch_hole};

use super::layout::{DATA_OFFSET, SKIP};
use super::raw_queue::{Held, Patience, RawQueue, lock};

/// The unit memory is given back in.
const PAGE: u32 = 4096;

/// How long a `try_put` waits for a consumer that holds the producer lock to give
/// memory back (work of a millisecond or so).
const GIVE_BACK_WAIT: Duration = Duration::from_millis(100);

impl RawQueue {
    /// Whether the ring grows beyond its resident part.
    #[inline]
    pub(super) fn grows(&self) -> bool {
        self.resident < self.ring_size
    }

    /// The bytes given back at a time: a quarter of the resident part, within 4 KiB
    /// and 1 MiB.
    #[inline]
    fn chunk(&self) -> u32 {
        (self.resident / 4).clamp(PAGE as usize, 1 << 20) as u32
    }

    /// Takes the producer lock for a put within `patience`. A `try_put` that finds
    /// it held by a consumer giving memory back waits for that (briefly): the queue
    /// is not full, and a caller that takes "full" to mean "wait for a consumer's
    /// progress" might wait for ever.
    pub(super) fn producer_lock(&self, patience: Patience) -> Option<Held<'_>> {
        let tx = &self.header().ring.tx.lock;
        match lock(tx, patience, "producer") {
            None if matches!(patience, Patience::None)
                && self.header().grow.giving_back.load(Ordering::SeqCst) != 0 =>
            {
                lock(
                    tx,
                    Patience::Until(Some(Instant::now() + GIVE_BACK_WAIT)),
                    "producer",
                )
            }
            held => held,
        }
    }

    /// With the producer lock held: whether a record of `need` bytes at the tail
    /// would be the first to run beyond the resident part in this lap.
    pub(super) fn would_grow(&self, need: u32) -> bool {
        if !self.grows() {
            return false;
        }
        let at = self.tail_offset();
        at < self.resident && at + need as usize > self.resident
    }

    fn tail_offset(&self) -> usize {
        let tail = Word(self.header().ring.tail.word.load(Ordering::Acquire));
        (tail.pos() & (self.ring_size as u32 - 1)) as usize
    }

    /// Waits until a record of `need` bytes fits in the resident part (the consumers
    /// emptied the queue and rewound it), for `grow_wait` (`GROW_WAIT`) at most:
    /// consumers that keep up then cost no new pages, and a queue nobody reads grows
    /// after that short wait. False only if `deadline` passed.
    pub(super) fn wait_for_rewind(&self, need: u32, deadline: Option<Instant>) -> bool {
        let cap = Instant::now() + self.grow_wait;
        let until = deadline.map_or(cap, |d| d.min(cap));
        let fits = || self.tail_offset() + need as usize <= self.resident || self.is_closed();
        let wake = &self.header().wake;
        loop {
            if fits() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return deadline.is_none_or(|d| now < d);
            }
            wake.not_full_waiters.fetch_add(1, Ordering::SeqCst);
            let seen = wake.not_full.load(Ordering::SeqCst);
            if !fits() {
                futex::wait(&wake.not_full, seen, Some(until));
            }
            wake.not_full_waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes the producer lock without waiting, as a consumer about to give memory
    /// back, and says so while it holds it.
    fn lock_to_give_back(&self) -> Option<GivingBack<'_>> {
        let held = lock(&self.header().ring.tx.lock, Patience::None, "producer")?;
        let flag = &self.header().grow.giving_back;
        flag.store(1, Ordering::SeqCst);
        Some(GivingBack { flag, _held: held })
    }

    /// With the consumer lock held, after a take: gives back the memory read beyond
    /// the resident part, and rewinds an empty ring that ran past half of it.
    #[inline]
    pub(super) fn give_back(&self) {
        if !self.grows() {
            return;
        }
        let ctl = &self.header().ring;
        let head = Word(ctl.head.word.load(Ordering::Relaxed));
        // Past half: the rest is slack, so that a backlog that comes and goes does
        // not run beyond the resident pages before the next rewind.
        let beyond = (head.pos() & (self.ring_size as u32 - 1)) as usize >= self.resident / 2;
        // The last view of the tail first: the producers' line is read only when the
        // queue looks empty, as the next take would read it anyway.
        let looks_empty = Word(ctl.rx.seen.load(Ordering::Relaxed)).pos() == head.pos();
        // Most takes: no rewind to try, and no whole chunk behind the head since the
        // last one given back (what `punch_behind` looks at first).
        let chunk = self.chunk();
        let punched = self.header().grow.punched.load(Ordering::Relaxed) as u32;
        if !(beyond && looks_empty) && (head.pos() & !(chunk - 1)).wrapping_sub(punched) < chunk {
            return;
        }
        self.give_back_now(head, beyond && looks_empty);
    }

    /// `give_back` once it may have work: a rewind to try if `may_rewind`, memory
    /// to give back.
    #[inline(never)]
    fn give_back_now(&self, head: Word, may_rewind: bool) {
        if may_rewind && self.ring().fresh_tail().pos() == head.pos() && self.rewind(head) {
            return;
        }
        self.punch_behind(head);
    }

    /// Gives back the chunks wholly behind `head` that are beyond the resident part
    /// and not yet given back.
    fn punch_behind(&self, head: Word) {
        let size = self.ring_size as u32;
        let chunk = self.chunk();
        let grow = &self.header().grow;
        let punched = grow.punched.load(Ordering::Relaxed) as u32;
        let target = head.pos() & !(chunk - 1);
        let behind = target.wrapping_sub(punched);
        if behind < chunk {
            return;
        }
        if behind > size {
            // Not a mark this crate leaves (garbage, or a recovery moved the head):
            // start again from here; a rewind gives back what this skips.
            grow.punched.store(u64::from(target), Ordering::Relaxed);
            return;
        }
        let ctl = &self.header().ring;
        if self.beyond_resident(punched, behind).is_empty() {
            grow.punched.store(u64::from(target), Ordering::Relaxed);
            return;
        }
        let Some(_producers) = self.lock_to_give_back() else {
            return;
        };
        // Producers are stopped: the positions whose next lap they have written (up to
        // their tail, less a lap) hold live records again and are left alone.
        let tail = Word(ctl.tail.word.load(Ordering::Acquire));
        let used = tail.pos().wrapping_sub(head.pos());
        if used > size {
            return;
        }
        let start_behind = head.pos().wrapping_sub(punched).min(size - used);
        let start = head.pos().wrapping_sub(start_behind);
        let len = target.wrapping_sub(start);
        if len <= target.wrapping_sub(punched) {
            for (at, n) in self.beyond_resident(start, len) {
                if let Err(e) = punch_hole(self.region.fd(), DATA_OFFSET + at, n) {
                    log::debug!("could not give back a queue's read memory: {e}");
                    return;
                }
            }
        }
        grow.punched.store(u64::from(target), Ordering::Relaxed);
    }

    /// The pages of the data area beyond the resident part that the `len` bytes from
    /// position `pos` cover, as (offset, length) pieces.
    fn beyond_resident(&self, pos: u32, len: u32) -> Vec<(usize, usize)> {
        let size = self.ring_size;
        let at = (pos & (size as u32 - 1)) as usize;
        let len = (len as usize).min(size);
        let first = len.min(size - at);
        [(at, at + first), (0, len - first)]
            .into_iter()
            .filter_map(|(from, to)| {
                let from = from.max(self.resident).next_multiple_of(PAGE as usize);
                let to = to - to % PAGE as usize;
                (from < to).then(|| (from, to - from))
            })
            .collect()
    }

    /// With the consumer lock held and the queue seen empty at `head`, past half the
    /// resident part: moves both words to the start of the next lap and gives back
    /// everything beyond the resident part. False if the producer lock is busy or an
    /// item came in meanwhile.
    fn rewind(&self, head: Word) -> bool {
        let ctl = &self.header().ring;
        let Some(_producers) = self.lock_to_give_back() else {
            return false;
        };
        let ring = self.ring();
        let tail = ring.fresh_tail();
        // A head off the record grid is a peer's garbage, for the next take to report.
        if tail.pos() != head.pos() || head.pos() % RECORD_HEADER != 0 {
            return false;
        }
        let size = self.ring_size as u32;
        let offset = head.pos() & (size - 1);
        let next = (head.pos() | (size - 1)).wrapping_add(1);
        let gap = next.wrapping_sub(head.pos());
        // A SKIP record from the head to the lap's end: the tail's store publishes it,
        // the head's consumes it; a consumer that dies between the two leaves a
        // record the next one passes over.
        let first = u64::from(gap - RECORD_HEADER) | (u64::from(SKIP) << 32);
        let mut record = [0u8; RECORD_HEADER as usize];
        record[..8].copy_from_slice(&first.to_le_bytes());
        // SAFETY: `offset` is 16-aligned (checked above), so at least 16 bytes
        // before the end of the data area (the lap ends at `next`),
        // which is mapped for as long as `self`; the bytes there are free (the queue
        // is empty) and producers are stopped.
        unsafe {
            copy_to_shared(
                &record,
                self.region.as_ptr().add(DATA_OFFSET + offset as usize),
            );
        }
        let tail = Word::new(tail.count(), next);
        ring.publish(tail);
        let old = head.pos();
        let head = Word::new(head.count(), next);
        ctl.tx.seen.store(head.0, Ordering::Relaxed);
        ctl.rx.seen.store(tail.0, Ordering::Relaxed);
        ring.release(head);
        // Producers waiting to grow the ring can write at its start now (once this
        // consumer lets go of their lock).
        let wake = &self.header().wake;
        if wake.not_full_waiters.load(Ordering::SeqCst) > 0 {
            wake.not_full.fetch_add(1, Ordering::SeqCst);
            futex::wake(&wake.not_full, u32::MAX);
        }
        // What may hold memory beyond the resident part is behind the old head, from
        // the mark on, and the page of the SKIP record: all free now. (Not the whole
        // lap: punching an empty GiB costs 10 times an empty MiB.)
        let grow = &self.header().grow;
        let punched = grow.punched.load(Ordering::Relaxed) as u32;
        let end = page_end(old);
        let len = end.wrapping_sub(punched);
        let pieces = if len <= size {
            self.beyond_resident(punched, len)
        } else {
            vec![(self.resident, self.ring_size - self.resident)]
        };
        for (at, n) in pieces {
            if let Err(e) = punch_hole(self.region.fd(), DATA_OFFSET + at, n) {
                log::debug!("could not give back a queue's read memory: {e}");
                return true;
            }
        }
        grow.punched.store(u64::from(next), Ordering::Relaxed);
        true
    }

    /// Passes over the `SKIP` record at `head` (with the consumer lock held): frees it
    /// without counting an item.
    pub(super) fn pass_skip(&self, ring: &Ring<'_>, head: Word, header: &ring::RecordHeader) {
        let after = Ring::after(head, header);
        ring.release(Word::new(head.count(), after.pos()));
    }

    /// The bytes of memory the queue's region holds now.
    #[cfg(test)]
    pub(crate) fn allocated_bytes(&self) -> u64 {
        crate::os::shm::allocated_bytes(self.region.fd()).unwrap_or(0)
    }
}

/// The producer lock, held by a consumer giving memory back; the flag is cleared
/// before the lock is released.
struct GivingBack<'a> {
    flag: &'a std::sync::atomic::AtomicU32,
    _held: Held<'a>,
}

impl Drop for GivingBack<'_> {
    fn drop(&mut self) {
        self.flag.store(0, Ordering::SeqCst);
    }
}

/// The end of the page holding the record header at `pos`.
fn page_end(pos: u32) -> u32 {
    pos.wrapping_add(RECORD_HEADER + PAGE - 1) & !(PAGE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::queue::raw::Fail;
    use crate::ipc::queue::raw::layout::Flavor;
    use crate::ipc::queue::raw::sparse::GROW_WAIT;

    fn queue(resident: usize, virtual_size: usize) -> RawQueue {
        RawQueue::create(resident, virtual_size, 0, 0, Flavor::Queue).unwrap()
    }

    fn take(q: &RawQueue) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match q.get(&mut out, Patience::None) {
            Ok(_) => Some(out),
            Err(Fail::NotNow) => None,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn item(i: u32, len: usize) -> Vec<u8> {
        let mut bytes = vec![(i % 251) as u8; len];
        bytes[..4].copy_from_slice(&i.to_le_bytes());
        bytes
    }

    #[test]
    fn a_growable_ring_takes_far_more_than_its_resident_part_and_gives_it_back() {
        let q = queue(64 << 10, 16 << 20);
        assert!(q.grows());
        // 8 MiB with nobody reading: 128 times the resident part, and no put waits.
        for i in 0..2048 {
            q.put(&item(i, 4000), Vec::new(), Patience::None).unwrap();
        }
        let full = q.allocated_bytes();
        assert!(full >= 2048 * 4016, "{full}");
        for i in 0..1024 {
            assert_eq!(take(&q).unwrap(), item(i, 4000));
        }
        let half = q.allocated_bytes();
        assert!(half < full - (3 << 20), "{half} of {full}");
        for i in 1024..2048 {
            assert_eq!(take(&q).unwrap(), item(i, 4000));
        }
        assert_eq!(take(&q), None);
        // Empty beyond the resident part: rewound, only the resident part and the
        // header are left.
        let left = q.allocated_bytes();
        assert!(left <= (64 << 10) + 4096, "{left}");
        let head = Word(q.header().ring.head.word.load(Ordering::Relaxed));
        assert_eq!(head.pos() % (16 << 20), 0);
        // And it goes on working from the start of the lap.
        q.put(b"again", Vec::new(), Patience::None).unwrap();
        assert_eq!(take(&q).unwrap(), b"again");
    }

    #[test]
    fn a_ring_in_steady_use_stays_in_its_resident_part() {
        let q = queue(64 << 10, 16 << 20);
        for i in 0..20_000 {
            q.put(&item(i, 100), Vec::new(), Patience::None).unwrap();
            assert_eq!(take(&q).unwrap(), item(i, 100));
        }
        // 2.5 MiB went through, rewinding whenever the head passed the resident part.
        let left = q.allocated_bytes();
        assert!(left <= (64 << 10) + 2 * 4096, "{left}");
    }

    #[test]
    fn laps_of_a_full_virtual_ring_never_punch_live_records() {
        // A small virtual ring, kept nearly full across many laps: the producer's
        // next lap runs right behind the pages the consumer gives back.
        let q = queue(4096, 64 << 10);
        let mut next_put = 0;
        let mut next_get = 0;
        while next_get < 5000 {
            while q
                .put(&item(next_put, 700), Vec::new(), Patience::None)
                .is_ok()
            {
                next_put += 1;
            }
            for _ in 0..3 {
                assert_eq!(take(&q).unwrap(), item(next_get, 700), "item {next_get}");
                next_get += 1;
            }
        }
    }

    #[test]
    fn a_skip_left_by_a_consumer_that_died_mid_rewind_is_passed_over() {
        let q = queue(4096, 64 << 10);
        for i in 0..8 {
            q.put(&item(i, 1000), Vec::new(), Patience::None).unwrap();
        }
        for i in 0..8 {
            assert_eq!(take(&q).unwrap(), item(i, 1000));
        }
        // The rewind published its SKIP and died before consuming it: as if the head
        // were put back where it was.
        let ctl = &q.header().ring;
        let head = Word(ctl.head.word.load(Ordering::Relaxed));
        assert_eq!(head.pos() % (64 << 10), 0);
        let before = Word::new(head.count(), 8 * record(1000));
        let skip = u64::from(head.pos() - before.pos() - RECORD_HEADER) | (u64::from(SKIP) << 32);
        // SAFETY: inside the data area; no other thread uses the queue.
        unsafe {
            copy_to_shared(
                &skip.to_le_bytes(),
                q.region.as_ptr().add(DATA_OFFSET + before.pos() as usize),
            );
        }
        q.ring().release(before);
        assert_eq!(q.len(), 0);
        q.put(b"after", Vec::new(), Patience::None).unwrap();
        assert_eq!(take(&q).unwrap(), b"after");
        assert_eq!(take(&q), None);
    }

    #[test]
    fn memory_kept_while_the_producer_lock_was_busy_is_given_back_by_the_rewind() {
        let q = queue(64 << 10, 16 << 20);
        for i in 0..512 {
            q.put(&item(i, 4000), Vec::new(), Patience::None).unwrap();
        }
        let full = q.allocated_bytes();
        // A producer holds its lock all along the drain: nothing can be punched.
        let busy = lock(&q.header().ring.tx.lock, Patience::None, "producer").unwrap();
        for i in 0..512 {
            assert_eq!(take(&q).unwrap(), item(i, 4000));
        }
        assert_eq!(take(&q), None);
        assert!(
            q.allocated_bytes() >= full - 4096,
            "given back under a busy lock"
        );
        drop(busy);
        // The next look at the empty queue rewinds it and gives it all back.
        assert_eq!(take(&q), None);
        let left = q.allocated_bytes();
        assert!(left <= (64 << 10) + 4096, "{left} of {full}");
    }

    #[test]
    fn a_try_put_waits_a_little_for_a_consumer_giving_memory_back_and_no_more() {
        let q = queue(4096, 64 << 10);
        let other_producer = lock(&q.header().ring.tx.lock, Patience::None, "producer").unwrap();
        let start = Instant::now();
        assert!(matches!(
            q.put(b"x", Vec::new(), Patience::None),
            Err(Fail::Timeout)
        ));
        assert!(
            start.elapsed() < GIVE_BACK_WAIT / 2,
            "waited for a producer"
        );
        drop(other_producer);

        let giving_back = q.lock_to_give_back().unwrap();
        let start = Instant::now();
        assert!(matches!(
            q.put(b"x", Vec::new(), Patience::None),
            Err(Fail::Timeout)
        ));
        assert!(
            start.elapsed() >= GIVE_BACK_WAIT,
            "did not wait for the give-back"
        );
        drop(giving_back);
        assert_eq!(q.header().grow.giving_back.load(Ordering::SeqCst), 0);
        q.put(b"x", Vec::new(), Patience::None).unwrap();
    }

    /// A queue whose next 4000-byte item would be the first beyond its resident
    /// part, and how many items it holds.
    fn at_the_edge() -> (RawQueue, u32) {
        let q = queue(64 << 10, 16 << 20);
        let mut n = 0;
        while !q.would_grow(record(4000)) {
            q.put(&item(n, 4000), Vec::new(), Patience::None).unwrap();
            n += 1;
        }
        (q, n)
    }

    #[test]
    fn a_put_at_the_edge_waits_for_the_consumer_to_rewind_instead_of_growing() {
        let (mut q, n) = at_the_edge();
        // Long enough that the drain below, however slow, comes within it.
        q.grow_wait = Duration::from_secs(60);
        std::thread::scope(|s| {
            let q = &q;
            let producer = s.spawn(move || {
                q.put(&item(n, 4000), Vec::new(), Patience::Until(None))
                    .unwrap();
            });
            // The producer waits for the rewind before the consumer drains.
            while q.header().wake.not_full_waiters.load(Ordering::SeqCst) == 0 {
                assert!(!producer.is_finished(), "the put did not wait");
                std::thread::yield_now();
            }
            for i in 0..n {
                assert_eq!(take(q).unwrap(), item(i, 4000));
            }
            // Found empty: rewound; the producer writes at the start.
            producer.join().unwrap();
        });
        assert!(q.tail_offset() < 64 << 10, "{}", q.tail_offset());
        assert_eq!(take(&q).unwrap(), item(n, 4000));
        assert!(q.allocated_bytes() <= (64 << 10) + 4096);
    }

    #[test]
    fn a_put_at_the_edge_of_a_queue_nobody_reads_grows_after_a_short_wait() {
        let (q, n) = at_the_edge();
        let start = Instant::now();
        q.put(&item(n, 4000), Vec::new(), Patience::Until(None))
            .unwrap();
        assert!(start.elapsed() >= GROW_WAIT);
        assert!(q.tail_offset() > 64 << 10);
        // Grown once, the next puts do not wait.
        let start = Instant::now();
        q.put(&item(n + 1, 4000), Vec::new(), Patience::Until(None))
            .unwrap();
        assert!(start.elapsed() < GROW_WAIT);
        for i in 0..n + 2 {
            assert_eq!(take(&q).unwrap(), item(i, 4000));
        }
    }

    fn record(len: usize) -> u32 {
        ring::record_bytes(len).unwrap()
    }

    #[test]
    fn a_bounded_queue_keeps_a_fixed_ring() {
        let q = RawQueue::new(64 << 10, 10, 0, Flavor::Queue).unwrap();
        assert!(!q.grows());
        assert_eq!(q.ring_size, 64 << 10);
    }
}
