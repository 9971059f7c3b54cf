//! The results workers send back: read from the pool's result queue and delivered to
//! the jobs that wait on them.

use std::sync::Arc;

use crate::ipc::queue::TryGetError;
use crate::pool::error::TaskError;
use crate::pool::job::{ItemResult, Value};
use crate::pool::message::{FromWorker, PieceResult, Status, TaskResult};
use crate::pool::shared::{Shared, State};

/// An item's result from its status.
fn item_error(status: Status) -> TaskError {
    match status {
        Status::Panic { message, location } => TaskError::panic(message, location),
        Status::Failed(message) => TaskError::failed(message),
        Status::Value => TaskError::failed("the worker sent no value for this item".to_owned()),
    }
}

impl Shared {
    /// Reads every result waiting in the queue; how many messages there were.
    pub(super) fn drain_results(&self) -> usize {
        let mut n = 0;
        loop {
            match self.results.try_get() {
                Ok(message) => {
                    n += 1;
                    self.on_message(message);
                }
                Err(TryGetError::Empty | TryGetError::Closed) => return n,
                Err(TryGetError::Failed(e)) => {
                    log::warn!("pool cannot read a result: {e}");
                    n += 1;
                }
            }
        }
    }

    fn on_message(&self, message: FromWorker) {
        let mut st = self.lock();
        match message {
            FromWorker::Results { slot, results } => {
                self.on_results(&mut st, slot as usize, results);
            }
            FromWorker::InitFailed { slot, message } => {
                let worker = st
                    .workers
                    .get(slot as usize)
                    .and_then(Option::as_ref)
                    .map_or_else(|| format!("worker {slot}"), |w| w.link.name().to_owned());
                log::warn!("the pool's initializer failed in {worker}: {message}");
                let error = TaskError::initializer(worker, message);
                for task in st.pending.drain(..) {
                    task.fail(&error);
                }
                st.broken = Some(error);
            }
        }
        self.dispatch(&mut st);
    }

    fn on_results(&self, st: &mut State, slot: usize, results: Vec<TaskResult>) {
        let Some(Some(w)) = st.workers.get_mut(slot) else {
            return;
        };
        w.answered = true;
        let mut nanos = st.nanos;
        for result in results {
            let Some(pos) = w.outstanding.iter().position(|t| t.id == result.id) else {
                continue;
            };
            let Some(task) = w.outstanding.remove(pos) else {
                continue;
            };
            w.full = false;
            let sample = result.nanos as f64;
            nanos = if nanos == 0.0 {
                sample.max(1.0)
            } else {
                (nanos * 0.9 + sample * 0.1).max(1.0)
            };
            let mut outcomes: Vec<ItemResult> = Vec::with_capacity(task.len);
            let mut pieces = result.pieces.into_iter();
            for &n in &task.lens {
                let start = outcomes.len();
                match pieces.next() {
                    Some(PieceResult::Done { statuses, values }) => {
                        let blob = Arc::new(values);
                        let mut k = 0;
                        for status in statuses.into_iter().take(n) {
                            outcomes.push(match status {
                                Status::Value => {
                                    k += 1;
                                    Ok(Value {
                                        blob: blob.clone(),
                                        k: k - 1,
                                    })
                                }
                                status => Err(item_error(status)),
                            });
                        }
                    }
                    Some(PieceResult::All(status)) => {
                        let error = item_error(status);
                        outcomes.extend((0..n).map(|_| Err(error.clone())));
                    }
                    None => {}
                }
                while outcomes.len() < start + n {
                    outcomes.push(Err(TaskError::failed(
                        "the worker sent no outcome for this item".to_owned(),
                    )));
                }
            }
            task.job.deliver(task.index, outcomes);
        }
        st.nanos = nanos;
    }
}
