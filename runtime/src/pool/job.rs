//! What a submission waits on: a [`Job`] collects the results of its tasks; an
//! [`AsyncResult`] reads a finished job (an [`Imap`](crate::Imap) reads one as results
//! arrive).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::pool::error::{PoolError, TaskError};
use crate::pool::message::Item;
use crate::wire::codec;
use crate::wire::error::CodecError;

pub(crate) type ItemResult = std::result::Result<Value, TaskError>;

/// One item's value: number `k` of the values its piece sent as one encoded `Vec`
/// (shared by the items of that piece).
#[derive(Debug, Clone)]
pub(crate) struct Value {
    pub(crate) blob: Arc<Item>,
    pub(crate) k: usize,
}

/// Decodes every value of one piece.
fn decode_blob<T: DeserializeOwned>(blob: &Item) -> std::result::Result<Vec<T>, TaskError> {
    let decoded = blob
        .to_parts()
        .map_err(|e| CodecError::new(crate::wire::error::CodecErrorKind::Decode, e.to_string()))
        .and_then(|(bytes, fds)| codec::decode::<Vec<T>>(bytes, fds));
    decoded.map_err(|e| TaskError::failed(format!("cannot receive the task's value: {e}")))
}

fn missing() -> TaskError {
    TaskError::failed("the worker sent fewer values than it said".to_owned())
}

/// One item's place in a job.
pub(super) enum Slot {
    Pending,
    Done(ItemResult),
    Taken,
}

/// The results of one submission, filled in by the pool as its tasks finish.
pub(crate) struct Job {
    state: Mutex<JobState>,
    pub(super) cond: Condvar,
}

pub(crate) struct JobState {
    /// Item `base + i` is `slots[i]`.
    pub(super) slots: VecDeque<Slot>,
    pub(super) base: usize,
    /// Items finished (delivered), and items submitted.
    pub(super) finished: usize,
    pub(super) submitted: usize,
    /// Indices in the order they finished (only for unordered reading).
    pub(super) order: Option<VecDeque<usize>>,
    /// A reader waits for item `cursor` (or, unordered, for any).
    pub(super) waiting: bool,
    pub(super) cursor: usize,
}

