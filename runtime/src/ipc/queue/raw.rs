//! The untyped core of every queue: a shared-memory ring of encoded items, with its
//! locks, wake-ups, descriptor courier and `wait` signal.
//!
//! # Layout of the shared region
//!
//! ```text
//! 0      info line      magic, ring size, capacity, item type, flavour, closed flag
//! 64     ring control   four lines (ring.rs): producer lock and last head seen; tail
//!                       word; consumer lock and last tail seen; head word
//! 320    wake line      futex words and waiter counts, watcher count, descriptor batch counter
//! 384    join line      tasks done, join futex word and waiter count (JoinableQueue)
//! 4096   the ring's data area (a power of two, 4 MiB unless configured)
//! ```
//!
//! # Records
//!
//! An item is encoded (outside any lock) and written as one record under the producer
//! lock. Three kinds:
//!
//! - `INLINE`: the encoded bytes are the payload;
//! - `INLINE_FDS`: the same, and the item holds handles: their descriptors went to the
//!   courier as batch `seq` (see `courier.rs`) just before the record was published;
//! - `SPILL`: an item larger than half the ring: its bytes are in a sealed `memfd` of
//!   their own, sent as the first descriptor of batch `seq`; the payload is its length.
//!
//! # Waiting
//!
//! A consumer that finds the ring empty spins a little (see `spin.rs`), then counts
//! itself in `not_empty_waiters` and sleeps on the `not_empty` futex word. A producer
//! reads the count after publishing (the publish is a full barrier) and, only if someone
//! sleeps, bumps the word and wakes all sleepers: a queue in steady use makes no system
//! call. Producers wait for room the same way on `not_full`.
//!
//! # Deaths
//!
//! Every change a producer or a consumer makes to the ring is one atomic store of its
//! word, done last, under its lock; a process killed at any instruction leaves either
//! the old or the new state, and the next holder of the lock (which takes it over from
//! the dead holder, see [`RawLock`](crate::futex::RawLock)) continues from there.
//! Descriptor batches of a producer that died before publishing are discarded by
//! consumers; an item whose batch was taken by a consumer that died before freeing its
//! record is skipped (it was being received by that consumer). A sleeper is woken by
//! anyone's progress, never by one chosen process that could die first; and since a
//! process may die between publishing a change and waking the sleepers, every blocking
//! sleep also ends after [`RECHECK`] (a second) to look again.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ipc::error::ChannelError;
use crate::ipc::ring::{self, Line, Ring, RingControl, Word};
use crate::ipc::spin::Spinner;
use crate::ipc::wait::Watch;
use crate::os::futex::{self, Acquired, RawLock};
use crate::os::shm::SharedRegion;
use crate::os::sys;
use crate::wire::codec::{MAX_MESSAGE_LEN, PortableFd};
use crate::wire::courier::{Courier, Taken};

const MAGIC: u64 = u64::from_le_bytes(*b"mpqueue1");
/// Where the data area starts.
const DATA_OFFSET: usize = 4096;
/// The default data area: room for a few 1 MiB items in flight.
pub(crate) const DEFAULT_RING: usize = 4 << 20;

const INLINE: u32 = 1;
const INLINE_FDS: u32 = 2;
const SPILL: u32 = 3;

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
struct Info {
    magic: AtomicU64,
    ring_size: AtomicU64,
    /// 0: unbounded.
    max_items: AtomicU64,
    type_hash: AtomicU64,
    flavor: AtomicU32,
    closed: AtomicU32,
}

