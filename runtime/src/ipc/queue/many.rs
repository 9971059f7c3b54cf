//! Batch forms of [`Queue`]'s operations, beyond Python's API: [`Queue::put_many`],
//! [`Queue::get_many`] and their variants. A batch takes each lock once and publishes
//! (or frees) all its records with one store, so that a stream of small items costs a
//! fraction of what one `put` and one `get` per item cost; items come out exactly as
//! if put and taken one by one.

use std::os::fd::OwnedFd;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::raw::{Fail, Patience};
use super::{GetError, GetTimeoutError, PutError, Queue, TryGetError};
use crate::error::Error;
use crate::ipc::error::ChannelError;
use crate::ipc::scratch::{GET_SCRATCH, PUT_SCRATCH, with_scratch};
use crate::os::sys;
use crate::wire::{codec, small};

/// Encoded bytes gathered before a batch is written: enough to pay for the lock and
/// the wake-up check many times over, little enough that a consumer waits no longer
/// than a few microseconds for the first of them.
const BATCH_BYTES: usize = 64 << 10;
/// Items gathered before a batch is written.
const BATCH_ITEMS: usize = 1024;

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Puts every item of `items` at the end of the queue, in order, waiting for room
    /// as [`put`](Self::put) does; other producers' items may come between them.
    ///
    /// The same as a `put` of each item, at a fraction of the cost: items are encoded
    /// in batches, and each batch is written under one hold of the producer lock and
    /// published at once (an item that carries handles, or is too large for the
    /// buffer, goes on its own, in its place). A process killed in the middle leaves
    /// the queue holding a prefix of the items, each whole.
    ///
    /// Fails if the queue is closed or an item cannot be encoded; the error holds the
    /// items not queued (from the one that failed on), and those before it are in the
    /// queue.
    pub fn put_many<I: IntoIterator<Item = T>>(
        &self,
        items: I,
    ) -> std::result::Result<(), PutError<Vec<T>>> {
        let mut items: Vec<T> = items.into_iter().collect();
        match self.put_many_with(&items, Patience::Until(None)) {
            Ok(()) => Ok(()),
            Err((done, fail)) => {
                let rest = items.split_off(done.min(items.len()));
                Err(match fail {
                    Fail::Closed => PutError::Closed(rest),
                    Fail::Failed(e) => PutError::Failed(rest, e),
                    // Unreachable without a deadline; reported rather than assumed.
                    Fail::NotNow | Fail::Timeout => {
                        PutError::Failed(rest, Error::Channel(ChannelError::Timeout))
                    }
                })
            }
        }
    }

    /// Queues `items`; on failure, how many are in the queue (a prefix) and why the
    /// next one is not.
    fn put_many_with(&self, items: &[T], patience: Patience) -> Result<(), (usize, Fail)> {
        with_scratch(&PUT_SCRATCH, |buf| {
            let mut encoder = codec::EncodeMany::new();
            let mut ends = Vec::with_capacity(items.len().min(BATCH_ITEMS));
            // Items before `queued` are in the queue; `next` is the next to encode.
            let (mut queued, mut next) = (0, 0);
            while queued < items.len() {
                buf.clear();
                ends.clear();
                let mut alone: Option<(usize, Vec<OwnedFd>)> = None;
                let mut failed = None;
                while next < items.len() && buf.len() < BATCH_BYTES && ends.len() < BATCH_ITEMS {
                    let start = buf.len();
                    let item = &items[next];
                    // A primitive: at most 32 bytes, which any ring takes inline.
                    if small::encode_primitive(item, buf) {
                        ends.push(buf.len());
                        next += 1;
                        continue;
                    }
                    match encoder.encode_into(item, buf) {
                        Ok(fds) if fds.is_empty() && self.raw.fits_inline(buf.len() - start) => {
                            ends.push(buf.len());
                            next += 1;
                        }
                        Ok(fds) => {
                            alone = Some((start, fds));
                            next += 1;
                            break;
                        }
                        Err(e) => {
                            buf.truncate(start);
                            failed = Some(Fail::Failed(e.into()));
                            break;
                        }
                    }
                }
                let mut from = 0;
                let mut written = 0;
                while written < ends.len() {
                    let n = self
                        .raw
                        .put_many(buf, from, &ends[written..], patience)
                        .map_err(|fail| (queued, fail))?;
                    written += n;
                    queued += n;
                    from = ends[written - 1];
                }
                if let Some((start, fds)) = alone {
                    self.raw
                        .put(&buf[start..], fds, patience)
                        .map_err(|fail| (queued, fail))?;
                    queued += 1;
                }
                if let Some(fail) = failed {
                    return Err((queued, fail));
                }
            }
            Ok(())
        })
    }

    /// Takes up to `max` items from the front of the queue into `out` (appended, in
    /// order), waiting while the queue is empty; returns how many. It takes what is
    /// there when the first item is, without waiting for more.
    ///
    /// The same as up to `max` calls of [`get`](Self::get), at a fraction of the cost:
    /// the items are taken under one hold of the consumer lock and freed at once, then
    /// decoded. An item that carries handles or was too large for the buffer is taken
    /// alone. A process killed in the middle loses only the items it had taken, as
    /// with `get`.
    ///
    /// Fails as `get` does. An item that cannot be decoded is dropped and reported,
    /// after the rest of its batch is decoded into `out`: nothing else is lost.
    /// `max == 0` returns 0 at once.
    pub fn get_many(&self, out: &mut Vec<T>, max: usize) -> std::result::Result<usize, GetError> {
        match self.get_many_with(out, max, Patience::Until(None)) {
            Ok(n) => Ok(n),
            Err(Fail::Closed) => Err(GetError::Closed),
            Err(Fail::Failed(e)) => Err(GetError::Failed(e)),
            Err(Fail::NotNow | Fail::Timeout) => {
                Err(GetError::Failed(Error::Channel(ChannelError::Timeout)))
            }
        }
    }

    /// As [`get_many`](Self::get_many), without waiting: `Empty` if there is no item
    /// right now (or another consumer is in the middle of a `get`, as with
    /// [`try_get`](Self::try_get)).
    pub fn try_get_many(
        &self,
        out: &mut Vec<T>,
        max: usize,
    ) -> std::result::Result<usize, TryGetError> {
        match self.get_many_with(out, max, Patience::None) {
            Ok(n) => Ok(n),
            Err(Fail::NotNow | Fail::Timeout) => Err(TryGetError::Empty),
            Err(Fail::Closed) => Err(TryGetError::Closed),
            Err(Fail::Failed(e)) => Err(TryGetError::Failed(e)),
        }
    }

    /// As [`get_many`](Self::get_many), waiting at most `timeout` for the first item.
    pub fn get_many_timeout(
        &self,
        out: &mut Vec<T>,
        max: usize,
        timeout: Duration,
    ) -> std::result::Result<usize, GetTimeoutError> {
        let deadline = sys::deadline_after(timeout);
        match self.get_many_with(out, max, Patience::Until(Some(deadline))) {
            Ok(n) => Ok(n),
            Err(Fail::NotNow | Fail::Timeout) => Err(GetTimeoutError::Timeout),
            Err(Fail::Closed) => Err(GetTimeoutError::Closed),
            Err(Fail::Failed(e)) => Err(GetTimeoutError::Failed(e)),
        }
    }

    /// An iterator over the items in the queue now: it takes them in batches with
    /// [`try_get_many`](Self::try_get_many), and ends when that finds none (the queue
    /// empty, or closed and empty, or another consumer in the middle of a `get`). An
    /// item that cannot be decoded is dropped and comes out as an error after the
    /// items taken with it.
    pub fn drain(&self) -> QueueDrain<'_, T> {
        QueueDrain {
            queue: self,
            taken: std::collections::VecDeque::new(),
            failed: None,
            done: false,
        }
    }

    fn get_many_with(
        &self,
        out: &mut Vec<T>,
        max: usize,
        patience: Patience,
    ) -> std::result::Result<usize, Fail> {
        if max == 0 {
            return Ok(0);
        }
        with_scratch(&GET_SCRATCH, |buf| {
            let mut ends = Vec::with_capacity(max.min(BATCH_ITEMS));
            let fds = self.raw.get_many(buf, &mut ends, max, patience)?;
            if !fds.is_empty() {
                // Taken alone (`RawQueue::get_many`).
                out.push(codec::decode(buf, fds).map_err(|e| Fail::Failed(e.into()))?);
                return Ok(1);
            }
            let mut first_error = None;
            let mut start = 0;
            let mut decoded = 0;
            for end in &ends {
                match small::decode(&buf[start..*end], Vec::new()) {
                    Ok(item) => {
                        out.push(item);
                        decoded += 1;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
                start = *end;
            }
            match first_error {
                Some(e) => Err(Fail::Failed(e.into())),
                None => Ok(decoded),
            }
        })
    }
}

/// The items in a [`Queue`] when taken: see [`Queue::drain`].
pub struct QueueDrain<'a, T> {
    queue: &'a Queue<T>,
    taken: std::collections::VecDeque<T>,
    /// An item of the last batch that could not be decoded, reported after the items
    /// before it.
    failed: Option<(usize, Error)>,
    done: bool,
}