impl Job {
    pub(crate) fn new(items: usize, unordered: bool) -> Arc<Job> {
        Arc::new(Job {
            state: Mutex::new(JobState {
                slots: (0..items).map(|_| Slot::Pending).collect(),
                base: 0,
                finished: 0,
                submitted: items,
                order: unordered.then(VecDeque::new),
                waiting: false,
                cursor: 0,
            }),
            cond: Condvar::new(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for `n` more items (a lazy job's next tasks).
    pub(super) fn extend(&self, n: usize) {
        let mut st = self.lock();
        st.slots.extend((0..n).map(|_| Slot::Pending));
        st.submitted += n;
    }

    /// Records the results of the items from `index` on.
    pub(crate) fn deliver(&self, index: usize, results: impl IntoIterator<Item = ItemResult>) {
        let mut st = self.lock();
        let mut wake = false;
        for (i, result) in (index..).zip(results) {
            let Some(pos) = i.checked_sub(st.base) else {
                continue;
            };
            match st.slots.get_mut(pos) {
                Some(slot @ Slot::Pending) => *slot = Slot::Done(result),
                _ => continue,
            }
            st.finished += 1;
            if let Some(order) = &mut st.order {
                order.push_back(i);
            }
            wake |= st.waiting && (st.order.is_some() || i == st.cursor);
        }
        wake |= st.finished == st.submitted;
        drop(st);
        if wake {
            self.cond.notify_all();
        }
    }

    /// Fails `n` items from `index` on with `error`.
    pub(crate) fn fail(&self, index: usize, n: usize, error: &TaskError) {
        self.deliver(index, (0..n).map(|_| Err(error.clone())));
    }

    fn is_complete(st: &JobState) -> bool {
        st.finished == st.submitted
    }

    /// Waits until every submitted item finished, or `deadline`; whether they did.
    fn wait_complete(&self, deadline: Option<Instant>) -> (MutexGuard<'_, JobState>, bool) {
        let mut st = self.lock();
        while !Self::is_complete(&st) {
            match deadline {
                None => st = self.cond.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return (st, false);
                    }
                    st = self
                        .cond
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        (st, true)
    }
}

/// Decodes one item's value.
pub(crate) fn decode_item<T: DeserializeOwned>(
    result: &ItemResult,
) -> std::result::Result<T, TaskError> {
    let value = result.as_ref().map_err(Clone::clone)?;
    // Pieces of one item (`imap`, `apply_async`) decode as fast as the value alone.
    decode_blob::<T>(&value.blob)?
        .into_iter()
        .nth(value.k)
        .ok_or_else(missing)
}

fn done_results(st: &JobState) -> impl Iterator<Item = &ItemResult> {
    st.slots.iter().filter_map(|slot| match slot {
        Slot::Done(result) => Some(result),
        _ => None,
    })
}

/// Reads every item of a finished job: the values in order, or the first error.
pub(crate) fn decode_all<T: DeserializeOwned>(st: &JobState) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(st.slots.len());
    // The first failure by position wins, even when a value after it fails to decode.
    if let Some(Err(e)) = done_results(st).find(|r| r.is_err()) {
        return Err(Error::Task(e.clone()));
    }
    // Each piece's values are decoded once, as one `Vec`, and taken in order.
    let mut piece: Option<(*const Item, std::vec::IntoIter<T>, usize)> = None;
    for result in done_results(st) {
        let value = result.as_ref().map_err(Clone::clone)?;
        let blob = Arc::as_ptr(&value.blob);
        let (values, next) = match &mut piece {
            Some((p, values, next)) if *p == blob && *next == value.k => (values, next),
            _ => {
                let mut values = decode_blob::<T>(&value.blob)?.into_iter();
                if value.k > 0 {
                    values.nth(value.k - 1);
                }
                let (_, values, next) = piece.insert((blob, values, value.k));
                (values, next)
            }
        };
        out.push(values.next().ok_or_else(missing)?);
        *next += 1;
    }
    Ok(out)
}

/// Reads the one item of a finished job.
pub(crate) fn decode_one<T: DeserializeOwned>(st: &JobState) -> Result<T> {
    match done_results(st).next() {
        Some(result) => Ok(decode_item(result)?),
        None => Err(Error::Task(TaskError::terminated())),
    }
}

/// The result of a task submitted with [`Pool::apply_async`](crate::Pool::apply_async)
/// (or of all tasks of [`map_async`](crate::Pool::map_async) and
/// [`starmap_async`](crate::Pool::starmap_async)): Python's `AsyncResult`.
///
/// It stays valid after the pool is closed, joined or dropped: a pool that is
/// terminated before the task finished makes its result a [`TaskError`] whose
/// [`is_terminated`](TaskError::is_terminated) is true, so a `get` never waits forever.
///
/// ```
/// use std::time::Duration;
/// use multiproc::Pool;
///
/// #[multiproc::worker]
/// fn sqr(x: u64) -> u64 { x * x }
///
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::new(2)?;
///     let r = pool.apply_async::<sqr>((7,))?;
///     assert_eq!(r.get()?, 49);
///     assert!(r.ready());
///     assert!(r.successful()?);
///     let all = pool.map_async::<sqr>(0..4)?;
///     assert!(all.wait_timeout(Duration::from_secs(10)));
///     assert_eq!(all.get()?, [0, 1, 4, 9]);
///     Ok(())
/// }
/// ```
pub struct AsyncResult<R> {
    job: Arc<Job>,
    decode: fn(&JobState) -> Result<R>,
}

impl<R> AsyncResult<R> {
    pub(crate) fn new(job: Arc<Job>, decode: fn(&JobState) -> Result<R>) -> Self {
        AsyncResult { job, decode }
    }

    /// Waits for the result and returns it: the value, or the task's failure as
    /// [`Error::Task`]. Can be called again; each call decodes the value anew.
    pub fn get(&self) -> Result<R> {
        let (st, _) = self.job.wait_complete(None);
        (self.decode)(&st)
    }

    /// As [`get`](Self::get), waiting at most `timeout`: [`PoolError::Timeout`] if the
    /// result is not ready by then (Python's `TimeoutError`).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        let deadline = crate::os::sys::deadline_after(timeout);
        match self.job.wait_complete(Some(deadline)) {
            (st, true) => (self.decode)(&st),
            (_, false) => Err(Error::Pool(PoolError::Timeout)),
        }
    }

    /// Whether the result is ready (the task finished, one way or another).
    pub fn ready(&self) -> bool {
        Job::is_complete(&self.job.lock())
    }

    /// Whether the task gave a value rather than an error; [`PoolError::NotReady`]
    /// before it finished, as in Python.
    pub fn successful(&self) -> Result<bool> {
        let st = self.job.lock();
        if !Job::is_complete(&st) {
            return Err(Error::Pool(PoolError::NotReady));
        }
        Ok(done_results(&st).all(|r| r.is_ok()))
    }

    /// Waits until the result is ready.
    pub fn wait(&self) {
        drop(self.job.wait_complete(None));
    }

    /// Waits at most `timeout` for the result; whether it is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = crate::os::sys::deadline_after(timeout);
        self.job.wait_complete(Some(deadline)).1
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}
