//! The pool's watch over its workers: it notices the ones that ended, accounts for
//! the tasks they held, starts replacements, and kills workers whose task ran too long.
//!
//! # Why no task is ever lost without a word
//!
//! Each worker has its own task queue, and the pool keeps, per worker, the tasks it
//! handed out and has no result for yet (`outstanding`, in the order the worker runs
//! them). Before a worker runs a task it stores the task's id with a "running" bit in
//! its word of a shared array, and clears the bit when the task returned. When a
//! worker dies, everything it sent is already in the result queue (a `put` is complete
//! when it returns), so the pool first reads that, then looks at the dead worker's
//! word: the task it names was running (lost, or timed out) or finished without its
//! result being sent (lost too); the tasks before it in `outstanding` finished without
//! their results being sent (lost); the tasks after it never started and go back to
//! the front of the pending queue. A replacement worker starts in the same slot.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::poll::PollFlags;

use crate::os::sys;
use crate::pool::error::{Lost, TaskError};
use crate::pool::link::{Link, LocalLink};
use crate::pool::shared::{Phase, Shared, State, WorkerSlot, oom_kills};
use crate::pool::worker::RUNNING;
use crate::process::handle::Sentinel;

/// After this many workers in a row ended before they sent a result, the pool stops
/// replacing them (twice the pool's size if larger).
const EARLY_DEATHS: usize = 8;

impl Shared {
    /// Handles the workers that have ended.
    pub(super) fn check_workers(&self) {
        let ended: Vec<usize> = {
            let st = self.lock();
            let sentinels: Vec<(usize, Sentinel)> = st
                .workers
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.as_ref().map(|w| (i, w.link.sentinel())))
                .collect();
            drop(st);
            let fds: Vec<(usize, BorrowedFd<'_>)> =
                sentinels.iter().map(|(i, s)| (*i, s.as_fd())).collect();
            let polled = sys::poll_until(
                &fds.iter()
                    .map(|(_, fd)| (*fd, PollFlags::POLLIN))
                    .collect::<Vec<_>>(),
                Some(Instant::now()),
            );
            match polled {
                Ok(polled) => fds
                    .iter()
                    .zip(polled)
                    .filter(|(_, events)| !events.is_empty())
                    .map(|((i, _), _)| *i)
                    .collect(),
                Err(e) => {
                    log::warn!("pool cannot watch its workers: {e}");
                    Vec::new()
                }
            }
        };
        if ended.is_empty() {
            return;
        }
        // Whatever the ended workers sent is in the queue by now.
        self.drain_results();
        let mut st = self.lock();
        for slot in ended {
            self.on_exit(&mut st, slot);
        }
        self.dispatch(&mut st);
    }

    fn on_exit(&self, st: &mut State, slot: usize) {
        let Some(w) = st.workers.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let exitcode = w.link.exitcode();
        let word_cell = self.setup.slots.atomic(slot * 2).ok();
        let word = word_cell.map_or(0, |c| c.load(Ordering::Acquire));
        let (last, running) = (word >> 1, word & RUNNING != 0);
        let mut oom = false;
        if exitcode == Some(-9) {
            let now = oom_kills();
            oom = matches!((st.oom_kills, now), (Some(before), Some(now)) if now > before);
            if now.is_some() {
                st.oom_kills = now;
            }
        }
        if !w.outstanding.is_empty() {
            log::info!(
                "pool worker {} (pid {:?}) ended with exitcode {:?} holding {} task(s)",
                w.link.name(),
                w.link.pid(),
                exitcode,
                w.outstanding.len()
            );
        }
        let lost = |unsent: bool| {
            TaskError::lost(Lost {
                worker: w.link.name().to_owned(),
                pid: w.link.pid(),
                exitcode,
                oom,
                unsent,
            })
        };
        let held = w.outstanding.iter().position(|t| t.id == last);
        let mut requeue = Vec::new();
        for (i, task) in w.outstanding.into_iter().enumerate() {
            match held {
                Some(h) if i < h => task.fail(&lost(true)),
                Some(h) if i == h => {
                    if w.timed_out == Some(task.id) {
                        let timeout = self.task_timeout.unwrap_or_default();
                        let error =
                            TaskError::timeout(timeout, w.link.name().to_owned(), w.link.pid());
                        task.fail(&error);
                    } else {
                        task.fail(&lost(!running));
                    }
                }
                _ => requeue.push(task),
            }
        }
        for task in requeue.into_iter().rev() {
            st.pending.push_front(task);
        }
        if let Some(cell) = word_cell {
            cell.store(0, Ordering::Release);
        }
        if w.answered || w.timed_out.is_some() {
            st.early_deaths = 0;
        } else {
            st.early_deaths += 1;
            // A worker that cannot even start would be replaced forever: give up.
            if st.early_deaths >= EARLY_DEATHS.max(2 * st.workers.len()) && st.broken.is_none() {
                let mut exit = String::new();
                if let Some(code) = exitcode {
                    exit = format!(" (the last, {}, with exit code {code})", w.link.name());
                }
                let error = TaskError::broken(format!(
                    "{} workers in a row ended before they sent any result{exit}",
                    st.early_deaths
                ));
                log::error!("{error}");
                for task in st.pending.drain(..) {
                    task.fail(&error);
                }
                st.broken = Some(error);
            }
        }
        let wanted = match st.phase {
            Phase::Running => st.broken.is_none(),
            Phase::Closed => st.broken.is_none() && (!st.pending.is_empty() || st.lazy > 0),
            Phase::Terminating | Phase::Stopped => false,
        };
        if wanted {
            self.respawn(st, slot);
        }
    }

    fn respawn(&self, st: &mut State, slot: usize) {
        match LocalLink::start(&self.setup, slot as u32) {
            Ok(link) => {
                log::debug!("pool started {} in slot {slot}", link.name());
                st.workers[slot] = Some(WorkerSlot::new(Box::new(link)));
            }
            Err(e) => log::warn!("pool cannot start a worker: {e}"),
        }
    }

    /// Starts workers for empty slots (after a failed start), if the pool wants them.
    pub(super) fn refill(&self, st: &mut State) {
        let wanted = match st.phase {
            Phase::Running => st.broken.is_none(),
            Phase::Closed => st.broken.is_none() && !st.pending.is_empty(),
            _ => false,
        };
        if !wanted {
            return;
        }
        for slot in 0..st.workers.len() {
            if st.workers[slot].is_none() {
                self.respawn(st, slot);
            }
        }
    }

    /// Kills workers whose task has run longer than the task timeout.
    pub(super) fn check_timeouts(&self) {
        let Some(timeout) = self.task_timeout else {
            return;
        };
        let now = Instant::now();
        let mut st = self.lock();
        for (slot, w) in st.workers.iter_mut().enumerate() {
            let Some(w) = w else { continue };
            if w.outstanding.is_empty() || w.timed_out.is_some() {
                continue;
            }
            let word = self
                .setup
                .slots
                .atomic(slot * 2)
                .map_or(0, |c| c.load(Ordering::Acquire));
            if word & RUNNING == 0 {
                w.running = None;
                continue;
            }
            let id = word >> 1;
            match w.running {
                Some((seen, since)) if seen == id => {
                    if now.duration_since(since) >= timeout
                        && w.outstanding.iter().any(|t| t.id == id)
                    {
                        log::info!(
                            "pool worker {} ran a task longer than {timeout:?}: killing it",
                            w.link.name()
                        );
                        w.timed_out = Some(id);
                        w.link.kill();
                    }
                }
                _ => w.running = Some((id, now)),
            }
        }
    }
}