impl<T> std::fmt::Debug for QueueDrain<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueDrain")
            .field("queue", self.queue)
            .field("taken", &self.taken.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Items a [`QueueDrain`] takes at a time.
const DRAIN_BATCH: usize = 256;

impl<T: Serialize + DeserializeOwned> Iterator for QueueDrain<'_, T> {
    type Item = std::result::Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed.as_ref().is_some_and(|(at, _)| *at == 0) {
                let (_, e) = self.failed.take()?;
                return Some(Err(e));
            }
            if let Some(item) = self.taken.pop_front() {
                if let Some((at, _)) = &mut self.failed {
                    *at -= 1;
                }
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            let mut batch = Vec::new();
            match self.queue.try_get_many(&mut batch, DRAIN_BATCH) {
                Ok(_) => {}
                Err(TryGetError::Empty | TryGetError::Closed) => self.done = true,
                Err(TryGetError::Failed(e)) => self.failed = Some((batch.len(), e)),
            }
            self.taken.extend(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Encodes as its number; refuses to encode 13 and to decode 7.
    #[derive(Debug, PartialEq)]
    struct Picky(u32);

    impl Serialize for Picky {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            if self.0 == 13 {
                return Err(serde::ser::Error::custom("not 13"));
            }
            s.serialize_u32(self.0)
        }
    }

    impl<'de> Deserialize<'de> for Picky {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            match u32::deserialize(d)? {
                7 => Err(serde::de::Error::custom("not 7")),
                n => Ok(Picky(n)),
            }
        }
    }

    #[test]
    fn an_item_that_cannot_be_encoded_stops_the_batch_after_the_ones_before() {
        let q: Queue<Picky> = Queue::new().unwrap();
        let err = q.put_many((10..20).map(Picky)).unwrap_err();
        assert!(err.to_string().contains("not 13"), "{err}");
        assert_eq!(err.into_inner(), (13..20).map(Picky).collect::<Vec<_>>());
        let mut got = Vec::new();
        assert_eq!(q.get_many(&mut got, 100).unwrap(), 3);
        assert_eq!(got, (10..13).map(Picky).collect::<Vec<_>>());
    }

    #[test]
    fn an_item_that_cannot_be_decoded_is_dropped_alone() {
        let q: Queue<Picky> = Queue::new().unwrap();
        q.put_many((5..10).map(Picky)).unwrap();
        let mut got = Vec::new();
        let err = q.get_many(&mut got, 100).unwrap_err();
        assert!(err.to_string().contains("not 7"), "{err}");
        assert_eq!(got, [Picky(5), Picky(6), Picky(8), Picky(9)]);
        assert!(q.is_empty());
        // Through a drain: the error comes after the items taken with it.
        q.put_many((5..10).map(Picky)).unwrap();
        let drained: Vec<std::result::Result<Picky, String>> =
            q.drain().map(|r| r.map_err(|e| e.to_string())).collect();
        assert_eq!(drained.len(), 5);
        assert_eq!(
            drained[..4],
            [Ok(Picky(5)), Ok(Picky(6)), Ok(Picky(8)), Ok(Picky(9))]
        );
        assert!(drained[4].as_ref().unwrap_err().contains("not 7"));
    }

    #[test]
    fn closed_empty_and_nothing_asked() {
        let q: Queue<u32> = Queue::new().unwrap();
        let mut got = Vec::new();
        assert_eq!(q.get_many(&mut got, 0).unwrap(), 0);
        assert!(q.try_get_many(&mut got, 5).unwrap_err().is_empty());
        assert!(
            q.get_many_timeout(&mut got, 5, Duration::from_millis(10))
                .unwrap_err()
                .is_timeout()
        );
        q.put_many(Vec::new()).unwrap();
        q.put_many([1, 2]).unwrap();
        q.close();
        let err = q.put_many([3, 4]).unwrap_err();
        assert!(err.is_closed());
        assert_eq!(err.into_inner(), [3, 4]);
        assert_eq!(q.get_many(&mut got, 1).unwrap(), 1);
        assert_eq!(q.get_many(&mut got, 5).unwrap(), 1);
        assert_eq!(got, [1, 2]);
        assert!(q.get_many(&mut got, 5).unwrap_err().is_closed());
        assert!(q.try_get_many(&mut got, 5).unwrap_err().is_closed());
    }

    #[test]
    fn handles_and_spilled_items_go_alone_in_their_place() {
        let q: Queue<(u32, Vec<u8>, Option<Queue<u8>>)> =
            Queue::builder().buffer_size(4096).build().unwrap();
        let probe: Queue<u8> = Queue::new().unwrap();
        let items = |i: u32| {
            let len = if i % 5 == 0 { 3000 } else { 3 };
            let handle = (i % 7 == 3).then(|| probe.clone());
            (i, vec![i as u8; len], handle)
        };
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while got.len() < 100 {
                    let before = got.len();
                    let n = q.get_many(&mut got, 9).unwrap();
                    assert_eq!(got.len() - before, n);
                }
                got
            })
        };
        q.put_many((0..100).map(items)).unwrap();
        let got = consumer.join().unwrap();
        for (i, (n, bytes, handle)) in got.into_iter().enumerate() {
            let (en, ebytes, ehandle) = items(i as u32);
            assert_eq!((n, bytes), (en, ebytes));
            assert_eq!(handle.is_some(), ehandle.is_some());
        }
    }
}
