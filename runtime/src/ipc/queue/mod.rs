//! [`Queue`], [`SimpleQueue`] and [`JoinableQueue`]: Python's queues, across any number
//! of processes, in shared memory.

mod error;
pub(crate) mod raw;

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
use raw::{Fail, Flavor, Patience, RawQueue};

use crate::error::{Error, Result};
use crate::ipc::scratch::{GET_SCRATCH, PUT_SCRATCH, with_scratch};
use crate::ipc::wait::{Waitable, Watch};
use crate::os::sys;
use crate::wire::codec;

fn type_hash<T>() -> u64 {
    crate::ipc::type_hash::type_hash(std::any::type_name::<T>())
}

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
/// ([`with_capacity`](Self::with_capacity)) holds its capacity of items, or while the
/// queue's buffer has no room for the item (see below). Each operation has a
/// `try_` form that does not wait and a `_timeout` form.
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
/// An unbounded queue is unbounded in items, not in bytes: a `put` into a buffer
/// filled with items nobody takes waits for room, as a write into a full pipe does.
///
/// Large byte buffers: serde encodes a `Vec<u8>` one element at a time (bincode
/// decodes it at about 0.5 GB/s); wrap them in `serde_bytes::ByteBuf` (or anything
/// that serializes with `serialize_bytes`) to move them at memory speed.
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
/// - Sending a queue to a process of another program (another binary) is not
///   supported: the item type is checked by name.
/// - A dead lock holder is recognised by its process id: were the id reused by a new
///   process within the check's interval, the waiters would wait for that process.
/// - Waking wakes every sleeping consumer (or producer), so that no chosen one can die
///   with the wake-up; with many sleepers and few items, most go back to sleep.
pub struct Queue<T> {
    raw: Arc<RawQueue>,
    _item: PhantomData<fn(T) -> T>,
}

/// Configures a queue before it is created: its capacity in items and the size of its
/// buffer. Start from [`Queue::builder`], [`JoinableQueue::builder`] or
/// [`SimpleQueue::builder`].
///
/// ```
/// use multiproc::Queue;
///
/// let q: Queue<u64> = Queue::builder().capacity(100).buffer_size(64 << 10).build()?;
/// assert_eq!(q.capacity(), Some(100));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct QueueBuilder<Q> {
    capacity: usize,
    buffer_size: usize,
    _queue: PhantomData<fn() -> Q>,
}

impl<Q> QueueBuilder<Q> {
    fn new() -> Self {
        QueueBuilder {
            capacity: 0,
            buffer_size: raw::DEFAULT_RING,
            _queue: PhantomData,
        }
    }

    /// The most items the queue holds; 0 (the default) for no limit, as Python's
    /// `maxsize <= 0`.
    #[must_use]
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = items;
        self
    }

    /// The size of the shared ring buffer in bytes: rounded up to a power of two
    /// between 4 KiB and 1 GiB; 4 MiB by default. Items up to half of it are copied
    /// through it, larger ones go into memory regions of their own.
    #[must_use]
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }

    fn raw<T>(&self, flavor: Flavor) -> Result<Arc<RawQueue>> {
        let raw = RawQueue::new(self.buffer_size, self.capacity, type_hash::<T>(), flavor)?;
        Ok(Arc::new(raw))
    }
}

impl<Q> fmt::Debug for QueueBuilder<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueBuilder")
            .field("capacity", &self.capacity)
            .field("buffer_size", &self.buffer_size)
            .finish()
    }
}

impl<T> QueueBuilder<Queue<T>> {
    /// Creates the queue.
    pub fn build(self) -> Result<Queue<T>> {
        Ok(Queue::from_raw(self.raw::<T>(Flavor::Queue)?))
    }
}

impl<T> QueueBuilder<JoinableQueue<T>> {
    /// Creates the queue.
    pub fn build(self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue: Queue::from_raw(self.raw::<T>(Flavor::Joinable)?),
        })
    }
}

