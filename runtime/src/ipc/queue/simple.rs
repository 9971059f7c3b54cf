//! [`SimpleQueue`]: Python's `SimpleQueue`, a [`Queue`] with fewer operations.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::raw::{Flavor, RawQueue};
use super::{GetError, PutError, Queue, QueueBuilder, type_hash};
use crate::error::Result;
use crate::ipc::wait::{Waitable, Watch};

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
    pub(super) queue: Queue<T>,
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
