//! [`QueueBuilder`]: the capacity and buffer size of a queue of any of the three
//! kinds, checked and applied when the queue is built.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::raw::{self, Flavor, RawQueue};
use super::{JoinableQueue, Queue, SimpleQueue, type_hash};
use crate::error::Result;

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
    pub(super) fn new() -> Self {
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
    ///
    /// A queue with a [`capacity`](Self::capacity) holds at most this many bytes of
    /// items too. A queue without one grows beyond it while items are unread (see
    /// [`Queue`]'s docs): the buffer is then the part of its memory that stays
    /// allocated when the queue is empty.
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
