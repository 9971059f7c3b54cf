//! The pool's engine: the state shared by the pool's handle, its submitters and its
//! thread; the dispatch of tasks to workers; and the thread that collects results,
//! watches workers, replaces dead ones and shuts the pool down.
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

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use crate::error::{Error, Result};
use crate::ipc::queue::{Queue, TryGetError};
use crate::ipc::wait::{Waitable, wait};
use crate::os::fd::PortableFd;
use crate::os::sys;
use crate::pool::error::{Lost, PoolError, TaskError};
use crate::pool::job::{ItemResult, Job, Value};
use crate::pool::link::{Link, LocalLink, LocalSetup, SendFail};
use crate::pool::message::{
    Bytes, FromWorker, Item, Packet, PieceResult, Status, TaskRef, TaskResult, ToWorkerRef,
};
use crate::pool::worker::RUNNING;
use crate::process::handle::Sentinel;
use crate::wire::codec;

/// Tasks handed to one worker and not yet answered, when nothing is known of their
/// length yet.
const FIRST_WINDOW: usize = 2;
/// The most tasks handed to one worker ahead of its results.
const MAX_WINDOW: usize = 1024;
/// A worker is given about this much work (by the measured task length) ahead.
const AHEAD: f64 = 2e6;
/// One packet of tasks carries about this many bytes of arguments at most.
const BATCH_BYTES: usize = 256 << 10;
/// After this many workers in a row ended before they sent a result, the pool stops
/// replacing them (twice the pool's size if larger).
const EARLY_DEATHS: usize = 8;
/// Workers are checked this often while results keep the thread busy.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// Where the pool is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    Closed,
    Terminating,
    Stopped,
}

/// One task: one chunk of argument tuples for one worker type, in pieces (each an
/// encoded `Vec` of argument tuples).
pub(crate) struct Task {
    id: u64,
    key: u32,
    items: Vec<Item>,
    /// How many argument tuples each piece holds.
    lens: Vec<usize>,
    /// How many in all.
    len: usize,
    job: Arc<Job>,
    index: usize,
}

impl Task {
    fn fail(self, error: &TaskError) {
        self.job.fail(self.index, self.len, error);
    }
}

/// An item's result from its status.
fn item_error(status: Status) -> TaskError {
    match status {
        Status::Panic { message, location } => TaskError::panic(message, location),
        Status::Failed(message) => TaskError::failed(message),
        Status::Value => TaskError::failed("the worker sent no value for this item".to_owned()),
    }
}

/// One worker slot.
struct WorkerSlot {
    link: Box<dyn Link>,
    /// Handed out, not yet answered, in the order the worker runs them.
    outstanding: VecDeque<Task>,
    /// Tasks handed out in all (for `maxtasksperchild`).
    sent: u64,
    /// The worker keys this worker has been told about.
    known: Vec<bool>,
    /// Its queue had no room; no more tasks until it answers.
    full: bool,
    /// The running task as last seen, and since when.
    running: Option<(u64, Instant)>,
    /// The task it was killed for running too long.
    timed_out: Option<u64>,
    /// It has sent results.
    answered: bool,
}

pub(crate) struct State {
    pub(crate) phase: Phase,
    pending: VecDeque<Task>,
    workers: Vec<Option<WorkerSlot>>,
    keys: Vec<&'static str>,
    next_id: u64,
    /// Open lazy submissions (`imap` iterators whose input is not exhausted).
    lazy: usize,
    /// Average task length in nanoseconds (0: not known yet).
    nanos: f64,
    /// The initializer failed: every task fails with this.
    broken: Option<TaskError>,
    oom_kills: Option<u64>,
    /// Workers in a row that ended before they sent any result.
    early_deaths: usize,
}

/// An eventfd that wakes the pool's thread.
struct Bell(OwnedFd);

