//! [`Queue`]: the handle every process holds on a shared queue, with the typed
//! `put` and `get` that [`JoinableQueue`](super::JoinableQueue) and
//! [`SimpleQueue`](super::SimpleQueue) delegate to.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::raw::{Fail, Flavor, Patience, RawQueue};
use super::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, QueueBuilder, TryGetError, TryPutError,
    type_hash,
};
use crate::error::{Error, Result};
use crate::ipc::scratch::{GET_SCRATCH, PUT_SCRATCH, with_scratch};
use crate::ipc::wait::{Waitable, Watch};
use crate::os::sys;
use crate::wire::small;

/// A first-in, first-out queue shared by any number of processes: Python's
/// `multiprocessing.Queue`.
///
/// Create it in one process, then hand it to others as a worker argument, as a field
/// of a `#[process]` struct, or inside a message on another queue or a pipe; every
/// copy is the same queue. Items are any `T: Serialize + DeserializeOwned` and are
/// encoded when put, so `put` takes the item and `get` returns a fresh one. A `Queue`
/// may be cloned within a process (the clones share the handle) and used from any
/// number of threads.
///
/// ```
/// use multiproc::Queue;
///
/// #[multiproc::worker]
/// fn produce(q: Queue<String>, n: u32) -> multiproc::Result<()> {
///     for i in 0..n {
///         q.put(format!("item {i}"))?;
///     }
///     Ok(())
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let q = Queue::new()?;
///     let p = produce::spawn(q.clone(), 3)?;
///     p.join()?; // the child has exited: its items stay in the queue
///     for i in 0..3 {
///         assert_eq!(q.get()?, format!("item {i}"));
///     }
///     assert!(q.try_get().unwrap_err().is_empty());
///     Ok(())
/// }
/// ```
///
/// # Order and blocking
///
/// Items from one producer come out in the order they were put; between producers the
/// order is that of the moments their `put`s took the queue's producer lock. `get`
/// waits while the queue is empty; `put` waits while a bounded queue
/// ([`with_capacity`](Self::with_capacity)) holds its capacity of items or its
/// buffer's bytes (an unbounded queue grows instead, see below). Each operation has a
/// `try_` form that does not wait and a `_timeout` form.
///
/// # Batches
///
/// [`put_many`](Self::put_many), [`get_many`](Self::get_many) and
/// [`drain`](Self::drain) move many items per hold of the queue's lock, with one
/// store to publish or free them all: a stream of small items costs a fraction of a
/// `put` and a `get` per item, and a process killed in the middle of a batch leaves a
/// whole prefix of it. A [`JoinableQueue`](super::JoinableQueue) has them through
/// [`as_queue`](super::JoinableQueue::as_queue) (each item is still one task).
///
/// # When `put` returns, the item is in the queue
///
/// There is no feeder thread: `put` writes the item into shared memory before it
/// returns. A child that put items and returned exits at once, and the items stay for
/// the consumers. (Python's child waits at exit until its items are read, and a parent
/// that joins it before reading them deadlocks.)
///
/// # The buffer
///
/// Items live in a ring buffer of shared memory, 4 MiB unless set with
/// [`QueueBuilder::buffer_size`]. An item larger than half the buffer goes into a
/// shared memory region of its own (its descriptor travels through a socket beside the
/// queue), so items of any size up to [`MAX_MESSAGE_LEN`](crate::MAX_MESSAGE_LEN) work.
/// A bounded queue holds at most the buffer's bytes; an unbounded one grows beyond it
/// (next section).
///
/// Large byte buffers: serde encodes a `Vec<u8>` one element at a time (bincode
/// decodes it at about 0.5 GB/s); wrap them in `serde_bytes::ByteBuf` (or anything
/// that serializes with `serialize_bytes`) to move them at memory speed.
///
/// # Unbounded means unbounded
///
/// A queue made with [`new`](Self::new) (or with no capacity) never makes `put` wait
/// for a reader, as Python's `Queue()`: a child can put far more than the buffer
/// and exit at once. Its ring is a sparse shared-memory region of up to 1 GiB (less
/// when a quarter of the machine's memory, or an eighth of the address space left
/// under `RLIMIT_AS`, is smaller) of which only the buffer (4 MiB, see
/// [`QueueBuilder::buffer_size`]) stays allocated:
///
/// - **growing**: items that are not read yet take new pages beyond the buffer (a
///   `put` that would be the first beyond it first waits up to 10 ms for the
///   consumers to empty the queue and rewind it; `try_put` does not wait);
/// - **shrinking**: the consumer gives the pages it has read back to the kernel, a
///   chunk (a quarter of the buffer, at most 1 MiB) at a time, so memory follows the
///   unread bytes down as well as up;
/// - **rewinding**: a consumer that finds the queue empty past half its buffer moves
///   it back to the start, so that a queue whose consumers keep up runs in the same
///   pages and pays nothing for growing.
///
/// Only past the virtual size does `put` wait for room; and for items that travel
/// with descriptors (those larger than half the buffer, or holding handles), when
/// the socket the descriptors go through is full: a few hundred such items can wait
/// unread. A queue with a capacity
/// ([`with_capacity`](Self::with_capacity)) keeps its fixed buffer: it holds at most
/// that many items and at most the buffer's bytes.
///
/// # Handles inside items
///
/// An item may hold other queues or connections: their descriptors travel beside the
/// item (through the queue's socket) and arrive with it.
///
/// # Processes that die
///
/// A producer or consumer killed at any moment, even in the middle of a `put` or a
/// `get` and holding the queue's locks, never wedges the others, and no one ever
/// receives a torn or duplicated item: every change to the queue is published by one
/// atomic store, and a lock held by a dead process is taken over by the next process
/// that wants it: a waiter checks, 10 ms into its wait and every 100 ms after, whether
/// the holder still lives. An item being received by a consumer that is killed is lost
/// with it, as if the consumer had received it.
///
/// A process blocked in `get` or `put` sleeps in the kernel and is woken by the
/// process that makes progress for it; in case that process dies between its change
/// and the wake-up, a blocked operation also looks again once a second.
///
/// # Caveats
///
/// - [`close`](Self::close) closes the queue for every process, not only this handle
///   (Python's `close` is per process; in Rust, dropping the handle is that).
/// - [`qsize`](Self::qsize), [`is_empty`](Self::is_empty) and
///   [`is_full`](Self::is_full) are snapshots: other processes may change the queue at
///   any moment.
/// - Every process that holds an unbounded queue maps its whole virtual ring (up to
///   1 GiB of address space, no memory): a process under an address space limit
///   (`RLIMIT_AS`) far below its creator's may fail to receive one; give it a queue
///   with a capacity.
/// - Sending a queue to a process of another program (another binary) is not
///   supported: the item type is checked by name.
/// - A dead lock holder is recognised by its process id: were the id reused by a new
///   process within the check's interval, the waiters would wait for that process.
/// - Waking wakes every sleeping consumer (or producer), so that no chosen one can die
///   with the wake-up; with many sleepers and few items, most go back to sleep.
pub struct Queue<T> {
    pub(super) raw: Arc<RawQueue>,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Queue<T> {
    pub(super) fn from_raw(raw: Arc<RawQueue>) -> Self {
        Queue {
            raw,
            _item: PhantomData,
        }
    }

    /// A new unbounded queue.
    pub fn new() -> Result<Queue<T>> {
        Self::builder().build()
    }

    /// A new queue that holds at most `items` items (unbounded if 0, as Python's
    /// `maxsize <= 0`).
    pub fn with_capacity(items: usize) -> Result<Queue<T>> {
        Self::builder().capacity(items).build()
    }

    /// A builder, to set the capacity and the buffer size.
    pub fn builder() -> QueueBuilder<Queue<T>> {
        QueueBuilder::new()
    }

    /// The number of items in the queue (Python's `qsize()`): put and not yet taken.
    ///
    /// Approximate: other processes may put or get at the same moment.
    pub fn qsize(&self) -> usize {
        self.raw.len()
    }

    /// Whether the queue holds no item (a snapshot, as [`qsize`](Self::qsize)).
    pub fn is_empty(&self) -> bool {
        self.raw.len() == 0
    }

    /// Whether a bounded queue holds its capacity of items (a snapshot); never for an
    /// unbounded one.
    pub fn is_full(&self) -> bool {
        self.raw.is_full()
    }

    /// The most items the queue holds; `None` if unbounded.
    pub fn capacity(&self) -> Option<usize> {
        self.raw.capacity()
    }

    /// Closes the queue, for every process: later puts fail with `Closed`, gets return
    /// the items still queued and then fail with `Closed` instead of waiting, and
    /// everyone waiting wakes up. Closing twice is harmless.
    pub fn close(&self) {
        self.raw.close();
    }

    /// Whether the queue was closed (by any process).
    pub fn is_closed(&self) -> bool {
        self.raw.is_closed()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Puts `item` at the end of the queue, waiting while the queue is full.
    ///
    /// Fails, giving the item back, if the queue is closed or the item cannot be
    /// encoded.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        match self.put_with(&item, Patience::Until(None)) {
            Ok(()) => Ok(()),
            Err(Fail::Closed) => Err(PutError::Closed(item)),
            Err(Fail::Failed(e)) => Err(PutError::Failed(item, e)),
            // Unreachable without a deadline; reported rather than assumed.
            Err(Fail::NotNow | Fail::Timeout) => Err(PutError::Failed(
                item,
                Error::Channel(crate::ipc::error::ChannelError::Timeout),
            )),
        }
    }

