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
use crate::pool::shared::{Phase, Shared, State, WorkerSlot, oom_kills, start_remote};
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

    /// A worker on another machine ended: it keeps no record of the task it ran, so
    /// all the tasks it held go back to the front of the queue, each until it has lost
    /// `retries` + 1 workers; a replacement is asked for, away from `node`.
    fn on_remote_loss(&self, st: &mut State, slot: usize, w: WorkerSlot, node: String) {
        let retries = self.remote.as_ref().map_or(0, |r| r.slurm.retry_limit());
        let name = w.link.name().to_owned();
        if !w.outstanding.is_empty() {
            log::warn!(
                "pool lost {name} on node {node} holding {} task(s): requeued",
                w.outstanding.len()
            );
        }
        let mut requeue = Vec::new();
        for mut task in w.outstanding {
            task.tries += 1;
            if task.tries > retries {
                let tries = task.tries;
                task.fail(&TaskError::lost(Lost {
                    worker: name.clone(),
                    pid: None,
                    exitcode: None,
                    oom: false,
                    unsent: false,
                    node: Some(node.clone()),
                    tries,
                }));
            } else {
                requeue.push(task);
            }
        }
        for task in requeue.into_iter().rev() {
            st.pending.push_front(task);
        }
        let wanted = match st.phase {
            Phase::Running => st.broken.is_none(),
            Phase::Closed => st.broken.is_none() && (!st.pending.is_empty() || st.lazy > 0),
            Phase::Terminating | Phase::Stopped => false,
        };
        if wanted {
            self.replace_remote(st, slot, node.clone());
        }
        self.check_all_lost(st, &format!("the last, {name} on node {node}, was lost"));
    }

    /// Fails the pending tasks if no worker is left and none is on its way.
    fn check_all_lost(&self, st: &mut State, last: &str) {
        let none_left = st.workers.iter().all(Option::is_none) && st.replacing == 0;
        if none_left && st.broken.is_none() && matches!(st.phase, Phase::Running | Phase::Closed) {
            let error = TaskError::broken(format!("every worker of the pool is gone ({last})"));
            log::error!("{error}");
            for task in st.pending.drain(..) {
                task.fail(&error);
            }
            st.broken = Some(error);
        }
    }

    /// Starts a replacement for the remote worker of `slot` on a thread of its own
    /// (Slurm may take a while), away from `node`.
    fn replace_remote(&self, st: &mut State, slot: usize, node: String) {
        if self.remote.is_none() {
            return;
        }
        let me = self.me.clone();
        st.replacing += 1;
        let spawned = std::thread::Builder::new()
            .name("multiproc-pool-replace".into())
            .spawn(move || {
                let Some(shared) = me.upgrade() else { return };
                let Some(remote) = &shared.remote else { return };
                let started = start_remote(&shared.setup, &remote.slurm, slot, 1, Some(&node));
                let mut st = shared.lock();
                st.replacing -= 1;
                let wanted = matches!(st.phase, Phase::Running | Phase::Closed)
                    && st.broken.is_none()
                    && st.workers.get(slot).is_some_and(Option::is_none);
                match started {
                    Ok((mut workers, step)) => {
                        remote
                            .steps
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(step);
                        match workers.pop().flatten() {
                            Some(w) if wanted => {
                                log::info!(
                                    "pool replaced the worker of slot {slot} with {}",
                                    w.link.name()
                                );
                                st.workers[slot] = Some(w);
                            }
                            Some(w) => w.link.kill(),
                            None => {}
                        }
                    }
                    Err(e) => {
                        log::warn!("pool cannot replace its lost worker on {node}: {e}");
                        shared.check_all_lost(&mut st, &format!("no replacement: {e}"));
                    }
                }
                shared.dispatch(&mut st);
                drop(st);
                shared.ring();
            });
        if let Err(e) = spawned {
            st.replacing -= 1;
            log::warn!("pool cannot start a replacement: {e}");
        }
    }

    fn on_exit(&self, st: &mut State, slot: usize) {
        let Some(w) = st.workers.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let Some(node) = w.link.node().map(str::to_owned) {
            self.on_remote_loss(st, slot, w, node);
            return;
        }
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
                node: None,
                tries: 1,
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
        if self.remote.is_some() {
            // Remote replacements are started when a worker is lost, and take time.
            return;
        }
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
