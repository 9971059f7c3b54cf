//! The iterator of `imap` and `imap_unordered`: reads its input lazily and yields one
//! result per task, from the [`Job`] the pool's thread fills.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError};

use serde::de::DeserializeOwned;

use crate::pool::error::TaskError;
use crate::pool::job::{Job, Slot, decode_item};
use crate::pool::message::Item;
use crate::pool::shared::Shared;
use crate::wire::error::CodecError;

/// The iterator of [`Pool::imap`](crate::Pool::imap) and
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered): one `Result` per input item,
/// in input order (`imap`) or as tasks finish (`imap_unordered`).
///
/// It reads its input only as tasks are handed out, keeping a bounded number of items
/// submitted but not yet yielded, so an endless input works and memory stays bounded.
/// A failed task is yielded as its [`TaskError`] and the iteration goes on.
///
/// # Length
///
/// It is an [`ExactSizeIterator`] whose length is the number of results still to come
/// when the input's [`size_hint`](Iterator::size_hint) is exact (ranges, vectors,
/// slices, maps over them), so progress-bar adaptors such as `indicatif`'s
/// `ProgressIterator::progress` show progress. For an input of unknown length,
/// [`len`](ExactSizeIterator::len) is a lower bound.
///
/// # Caveats
///
/// An open iterator keeps the pool's workers after [`close`](crate::Pool::close):
/// [`join`](crate::Pool::join) waits until it is exhausted or dropped.
pub struct Imap<'a, R> {
    pool: Arc<Shared>,
    job: Arc<Job>,
    input: Option<Input<'a>>,
    key: &'static str,
    chunksize: usize,
    window: usize,
    submitted: usize,
    yielded: usize,
    unordered: bool,
    _output: PhantomData<fn() -> R>,
}

/// The input of an [`Imap`], each item encoded as it is read (as a one-element `Vec`).
pub(crate) type Input<'a> = Box<dyn Iterator<Item = std::result::Result<Item, CodecError>> + 'a>;

impl<'a, R> Imap<'a, R> {
    /// Registers a lazy submission with the pool (which must be running).
    pub(crate) fn new(
        pool: Arc<Shared>,
        input: Input<'a>,
        key: &'static str,
        chunksize: usize,
        window: usize,
        unordered: bool,
    ) -> Self {
        Imap {
            pool,
            job: Job::new(0, unordered),
            input: Some(input),
            key,
            chunksize,
            window,
            submitted: 0,
            yielded: 0,
            unordered,
            _output: PhantomData,
        }
    }

    fn input_done(&mut self) {
        if self.input.take().is_some() {
            self.pool.lazy_done();
        }
    }

    /// Submits tasks while fewer than the window are in flight.
    fn top_up(&mut self) {
        while self.submitted - self.yielded < self.window {
            let Some(input) = self.input.as_mut() else {
                return;
            };
            let mut chunk = Vec::with_capacity(self.chunksize);
            let mut failures = Vec::new();
            for item in input.by_ref().take(self.chunksize) {
                match item {
                    Ok(item) => chunk.push((item, 1)),
                    // An argument that cannot be encoded fails its own item only.
                    Err(e) => failures.push((chunk.len() + failures.len(), e)),
                }
            }
            let n = chunk.len() + failures.len();
            if n == 0 {
                self.input_done();
                return;
            }
            let index = self.submitted;
            self.job.extend(n);
            self.submitted += n;
            for (offset, e) in &failures {
                let error = TaskError::failed(format!("cannot send the task's arguments: {e}"));
                self.job.fail(index + offset, 1, &error);
            }
            if failures.is_empty() {
                if self
                    .pool
                    .submit(self.key, vec![chunk], &self.job, index, true)
                    .is_err()
                {
                    self.job.fail(index, n, &TaskError::terminated());
                    self.input_done();
                }
            } else {
                // Keep positions right: submit the encodable items one by one.
                let failed: Vec<usize> = failures.iter().map(|(o, _)| *o).collect();
                let mut items = chunk.into_iter();
                for offset in (0..n).filter(|o| !failed.contains(o)) {
                    let Some(item) = items.next() else { break };
                    if self
                        .pool
                        .submit(self.key, vec![vec![item]], &self.job, index + offset, true)
                        .is_err()
                    {
                        self.job.fail(index + offset, 1, &TaskError::terminated());
                    }
                }
            }
        }
    }
}

impl<R: DeserializeOwned> Iterator for Imap<'_, R> {
    type Item = std::result::Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.top_up();
        let mut st = self.job.lock();
        loop {
            let index = if self.unordered {
                st.order.as_mut().and_then(VecDeque::pop_front)
            } else {
                let ready = matches!(st.slots.front(), Some(Slot::Done(_)));
                ready.then_some(self.yielded)
            };
            if let Some(index) = index {
                let pos = index - st.base;
                let slot = st
                    .slots
                    .get_mut(pos)
                    .map(|s| std::mem::replace(s, Slot::Taken));
                while matches!(st.slots.front(), Some(Slot::Taken)) {
                    st.slots.pop_front();
                    st.base += 1;
                }
                drop(st);
                self.yielded += 1;
                return match slot {
                    Some(Slot::Done(result)) => Some(decode_item(&result)),
                    _ => Some(Err(TaskError::terminated())),
                };
            }
            if self.yielded == self.submitted {
                self.input.as_ref()?;
                // Nothing in flight (the window is full of taken items): submit more.
                drop(st);
                self.top_up();
                if self.submitted == self.yielded {
                    return None;
                }
                st = self.job.lock();
                continue;
            }
            st.waiting = true;
            st.cursor = self.yielded;
            st = self
                .job
                .cond
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.waiting = false;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let in_flight = self.submitted - self.yielded;
        match &self.input {
            None => (in_flight, Some(in_flight)),
            Some(input) => {
                let (lo, hi) = input.size_hint();
                (
                    in_flight.saturating_add(lo),
                    hi.and_then(|hi| hi.checked_add(in_flight)),
                )
            }
        }
    }
}

impl<R: DeserializeOwned> ExactSizeIterator for Imap<'_, R> {
    fn len(&self) -> usize {
        self.size_hint().0
    }
}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        if self.input.take().is_some() {
            self.pool.lazy_done();
        }
    }
}

impl<R> fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .field("unordered", &self.unordered)
            .finish_non_exhaustive()
    }
}