    /// Puts `item` if there is room right now; `Full` otherwise.
    ///
    /// It never waits: not for room, and not for another producer's `put` in
    /// progress (a producer that holds the producer lock, even one stopped there,
    /// makes it `Full`), as Python's `put(block=False)` takes its lock without
    /// blocking.
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        match self.put_with(&item, Patience::None) {
            Ok(()) => Ok(()),
            Err(Fail::NotNow | Fail::Timeout) => Err(TryPutError::Full(item)),
            Err(Fail::Closed) => Err(TryPutError::Closed(item)),
            Err(Fail::Failed(e)) => Err(TryPutError::Failed(item, e)),
        }
    }

    /// Puts `item`, waiting at most `timeout` for room.
    pub fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        let deadline = sys::deadline_after(timeout);
        match self.put_with(&item, Patience::Until(Some(deadline))) {
            Ok(()) => Ok(()),
            Err(Fail::NotNow | Fail::Timeout) => Err(PutTimeoutError::Timeout(item)),
            Err(Fail::Closed) => Err(PutTimeoutError::Closed(item)),
            Err(Fail::Failed(e)) => Err(PutTimeoutError::Failed(item, e)),
        }
    }

    fn put_with(&self, item: &T, patience: Patience) -> std::result::Result<(), Fail> {
        let mut encoded = small::Small::new();
        if small::encode_primitive(item, &mut encoded) {
            return self.raw.put(encoded.bytes(), Vec::new(), patience);
        }
        with_scratch(&PUT_SCRATCH, |buf| {
            let (fds, sealed) =
                small::encode_sealable(item, buf).map_err(|e| Fail::Failed(e.into()))?;
            match sealed {
                None => self.raw.put(buf, fds, patience),
                Some(body) => self.raw.put_sealed(body.fd, body.len, fds, patience),
            }
        })
    }

    /// Takes the item at the front of the queue, waiting while the queue is empty.
    ///
    /// Fails if the queue is closed and empty, or if the item cannot be decoded (it is
    /// dropped; the next `get` takes the next one).
    pub fn get(&self) -> std::result::Result<T, GetError> {
        match self.get_with(Patience::Until(None)) {
            Ok(item) => Ok(item),
            Err(Fail::Closed) => Err(GetError::Closed),
            Err(Fail::Failed(e)) => Err(GetError::Failed(e)),
            Err(Fail::NotNow | Fail::Timeout) => Err(GetError::Failed(Error::Channel(
                crate::ipc::error::ChannelError::Timeout,
            ))),
        }
    }

    /// Takes the item at the front if there is one right now; `Empty` otherwise. Like
    /// [`try_put`](Self::try_put), it never waits: a consumer in the middle of a `get`
    /// (holding the consumer lock, even stopped there) makes it `Empty`.
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        match self.get_with(Patience::None) {
            Ok(item) => Ok(item),
            Err(Fail::NotNow | Fail::Timeout) => Err(TryGetError::Empty),
            Err(Fail::Closed) => Err(TryGetError::Closed),
            Err(Fail::Failed(e)) => Err(TryGetError::Failed(e)),
        }
    }

    /// Takes the item at the front, waiting at most `timeout` for one.
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        let deadline = sys::deadline_after(timeout);
        match self.get_with(Patience::Until(Some(deadline))) {
            Ok(item) => Ok(item),
            Err(Fail::NotNow | Fail::Timeout) => Err(GetTimeoutError::Timeout),
            Err(Fail::Closed) => Err(GetTimeoutError::Closed),
            Err(Fail::Failed(e)) => Err(GetTimeoutError::Failed(e)),
        }
    }

    fn get_with(&self, patience: Patience) -> std::result::Result<T, Fail> {
        // A primitive of at most 16 bytes encodes into at most 16 (a varint of a
        // `u64` is 9): one block of the ring, read without a buffer.
        if std::mem::size_of::<T>() <= 16 && small::is_primitive::<T>() {
            if let Some((block, len)) = self.raw.get_small_now() {
                return small::decode(&block[..len], Vec::new())
                    .map_err(|e| Fail::Failed(e.into()));
            }
        }
        with_scratch(&GET_SCRATCH, |buf| {
            let got = self.raw.get_item(buf, patience)?;
            let bytes = got.spilled.as_deref().unwrap_or(buf);
            small::decode(bytes, got.fds).map_err(|e| Fail::Failed(e.into()))
        })
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue::from_raw(self.raw.clone())
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.qsize())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.raw.wire().serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = RawQueue::from_wire(
            deserializer,
            type_hash::<T>(),
            std::any::type_name::<T>(),
            Flavor::Queue,
        )?;
        Ok(Queue::from_raw(Arc::new(raw)))
    }
}

