//! Recovery from a ring that holds what no multiproc process writes (a peer's
//! garbage): both words are set to one aligned position past everything published,
//! so that the queue works again, and the operation that found it reports how many
//! items were dropped.

use std::sync::atomic::Ordering;

use crate::ipc::error::{ChannelError, Corruption};
use crate::ipc::ring::{Corrupt, RECORD_HEADER, Ring, Word};

use super::raw_queue::{Fail, Patience, RawQueue, lock};

impl RawQueue {
    /// With the consumer lock held: drops every record in the ring, taking the
    /// producer lock (within `patience`) to realign the producers' word if a peer
    /// moved it off the record grid. Returns the error that reports `corrupt` and
    /// the number of items dropped.
    ///
    /// If the producer lock cannot be had in time, a tail on the grid is still
    /// caught up with (the records before it are dropped); a tail off the grid is
    /// left for the next operation to repair, and the error says nothing was dropped
    /// yet.
    pub(super) fn recover(&self, corrupt: Corrupt, patience: Patience) -> Fail {
        let ring = self.ring();
        let ctl = &self.header().ring;
        let head = Word(ctl.head.word.load(Ordering::Relaxed));
        let producers = lock(&ctl.tx.lock, patience, "producer");
        let tail = ring.fresh_tail();
        let aligned = Word::new(tail.count(), align(tail.pos()));
        let dropped = if producers.is_some() || aligned == tail {
            if aligned != tail {
                ring.publish(aligned);
            }
            ctl.tx.seen.store(aligned.0, Ordering::Relaxed);
            ctl.rx.seen.store(aligned.0, Ordering::Relaxed);
            ring.release(aligned);
            self.describe_loss(Ring::items(head, tail))
        } else {
            "the producers' lock is busy, so nothing was dropped yet".to_owned()
        };
        drop(producers);
        log::warn!(
            "a queue's shared memory was corrupt ({}); {dropped}",
            corrupt.0
        );
        Fail::Failed(
            ChannelError::Corrupt(Corruption::new(format!("{}; {dropped}", corrupt.0))).into(),
        )
    }

    /// As a producer (holding no lock): takes the consumer lock, then recovers.
    pub(super) fn recover_as_producer(&self, corrupt: Corrupt, patience: Patience) -> Fail {
        // The consumer lock first, as consumers take them, so that two recoveries
        // never wait for each other.
        match lock(&self.header().ring.rx.lock, patience, "consumer") {
            Some(_consumers) => self.recover(corrupt, patience),
            None => Fail::Failed(
                ChannelError::Corrupt(Corruption::new(format!(
                    "{}; the consumers' lock is busy, so nothing was dropped yet",
                    corrupt.0
                )))
                .into(),
            ),
        }
    }

    fn describe_loss(&self, items: u32) -> String {
        // Every record takes at least a header: more items than that cannot be real.
        if items as usize > self.ring_size / RECORD_HEADER as usize {
            "an unknown number of items dropped (the item count is garbage too)".to_owned()
        } else if items == 1 {
            "1 item dropped".to_owned()
        } else {
            format!("{items} items dropped")
        }
    }
}

/// `pos` rounded up to the record grid.
fn align(pos: u32) -> u32 {
    pos.wrapping_add(RECORD_HEADER - 1) & !(RECORD_HEADER - 1)
}

#[cfg(test)]
mod tests {
    use super::align;

    #[test]
    fn alignment() {
        assert_eq!(align(0), 0);
        assert_eq!(align(8), 16);
        assert_eq!(align(16), 16);
        assert_eq!(align(u32::MAX - 7), 0);
    }
}