impl Waitable for Bell {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Everything the pool's handle, its submitters and its thread share.
pub(crate) struct Shared {
    state: Mutex<State>,
    stopped: Condvar,
    results: Queue<FromWorker>,
    bell: Bell,
    setup: LocalSetup,
    pub(crate) processes: usize,
    task_timeout: Option<Duration>,
}

impl Shared {
    /// Starts `processes` workers; the pool's thread is started by the caller.
    pub(crate) fn start(
        processes: usize,
        maxtasks: Option<u64>,
        task_timeout: Option<Duration>,
        init: Option<(&'static str, Item)>,
    ) -> Result<Arc<Shared>> {
        crate::pool::worker::keep_registered();
        let results: Queue<FromWorker> = Queue::new()?;
        let slots = crate::sync::RawArray::<u64>::zeroed(processes * 2)?;
        let setup = LocalSetup {
            results: results.clone(),
            slots,
            maxtasks,
            init: init.map(|(key, item)| (key, Arc::new(item))),
        };
        let mut workers = Vec::with_capacity(processes);
        for slot in 0..processes {
            match LocalLink::start(&setup, slot as u32) {
                Ok(link) => workers.push(Some(WorkerSlot::new(Box::new(link)))),
                Err(e) => {
                    for w in workers.iter().flatten() {
                        w.link.kill();
                        w.link.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Arc::new(Shared {
            state: Mutex::new(State {
                phase: Phase::Running,
                pending: VecDeque::new(),
                workers,
                keys: Vec::new(),
                next_id: 1,
                lazy: 0,
                nanos: 0.0,
                broken: None,
                oom_kills: oom_kills(),
                early_deaths: 0,
            }),
            stopped: Condvar::new(),
            results,
            bell: Bell(sys::eventfd()?),
            setup,
            processes,
            task_timeout,
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ring(&self) {
        if let Err(e) = sys::eventfd_signal(self.bell.0.as_fd()) {
            log::warn!("cannot wake the pool's thread: {e}");
        }
    }

    /// Queues the chunks of one submission for `key`, items numbered from `index`:
    /// one task per chunk, each of pieces (an encoded `Vec` of argument tuples, and
    /// how many it holds). `lazy`: from an open `imap`, which may go on after `close`.
    pub(crate) fn submit(
        &self,
        key: &'static str,
        chunks: Vec<Vec<(Item, usize)>>,
        job: &Arc<Job>,
        index: usize,
        lazy: bool,
    ) -> Result<()> {
        let mut st = self.lock();
        let open = st.phase == Phase::Running || (lazy && st.phase == Phase::Closed);
        if !open {
            return Err(Error::Pool(PoolError::NotRunning));
        }
        let key = match st.keys.iter().position(|k| *k == key) {
            Some(i) => i as u32,
            None => {
                st.keys.push(key);
                (st.keys.len() - 1) as u32
            }
        };
        let mut index = index;
        for pieces in chunks {
            let (items, lens): (Vec<Item>, Vec<usize>) = pieces.into_iter().unzip();
            let n = lens.iter().sum();
            let task = Task {
                id: st.next_id,
                key,
                items,
                lens,
                len: n,
                job: job.clone(),
                index,
            };
            st.next_id += 1;
            index += n;
            match &st.broken {
                Some(error) => task.fail(error),
                None => st.pending.push_back(task),
            }
        }
        self.dispatch(&mut st);
        Ok(())
    }

    /// Registers an open lazy submission.
    pub(crate) fn lazy_start(&self) -> Result<()> {
        let mut st = self.lock();
        if st.phase != Phase::Running {
            return Err(Error::Pool(PoolError::NotRunning));
        }
        st.lazy += 1;
        Ok(())
    }

    /// A lazy submission will submit nothing more.
    pub(crate) fn lazy_done(&self) {
        let mut st = self.lock();
        st.lazy = st.lazy.saturating_sub(1);
        if st.lazy == 0 && st.phase == Phase::Closed {
            drop(st);
            self.ring();
        }
    }

    pub(crate) fn close(&self) {
        let mut st = self.lock();
        if st.phase == Phase::Running {
            st.phase = Phase::Closed;
            drop(st);
            self.ring();
        }
    }

    pub(crate) fn terminate(&self) {
        let mut st = self.lock();
        if matches!(st.phase, Phase::Running | Phase::Closed) {
            st.phase = Phase::Terminating;
            drop(st);
            self.ring();
        }
    }

    /// Waits until the pool's thread has stopped every worker.
    pub(crate) fn wait_stopped(&self) {
        let mut st = self.lock();
        while st.phase != Phase::Stopped {
            st = self
                .stopped
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The process ids of the current workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let st = self.lock();
        st.workers
            .iter()
            .flatten()
            .filter_map(|w| w.link.pid())
            .collect()
    }

    /// Hands pending tasks to workers that have room.
    fn dispatch(&self, st: &mut State) {
        if st.pending.is_empty() {
            return;
        }
        let window = window(st.nanos);
        let State {
            pending,
            workers,
            keys,
            ..
        } = st;
        for w in workers.iter_mut().flatten() {
            if pending.is_empty() {
                break;
            }
            if w.full {
                continue;
            }
            let mut room = window.saturating_sub(w.outstanding.len());
            if let Some(max) = self.setup.maxtasks {
                room = room.min(usize::try_from(max.saturating_sub(w.sent)).unwrap_or(0));
            }
            if room == 0 {
                continue;
            }
            let mut take = 0;
            let mut bytes = 0;
            for task in pending.iter() {
                if take == room || (take > 0 && bytes >= BATCH_BYTES) {
                    break;
                }
                bytes += task.items.iter().map(|i| i.bytes.0.len()).sum::<usize>();
                take += 1;
            }
            let batch: Vec<Task> = pending.drain(..take).collect();
            let mut new_keys = Vec::new();
            for task in &batch {
                let k = task.key as usize;
                if w.known.len() <= k {
                    w.known.resize(k + 1, false);
                }
                if !w.known[k] && !new_keys.iter().any(|(i, _)| *i == task.key) {
                    new_keys.push((task.key, keys[k]));
                }
            }
            let message = ToWorkerRef::Batch {
                keys: new_keys.clone(),
                tasks: batch
                    .iter()
                    .map(|t| TaskRef {
                        id: t.id,
                        key: t.key,
                        items: &t.items,
                    })
                    .collect(),
            };
            let packet = match codec::encode(&message) {
                Ok(encoded) => Packet {
                    bytes: Bytes(encoded.bytes),
                    fds: encoded.fds.into_iter().map(PortableFd::new).collect(),
                },
                Err(e) => {
                    let error = TaskError::failed(format!("cannot send the task: {e}"));
                    for task in batch {
                        task.fail(&error);
                    }
                    continue;
                }
            };
            match w.link.send(packet) {
                Ok(()) => {
                    for (k, _) in new_keys {
                        w.known[k as usize] = true;
                    }
                    w.sent += batch.len() as u64;
                    w.outstanding.extend(batch);
                }
                Err(fail) => {
                    if let SendFail::Gone(e) = &fail {
                        log::debug!("cannot hand tasks to {}: {e}", w.link.name());
                    }
                    w.full = true;
                    for task in batch.into_iter().rev() {
                        pending.push_front(task);
                    }
                }
            }
        }
    }

    /// Reads every result waiting in the queue; how many messages there were.
    fn drain_results(&self) -> usize {
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

    /// Handles the workers that have ended.
    fn check_workers(&self) {
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
    fn refill(&self, st: &mut State) {
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
    fn check_timeouts(&self) {
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

    /// How long the thread may sleep: the timeout check's interval.
    fn nap(&self) -> Option<Duration> {
        self.task_timeout
            .map(|t| (t / 10).clamp(Duration::from_millis(1), Duration::from_millis(50)))
    }

    /// Shuts down if the phase says so; whether the thread should end.
    fn lifecycle(&self) -> bool {
        let mut st = self.lock();
        match st.phase {
            Phase::Running | Phase::Stopped => {
                self.refill(&mut st);
                st.phase == Phase::Stopped
            }
            Phase::Closed => {
                let idle = st.pending.is_empty()
                    && st.lazy == 0
                    && st
                        .workers
                        .iter()
                        .flatten()
                        .all(|w| w.outstanding.is_empty());
                if !idle {
                    self.refill(&mut st);
                    return false;
                }
                let workers: Vec<WorkerSlot> =
                    st.workers.iter_mut().filter_map(Option::take).collect();
                drop(st);
                for w in &workers {
                    w.link.stop();
                }
                for w in &workers {
                    w.link.join();
                }
                self.finish();
                true
            }
            Phase::Terminating => {
                let workers: Vec<WorkerSlot> =
                    st.workers.iter_mut().filter_map(Option::take).collect();
                let pending: Vec<Task> = st.pending.drain(..).collect();
                drop(st);
                for w in &workers {
                    w.link.kill();
                }
                for w in &workers {
                    w.link.join();
                }
                let error = TaskError::terminated();
                for task in pending {
                    task.fail(&error);
                }
                for w in workers {
                    for task in w.outstanding {
                        task.fail(&error);
                    }
                }
                self.finish();
                true
            }
        }
    }

    /// Stops the pool after its thread failed: kills the workers, fails every task.
    pub(crate) fn emergency_stop(&self) {
        {
            let mut st = self.lock();
            if st.phase == Phase::Stopped {
                return;
            }
            st.phase = Phase::Terminating;
        }
        self.lifecycle();
    }

    fn finish(&self) {
        let mut st = self.lock();
        // A submission that raced with the shutdown fails rather than waits.
        let error = TaskError::terminated();
        for task in st.pending.drain(..) {
            task.fail(&error);
        }
        st.phase = Phase::Stopped;
        drop(st);
        self.stopped.notify_all();
    }

    /// The pool's thread.
    pub(crate) fn run(self: Arc<Self>) {
        let mut last_check = Instant::now();
        loop {
            let got = self.drain_results();
            let now = Instant::now();
            if got == 0 || now.duration_since(last_check) >= CHECK_EVERY {
                self.check_workers();
                last_check = now;
            }
            self.check_timeouts();
            if self.lifecycle() {
                return;
            }
            if got > 0 {
                continue;
            }
            let sentinels: Vec<_> = {
                let st = self.lock();
                st.workers
                    .iter()
                    .flatten()
                    .map(|w| w.link.sentinel())
                    .collect()
            };
            let mut objects: Vec<&dyn Waitable> = vec![&self.results, &self.bell];
            objects.extend(sentinels.iter().map(|s| s as &dyn Waitable));
            match wait(&objects, self.nap()) {
                Ok(ready) => {
                    if ready.contains(&1) {
                        let _ = sys::eventfd_reset(self.bell.0.as_fd());
                    }
                }
                Err(e) => {
                    log::warn!("pool cannot wait: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

impl WorkerSlot {
    fn new(link: Box<dyn Link>) -> Self {
        WorkerSlot {
            link,
            outstanding: VecDeque::new(),
            sent: 0,
            known: Vec::new(),
            full: false,
            running: None,
            timed_out: None,
            answered: false,
        }
    }
}

/// How many tasks one worker is handed ahead, for tasks of `nanos` on average.
fn window(nanos: f64) -> usize {
    if nanos <= 0.0 {
        return FIRST_WINDOW;
    }
    ((AHEAD / nanos) as usize).clamp(1, MAX_WINDOW)
}

/// The OOM kill count of this process's cgroup (v2), from `memory.events`.
fn oom_kills() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let events =
        std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.events", path.trim_end())).ok()?;
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}
