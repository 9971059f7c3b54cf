//! [`JoinableQueue`]: a [`Queue`] with Python's `task_done` and `join`; every other
//! operation is the queue's.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::raw::{Flavor, RawQueue};
use super::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, Queue, QueueBuilder, TaskDoneError,
    TryGetError, TryPutError, type_hash,
};
use crate::error::Result;
use crate::ipc::wait::{Waitable, Watch};
use crate::os::sys;

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
    pub(super) queue: Queue<T>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