impl<T> QueueBuilder<SimpleQueue<T>> {
    /// Creates the queue.
    pub fn build(self) -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            queue: Queue::from_raw(self.raw::<T>(Flavor::Simple)?),
        })
    }
}

impl<T> Queue<T> {
    fn from_raw(raw: Arc<RawQueue>) -> Self {
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
    /// It does not wait for room, but may wait for another producer's `put` in
    /// progress (the producer lock is held only while an item is copied in).
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
        with_scratch(&PUT_SCRATCH, |buf| {
            let fds = codec::encode_into(item, buf).map_err(|e| Fail::Failed(e.into()))?;
            self.raw.put(buf, fds, patience)
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
    /// [`try_put`](Self::try_put), it may wait for another consumer's `get` in
    /// progress.
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
        with_scratch(&GET_SCRATCH, |buf| {
            let fds: Vec<OwnedFd> = self.raw.get(buf, patience)?;
            codec::decode(buf, fds).map_err(|e| Fail::Failed(e.into()))
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

/// Ready when the queue has an item or is closed.
impl<T> Waitable for Queue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.raw.bell_fd()
    }

    fn __watch(&self) -> Option<&dyn Watch> {
        Some(&*self.raw)
    }
}

/// A [`Queue`] with Python's `task_done` and `join`: `join` waits until every item put
/// has been marked done.
///
/// ```
/// use multiproc::JoinableQueue;
///
/// #[multiproc::worker]
/// fn square_all(tasks: JoinableQueue<Option<u64>>, results: multiproc::Queue<u64>) {
///     while let Ok(Some(x)) = tasks.get() {
///         results.put(x * x).ok();
///         tasks.task_done().ok();
///     }
///     tasks.task_done().ok(); // for the `None` that stopped the loop
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let tasks = JoinableQueue::new()?;
///     let results = multiproc::Queue::new()?;
///     let worker = square_all::spawn(tasks.clone(), results.clone())?;
///     for x in 1..=3 {
///         tasks.put(Some(x))?;
///     }
///     tasks.put(None)?;
///     tasks.join(); // every task is done
///     let mut got: Vec<u64> = (0..3).map(|_| results.get()).collect::<Result<_, _>>()?;
///     got.sort();
///     assert_eq!(got, [1, 4, 9]);
///     worker.join()?;
///     assert!(tasks.task_done().is_err()); // more task_done calls than items
///     Ok(())
/// }
/// ```
///
/// # Caveats
///
/// A consumer that dies between taking an item and calling `task_done` leaves that item
/// unfinished for ever, so `join` would wait for ever: prefer
/// [`join_timeout`](Self::join_timeout) when consumers may die.
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> JoinableQueue<T> {
    /// A new unbounded queue.
    pub fn new() -> Result<JoinableQueue<T>> {
        Self::builder().build()
    }

    /// A new queue holding at most `items` items (unbounded if 0).
    pub fn with_capacity(items: usize) -> Result<JoinableQueue<T>> {
        Self::builder().capacity(items).build()
    }

    /// A builder, to set the capacity and the buffer size.
    pub fn builder() -> QueueBuilder<JoinableQueue<T>> {
        QueueBuilder::new()
    }

    /// Marks one item taken from the queue as processed. Fails, as Python raises, when
    /// called more times than items were put.
    pub fn task_done(&self) -> std::result::Result<(), TaskDoneError> {
        if self.queue.raw.task_done() {
            Ok(())
        } else {
            Err(TaskDoneError)
        }
    }

    /// Waits until every item put has been marked done with
    /// [`task_done`](Self::task_done).
    pub fn join(&self) {
        self.queue.raw.join(None);
    }

    /// As [`join`](Self::join), waiting at most `timeout`; whether every item was done.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.queue.raw.join(Some(sys::deadline_after(timeout)))
    }

    /// Items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        self.queue.raw.unfinished() as usize
    }

    /// The queue underneath, for the operations a `JoinableQueue` shares with a
    /// [`Queue`].
    pub fn as_queue(&self) -> &Queue<T> {
        &self.queue
    }

    /// See [`Queue::qsize`].
    pub fn qsize(&self) -> usize {
        self.queue.qsize()
    }

    /// See [`Queue::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// See [`Queue::is_full`].
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// See [`Queue::capacity`].
    pub fn capacity(&self) -> Option<usize> {
        self.queue.capacity()
    }

    /// See [`Queue::close`].
    pub fn close(&self) {
        self.queue.close();
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// See [`Queue::put`]; the item counts as unfinished until
    /// [`task_done`](Self::task_done).
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put(item)
    }

    /// See [`Queue::try_put`].
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        self.queue.try_put(item)
    }

    /// See [`Queue::put_timeout`].
    pub fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        self.queue.put_timeout(item, timeout)
    }