#[repr(C)]
#[derive(Debug, Default)]
struct Wake {
    not_empty: AtomicU32,
    not_empty_waiters: AtomicU32,
    not_full: AtomicU32,
    not_full_waiters: AtomicU32,
    /// Processes in `wait` on this queue.
    watchers: AtomicU32,
    /// Set when the eventfd was signalled and not yet found stale.
    bell: AtomicU32,
    /// The next descriptor batch number.
    fd_seq: AtomicU64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct Join {
    /// `task_done` calls, compared with the items put (the tail word's count).
    done: AtomicU32,
    seq: AtomicU32,
    waiters: AtomicU32,
}

#[repr(C)]
#[derive(Debug, Default)]
struct Header {
    info: Line<Info>,
    ring: RingControl,
    wake: Line<Wake>,
    join: Line<Join>,
}

const _: () = assert!(std::mem::size_of::<Header>() <= DATA_OFFSET);
const _: () = assert!(std::mem::offset_of!(Header, wake) == 320);

/// The longest a blocked operation sleeps before it looks at the queue again: the
/// process that should wake it may have died between publishing its change and the
/// wake-up call.
const RECHECK: Duration = Duration::from_secs(1);

/// The end of the next sleep of a wait that ends at `deadline`.
fn nap_until(deadline: Option<Instant>) -> Option<Instant> {
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
    fn deadline(self) -> Option<Instant> {
        match self {
            Patience::None => Some(Instant::now()),
            Patience::Until(d) => d,
        }
    }

    fn waits(self) -> bool {
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
        Fail::Failed(ChannelError::Corrupt(e.0).into())
    }
}

/// The shared part of a queue, as one process holds it.
#[derive(Debug)]
pub(crate) struct RawQueue {
    region: SharedRegion,
    courier: Courier,
    bell: PortableFd,
    ring_size: usize,
    max_items: u32,
    spin: Spinner,
}

/// What crosses to another process: the descriptors; everything else is in the region.
#[derive(Serialize, Deserialize)]
struct Wire {
    region: SharedRegion,
    courier: Courier,
    bell: PortableFd,
}

/// Holds a ring lock, and releases it when dropped.
struct Held<'a>(&'a RawLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

fn lock<'a>(lock: &'a RawLock, patience: Patience, what: &str) -> Option<Held<'a>> {
    // A lock is held only for bounded work (a copy, a non-blocking send), so even a
    // try_put or try_get waits for it.
    let deadline = match patience {
        Patience::None => None,
        Patience::Until(d) => d,
    };
    match lock.lock(deadline)? {
        Acquired::Clean => {}
        Acquired::OwnerDied => {
            log::debug!("took over the {what} lock of a queue from a process that died");
        }
    }
    Some(Held(lock))
}

impl RawQueue {
    pub(crate) fn new(
        ring_bytes: usize,
        max_items: usize,
        type_hash: u64,
        flavor: Flavor,
    ) -> io::Result<RawQueue> {
        let ring_size = ring::ring_size_for(ring_bytes);
        let max_items = u32::try_from(max_items).unwrap_or(u32::MAX).min(1 << 30);
        let region = SharedRegion::new(flavor.name(), DATA_OFFSET + ring_size)?;
        let queue = RawQueue {
            region,
            courier: Courier::new()?,
            bell: PortableFd::new(sys::eventfd()?),
            ring_size,
            max_items,
            spin: Spinner::default(),
        };
        let info = &queue.header().info;
        info.ring_size.store(ring_size as u64, Ordering::Relaxed);
        info.max_items
            .store(u64::from(max_items), Ordering::Relaxed);
        info.type_hash.store(type_hash, Ordering::Relaxed);
        info.flavor.store(flavor as u32, Ordering::Relaxed);
        info.magic.store(MAGIC, Ordering::Release);
        Ok(queue)
    }

    fn header(&self) -> &Header {
        // SAFETY: offset 0 is aligned (the mapping is page-aligned) and the header fits
        // before DATA_OFFSET; it is made of atomics, valid for any bits.
        unsafe { self.region.get::<Header>(0) }
    }

    fn ring(&self) -> Ring<'_> {
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

    fn has_items(&self) -> bool {
        let (head, tail) = self.words();
        head.pos() != tail.pos()
    }

    /// Whether a record of `need` bytes would fit now (a hint for waiting, taken
    /// without the lock).
    fn has_room(&self, need: u32) -> bool {
        let (head, tail) = self.words();
        let used = tail.pos().wrapping_sub(head.pos());
        let items = Ring::items(head, tail);
        used <= self.ring_size as u32 - need.min(self.ring_size as u32)
            && (self.max_items == 0 || items < self.max_items || items > u32::MAX / 2)
    }

    // --- put ---