/// Ready when the queue has an item or is closed.
impl<T> Waitable for Queue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.raw.bell_fd()
    }

    fn __watch(&self) -> Option<&dyn Watch> {
        Some(&*self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::queue::JoinableQueue;
    use crate::wire::codec;
    use std::time::Instant;

    #[test]
    fn fifo_and_try_forms() {
        let q: Queue<u64> = Queue::new().unwrap();
        assert!(q.is_empty());
        for i in 0..6 {
            q.put(i).unwrap();
        }
        assert_eq!(q.qsize(), 6);
        for i in 0..6 {
            assert_eq!(q.get().unwrap(), i);
        }
        assert!(q.try_get().unwrap_err().is_empty());
        let start = Instant::now();
        assert!(
            q.get_timeout(Duration::from_millis(100))
                .unwrap_err()
                .is_timeout()
        );
        assert!(start.elapsed() >= Duration::from_millis(90));
    }

    #[test]
    fn bounded() {
        let q: Queue<String> = Queue::with_capacity(2).unwrap();
        assert!(q.is_empty() && !q.is_full());
        q.put("a".into()).unwrap();
        q.put("b".into()).unwrap();
        assert!(q.is_full());
        assert_eq!(q.qsize(), 2);
        let e = q.try_put("c".into()).unwrap_err();
        assert!(e.is_full());
        assert_eq!(e.into_inner(), "c");
        let start = Instant::now();
        assert!(
            q.put_timeout("c".into(), Duration::from_millis(100))
                .unwrap_err()
                .is_timeout()
        );
        assert!(start.elapsed() >= Duration::from_millis(90));
        assert_eq!(q.get().unwrap(), "a");
        q.try_put("c".into()).unwrap();
        assert_eq!(q.get().unwrap(), "b");
        assert_eq!(q.get().unwrap(), "c");
        assert!(q.is_empty() && !q.is_full());
        // maxsize <= 0 is unbounded.
        assert_eq!(Queue::<u8>::with_capacity(0).unwrap().capacity(), None);
    }

    #[test]
    fn wraps_and_spills() {
        let q: Queue<Vec<u8>> = Queue::builder().buffer_size(4096).build().unwrap();
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..2000usize {
                    let item = q.get().unwrap();
                    assert_eq!(item.len(), (i * 131) % 5000);
                    assert!(item.iter().all(|b| *b == i as u8));
                }
            })
        };
        for i in 0..2000usize {
            q.put(vec![i as u8; (i * 131) % 5000]).unwrap();
        }
        consumer.join().unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn close_drains_then_fails() {
        let q: Queue<u8> = Queue::new().unwrap();
        q.put(1).unwrap();
        q.close();
        q.close();
        assert!(q.is_closed());
        assert!(q.put(2).unwrap_err().is_closed());
        assert_eq!(q.get().unwrap(), 1);
        assert!(q.get().unwrap_err().is_closed());
        assert!(q.try_get().unwrap_err().is_closed());
    }

    #[test]
    fn close_wakes_a_waiting_get() {
        let q: Queue<u8> = Queue::new().unwrap();
        let waiter = {
            let q = q.clone();
            // A deadline far beyond the test, so that a get that is never told of the
            // close fails the test (a timeout, not "closed") instead of hanging it.
            std::thread::spawn(move || q.get_timeout(Duration::from_secs(60)))
        };
        // Close only once the getter sleeps, so that it is the close that must end it.
        while q.raw.sleeping_getters() == 0 {
            std::thread::yield_now();
        }
        let word = q.raw.not_empty_word();
        q.close();
        assert!(waiter.join().unwrap().unwrap_err().is_closed());
        // The getter re-checks the queue now and then even unwoken: the wake-up itself
        // shows in the futex word it sleeps on, which the close must move.
        assert_ne!(q.raw.not_empty_word(), word);
    }

    #[test]
    fn handles_travel_inside_items() {
        let outer: Queue<Queue<String>> = Queue::new().unwrap();
        let inner: Queue<String> = Queue::new().unwrap();
        outer.put(inner.clone()).unwrap();
        inner.put("through the copy".into()).unwrap();
        let copy = outer.get().unwrap();
        assert_eq!(copy.get().unwrap(), "through the copy");
        // The wrong item type is refused when received.
        let wrong: Queue<Queue<u8>> = Queue::new().unwrap();
        let encoded = codec::encode(&inner).unwrap();
        let err = codec::decode::<Queue<u8>>(&encoded.bytes, encoded.fds).unwrap_err();
        assert!(err.to_string().contains("item type"), "{err}");
        drop(wrong);
        // ... and the wrong flavour.
        let encoded = codec::encode(&inner).unwrap();
        let err = codec::decode::<JoinableQueue<String>>(&encoded.bytes, encoded.fds).unwrap_err();
        assert!(
            err.to_string()
                .contains("a Queue received as a JoinableQueue"),
            "{err}"
        );
    }

    /// Fails to encode when `fail` is set.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Picky {
        fail: bool,
    }

    impl Serialize for Picky {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            if self.fail {
                return Err(serde::ser::Error::custom("cannot pickle this"));
            }
            use serde::ser::SerializeStruct;
            let mut st = s.serialize_struct("Picky", 1)?;
            st.serialize_field("fail", &self.fail)?;
            st.end()
        }
    }

    #[test]
    fn an_item_that_cannot_be_encoded_is_given_back() {
        // Python's put succeeds and its feeder thread drops the item; here put fails
        // and returns it, and the queue keeps working.
        let q: Queue<Picky> = Queue::new().unwrap();
        match q.put(Picky { fail: true }) {
            Err(PutError::Failed(item, e)) => {
                assert_eq!(item, Picky { fail: true });
                assert!(e.to_string().contains("cannot pickle this"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(q.is_empty());
        q.put(Picky { fail: false }).unwrap();
        assert_eq!(q.get().unwrap(), Picky { fail: false });
        assert!(q.is_empty());
    }

    #[test]
    fn wait_on_a_queue() {
        let q: Queue<u8> = Queue::new().unwrap();
        let r: Queue<u8> = Queue::new().unwrap();
        assert!(
            crate::ipc::wait::wait(&[&q, &r], Some(Duration::from_millis(20)))
                .unwrap()
                .is_empty()
        );
        r.put(1).unwrap();
        assert_eq!(
            crate::ipc::wait::wait(&[&q, &r], Some(Duration::ZERO)).unwrap(),
            [1]
        );
        // Put only once the `wait` below watches `q`, so that the put must wake it.
        let putter = {
            let q = q.clone();
            std::thread::spawn(move || {
                while q.raw.watchers() == 0 {
                    std::thread::yield_now();
                }
                q.put(2).unwrap();
            })
        };
        r.get().unwrap();
        assert_eq!(
            crate::ipc::wait::wait(&[&q, &r], Some(Duration::from_secs(10))).unwrap(),
            [0]
        );
        putter.join().unwrap();
        q.get().unwrap();
        // The signal is stale now: the wait must not report the queue.
        assert!(
            crate::ipc::wait::wait(&[&q], Some(Duration::from_millis(20)))
                .unwrap()
                .is_empty()
        );
    }
}
