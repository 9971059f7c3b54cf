//! Taking an item: the record at the head, its descriptors or spilled memory, waking
//! producers and waiting for items.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::ipc::error::{ChannelError, Corruption};
use crate::ipc::ring::{Ring, Word};
use crate::os::futex;
use crate::os::shm;
use crate::wire::codec::MAX_MESSAGE_LEN;
use crate::wire::courier::Taken;

use super::layout::{INLINE, SPILL};
use super::raw_queue::{Fail, Patience, RawQueue, lock, nap_until};

impl RawQueue {
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
            _ => Err(ChannelError::Corrupt(Corruption::new(
                "a spilled item without its length or memory",
            ))
            .into()),
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
    Lost,
    Empty,
}

/// Reads a spilled item with `pread`: the sender may still hold a writable descriptor
/// of it, and the kernel's copy cannot race with it the way a read of a mapping would.
fn copy_spilled(fd: OwnedFd, len: usize, out: &mut Vec<u8>) -> Result<(), Fail> {
    Ok(shm::read_copy(fd, len, out)?)
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