    /// Queues one encoded item with its descriptors.
    pub(crate) fn put(
        &self,
        bytes: &[u8],
        fds: Vec<OwnedFd>,
        patience: Patience,
    ) -> Result<(), Fail> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(Fail::Failed(
                crate::wire::error::CodecError::new(
                    crate::wire::error::CodecErrorKind::Oversized,
                    format!(
                        "{} bytes, above the limit of {MAX_MESSAGE_LEN}",
                        bytes.len()
                    ),
                )
                .into(),
            ));
        }
        let inline = ring::record_bytes(bytes.len()).filter(|n| *n as usize <= self.ring_size / 2);
        let (kind, payload, need, fds): (u32, &[u8], u32, Vec<OwnedFd>) = match inline {
            Some(need) if fds.is_empty() => (INLINE, bytes, need, fds),
            Some(need) => (INLINE_FDS, bytes, need, fds),
            None => {
                let mut all = Vec::with_capacity(fds.len() + 1);
                all.push(spill(bytes)?);
                all.extend(fds);
                (SPILL, &[], ring::record_bytes(8).unwrap_or(32), all)
            }
        };
        let spilled_len = (bytes.len() as u64).to_le_bytes();
        let payload = if kind == SPILL {
            &spilled_len[..]
        } else {
            payload
        };
        let deadline = patience.deadline();
        loop {
            if self.is_closed() {
                return Err(Fail::Closed);
            }
            let Some(held) = lock(&self.header().ring.tx.lock, patience, "producer") else {
                return Err(Fail::Timeout);
            };
            match self.try_write(kind, payload, need, &fds)? {
                Written::Yes => {
                    drop(held);
                    self.wake_consumers();
                    return Ok(());
                }
                Written::Closed => return Err(Fail::Closed),
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
    fn try_write(
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
        if ring.free(tail, need)? < need {
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

    fn wake_consumers(&self) {
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

    fn wait_for_room(&self, need: u32, deadline: Option<Instant>) -> bool {
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

    // --- get ---

    /// Takes one item: its encoded bytes go to `out` (cleared first), its descriptors
    /// are returned.
    pub(crate) fn get(&self, out: &mut Vec<u8>, patience: Patience) -> Result<Vec<OwnedFd>, Fail> {
        let deadline = patience.deadline();
        loop {
            let Some(held) = lock(&self.header().ring.rx.lock, patience, "consumer") else {
                return Err(Fail::Timeout);
            };
            match self.try_take(out) {
                Ok(Took::Item(fds)) => {
                    drop(held);
                    self.wake_producers();
                    return Ok(fds);
                }
                Ok(Took::Spilled(region, len, fds)) => {
                    drop(held);
                    self.wake_producers();
                    copy_spilled(region, len, out)?;
                    return Ok(fds);
                }
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

    /// With the consumer lock held: takes the record at the head, if any.
    fn try_take(&self, out: &mut Vec<u8>) -> Result<Took, Fail> {
        let ring = self.ring();
        let ctl = &self.header().ring;
        let head = Word(ctl.head.word.load(Ordering::Relaxed));
        let tail = ring.tail(head);
        let header = match ring.header(head, tail, |k| (INLINE..=SPILL).contains(&k)) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(Took::Empty),
            Err(corrupt) => {
                // Nothing between head and tail can be trusted: drop it all, so that
                // the queue works again for what comes next.
                let tail = ring.fresh_tail();
                ring.release(tail);
                return Err(corrupt.into());
            }
        };
        out.clear();
        ring.read_payload(head, &header, out);
        let fds = match header.kind {
            INLINE => Vec::new(),
            _ => match self.courier.take(header.seq) {
                Ok(Taken::Batch(fds)) => fds,
                Ok(Taken::Lost) => {
                    ring.release(Ring::after(head, &header));
                    return Ok(Took::Lost);
                }
                Err(e) => {
                    // Without its descriptors the item cannot be decoded: drop it.
                    ring.release(Ring::after(head, &header));
                    return Err(e.into());
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
            _ => Err(
                ChannelError::Corrupt("a spilled item without its length or memory".into()).into(),
            ),
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

    // --- close, wait ---

    pub(crate) fn close(&self) {
        let header = self.header();
        header.info.closed.store(1, Ordering::SeqCst);
        for word in [&header.wake.not_empty, &header.wake.not_full] {
            word.fetch_add(1, Ordering::SeqCst);
            futex::wake(word, u32::MAX);
        }
        header.wake.bell.store(1, Ordering::SeqCst);
        let _ = sys::eventfd_signal(self.bell.as_fd());
    }

    fn ring_bell(&self) {
        let bell = &self.header().wake.bell;
        if bell.load(Ordering::Relaxed) == 0 && bell.swap(1, Ordering::SeqCst) == 0 {
            if let Err(e) = sys::eventfd_signal(self.bell.as_fd()) {
                log::debug!("cannot signal a queue's eventfd: {e}");
            }
        }
    }

    pub(crate) fn bell_fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    fn ready(&self) -> bool {
        self.has_items() || self.is_closed()
    }

    pub(crate) fn watch_arm(&self) -> io::Result<bool> {
        self.header().wake.watchers.fetch_add(1, Ordering::SeqCst);
        Ok(self.ready())
    }

    pub(crate) fn watch_disarm(&self) {
        self.header().wake.watchers.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn watch_is_ready(&self) -> io::Result<bool> {
        Ok(self.ready())
    }

    pub(crate) fn watch_confirm(&self) -> io::Result<bool> {
        if self.ready() {
            return Ok(true);
        }
        // A stale signal (the items it announced are gone): clear it, then look again,
        // in this order, so that a put that saw the bell still set is not missed.
        sys::eventfd_reset(self.bell.as_fd())?;
        self.header().wake.bell.store(0, Ordering::SeqCst);
        if self.ready() {
            self.ring_bell();
            return Ok(true);
        }
        Ok(false)
    }

    pub(crate) fn recheck_after() -> Duration {
        RECHECK
    }

    // --- join ---

    /// Items put and not yet marked done.
    pub(crate) fn unfinished(&self) -> u32 {
        let join = &self.header().join;
        let done = join.done.load(Ordering::SeqCst);
        let put = Word(self.header().ring.tail.word.load(Ordering::SeqCst)).count();
        put.wrapping_sub(done)
    }

    /// Counts one task done; `false` if that would be more than were put.
    pub(crate) fn task_done(&self) -> bool {
        let join = &self.header().join;
        loop {
            let done = join.done.load(Ordering::SeqCst);
            let put = Word(self.header().ring.tail.word.load(Ordering::SeqCst)).count();
            let unfinished = put.wrapping_sub(done);
            if unfinished == 0 || unfinished > u32::MAX / 2 {
                return false;
            }
            if join
                .done
                .compare_exchange(
                    done,
                    done.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                if unfinished == 1 && join.waiters.load(Ordering::SeqCst) > 0 {
                    join.seq.fetch_add(1, Ordering::SeqCst);
                    futex::wake(&join.seq, u32::MAX);
                }
                return true;
            }
        }
    }

    /// Waits until every item put was marked done; `false` if `deadline` came first.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> bool {
        let join = &self.header().join;
        loop {
            if self.unfinished() == 0 {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            join.waiters.fetch_add(1, Ordering::SeqCst);
            let seen = join.seq.load(Ordering::SeqCst);
            if self.unfinished() != 0 {
                futex::wait(&join.seq, seen, nap_until(deadline));
            }
            join.waiters.fetch_sub(1, Ordering::SeqCst);
        }
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
        let max_items = u32::try_from(info.max_items.load(Ordering::Relaxed))
            .unwrap_or(u32::MAX)
            .min(1 << 30);
        Ok(RawQueue {
            region,
            courier,
            bell,
            ring_size,
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

enum Written {
    Yes,
    Closed,
    NoRoom,
    CourierFull,
}

enum Took {
    Item(Vec<OwnedFd>),
    Spilled(OwnedFd, usize, Vec<OwnedFd>),
    Lost,
    Empty,
}

/// An item too large for the ring, in a sealed memory region of its own.
fn spill(bytes: &[u8]) -> Result<OwnedFd, Fail> {
    let region = SharedRegion::new("queue-item", bytes.len().max(1))?;
    // SAFETY: the region is new, private to this process until its descriptor is sent,
    // and at least `bytes.len()` long.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), region.as_ptr(), bytes.len()) };
    Ok(region.dup_fd()?)
}

fn copy_spilled(fd: OwnedFd, len: usize, out: &mut Vec<u8>) -> Result<(), Fail> {
    let region = SharedRegion::from_fd(fd, len.max(1))?;
    out.clear();
    out.resize(len, 0);
    // SAFETY: the region maps at least `len` bytes (checked by `from_fd`); `out` is a
    // private buffer of `len` bytes.
    unsafe { std::ptr::copy_nonoverlapping(region.as_ptr(), out.as_mut_ptr(), len) };
    Ok(())
}

impl Watch for RawQueue {
    fn arm(&self) -> std::io::Result<bool> {
        self.watch_arm()
    }

    fn disarm(&self) {
        self.watch_disarm();
    }

    fn is_ready(&self) -> std::io::Result<bool> {
        self.watch_is_ready()
    }

    fn confirm(&self) -> std::io::Result<bool> {
        self.watch_confirm()
    }

    fn recheck_after(&self) -> Option<Duration> {
        Some(RawQueue::recheck_after())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeper_finds_an_item_whose_producer_never_woke_it() {
        let q = RawQueue::new(4096, 0, 0, Flavor::Queue).unwrap();
        std::thread::scope(|s| {
            let getter = s.spawn(|| {
                let mut out = Vec::new();
                q.get(&mut out, Patience::Until(None)).unwrap();
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
            assert!(start.elapsed() < RECHECK * 3);
        });
    }
}