    /// See [`Queue::get`].
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.queue.get()
    }

    /// See [`Queue::try_get`].
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        self.queue.try_get()
    }

    /// See [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        self.queue.get_timeout(timeout)
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("qsize", &self.qsize())
            .field("capacity", &self.capacity())
            .field("unfinished_tasks", &self.unfinished_tasks())
            .finish_non_exhaustive()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = RawQueue::from_wire(
            deserializer,
            type_hash::<T>(),
            std::any::type_name::<T>(),
            Flavor::Joinable,
        )?;
        Ok(JoinableQueue {
            queue: Queue::from_raw(Arc::new(raw)),
        })
    }
}

/// Ready when the queue has an item or is closed.
impl<T> Waitable for JoinableQueue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.queue.wait_fd()
    }

    fn __watch(&self) -> Option<&dyn Watch> {
        self.queue.__watch()
    }
}

/// Python's `multiprocessing.SimpleQueue`: an unbounded queue with only `put`, `get`,
/// `is_empty` and `close`.
///
/// The same shared-memory queue as [`Queue`] underneath (Python's is a bare pipe with
/// locks); it exists for programs that port Python code using it.
///
/// ```
/// let q = multiproc::SimpleQueue::new()?;
/// q.put((1, "one".to_owned()))?;
/// assert_eq!(q.get()?, (1, "one".to_owned()));
/// assert!(q.is_empty());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> SimpleQueue<T> {
    /// A new queue.
    pub fn new() -> Result<SimpleQueue<T>> {
        Self::builder().build()
    }

    /// A builder, to set the buffer size.
    pub fn builder() -> QueueBuilder<SimpleQueue<T>> {
        QueueBuilder::new()
    }

    /// See [`Queue::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// See [`Queue::close`].
    pub fn close(&self) {
        self.queue.close();
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// See [`Queue::put`].
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put(item)
    }

    /// See [`Queue::get`].
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.queue.get()
    }
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("empty", &self.is_empty())
            .finish_non_exhaustive()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = RawQueue::from_wire(
            deserializer,
            type_hash::<T>(),
            std::any::type_name::<T>(),
            Flavor::Simple,
        )?;
        Ok(SimpleQueue {
            queue: Queue::from_raw(Arc::new(raw)),
        })
    }
}

/// Ready when the queue has an item or is closed.
impl<T> Waitable for SimpleQueue<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.queue.wait_fd()
    }

    fn __watch(&self) -> Option<&dyn Watch> {
        self.queue.__watch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            std::thread::spawn(move || q.get())
        };
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        assert!(waiter.join().unwrap().unwrap_err().is_closed());
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
    fn joinable() {
        let q: JoinableQueue<u8> = JoinableQueue::new().unwrap();
        assert_eq!(q.task_done().unwrap_err(), TaskDoneError);
        q.join();
        q.put(1).unwrap();
        q.put(2).unwrap();
        assert_eq!(q.unfinished_tasks(), 2);
        assert!(!q.join_timeout(Duration::from_millis(20)));
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.join())
        };
        q.get().unwrap();
        q.task_done().unwrap();
        q.get().unwrap();
        q.task_done().unwrap();
        waiter.join().unwrap();
        assert!(q.join_timeout(Duration::ZERO));
        assert!(q.task_done().is_err());
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
        let putter = {
            let q = q.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
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
