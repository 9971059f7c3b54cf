//! What the pool's handle, its submitters and its thread share: the pool's [`State`]
//! (its tasks and worker slots) behind [`Shared`]; the submitters' side (submit, close,
//! terminate, wait); and the dispatch of tasks to workers. The pool's thread reads
//! results in `results`, watches workers in `supervise` and runs in `lifecycle`, all
//! on top of this module.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ipc::queue::Queue;
use crate::ipc::wait::Waitable;
use crate::launch::Launcher;
use crate::launch::slurm::{Slurm, Step};
use crate::os::fd::PortableFd;
use crate::os::sys;
use crate::pool::error::{PoolError, TaskError};
use crate::pool::job::Job;
use crate::pool::link::{Link, LocalLink, LocalSetup, SendFail};
use crate::pool::message::{Bytes, FromWorker, Item, Packet, TaskRef, ToWorkerRef};
use crate::pool::remote::{RemoteArgs, RemoteLink, RemotePoolWorker};
use crate::process::worker::Worker;
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
    pub(super) id: u64,
    key: u32,
    items: Vec<Item>,
    /// How many argument tuples each piece holds.
    pub(super) lens: Vec<usize>,
    /// How many in all.
    pub(super) len: usize,
    pub(super) job: Arc<Job>,
    pub(super) index: usize,
    /// Workers on other machines lost while they held this task.
    pub(super) tries: u32,
}

impl Task {
    pub(super) fn fail(self, error: &TaskError) {
        self.job.fail(self.index, self.len, error);
    }
}

/// One worker slot.
pub(super) struct WorkerSlot {
    pub(super) link: Box<dyn Link>,
    /// Handed out, not yet answered, in the order the worker runs them.
    pub(super) outstanding: VecDeque<Task>,
    /// Tasks handed out in all (for `maxtasksperchild`).
    sent: u64,
    /// The worker keys this worker has been told about.
    known: Vec<bool>,
    /// Its queue had no room; no more tasks until it answers.
    pub(super) full: bool,
    /// The running task as last seen, and since when.
    pub(super) running: Option<(u64, Instant)>,
    /// The task it was killed for running too long.
    pub(super) timed_out: Option<u64>,
    /// It has sent results.
    pub(super) answered: bool,
}

pub(crate) struct State {
    pub(crate) phase: Phase,
    pub(super) pending: VecDeque<Task>,
    pub(super) workers: Vec<Option<WorkerSlot>>,
    keys: Vec<&'static str>,
    next_id: u64,
    /// Open lazy submissions (`imap` iterators whose input is not exhausted).
    pub(super) lazy: usize,
    /// Average task length in nanoseconds (0: not known yet).
    pub(super) nanos: f64,
    /// The initializer failed: every task fails with this.
    pub(super) broken: Option<TaskError>,
    pub(super) oom_kills: Option<u64>,
    /// Workers in a row that ended before they sent any result.
    pub(super) early_deaths: usize,
    /// Replacements of lost remote workers on their way.
    pub(super) replacing: usize,
}

/// An eventfd that wakes the pool's thread.
pub(super) struct Bell(pub(super) OwnedFd);

impl Waitable for Bell {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Everything the pool's handle, its submitters and its thread share.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(super) stopped: Condvar,
    pub(super) results: Queue<FromWorker>,
    pub(super) bell: Bell,
    pub(super) setup: LocalSetup,
    pub(crate) processes: usize,
    pub(super) task_timeout: Option<Duration>,
    /// The launcher of workers on other machines, and its steps.
    pub(super) remote: Option<RemoteSetup>,
    /// This, for the threads that start replacements of remote workers.
    pub(super) me: Weak<Shared>,
}

/// How a pool's workers on other machines were started.
pub(super) struct RemoteSetup {
    pub(super) slurm: Slurm,
    /// The `srun` of each step started (the first, then one per replacement).
    pub(super) steps: Mutex<Vec<Step>>,
}

impl RemoteSetup {
    /// Ends the steps, giving each `grace` to end by itself.
    pub(super) fn finish(&self, grace: Duration) {
        let steps: Vec<Step> = self
            .steps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for step in steps {
            step.finish(grace);
        }
    }
}

impl Shared {
    /// Starts `processes` workers; the pool's thread is started by the caller.
    pub(crate) fn start(
        processes: usize,
        maxtasks: Option<u64>,
        task_timeout: Option<Duration>,
        init: Option<(&'static str, Item)>,
        launcher: Launcher,
        start_method: Option<crate::process::start::StartMethod>,
    ) -> Result<Arc<Shared>> {
        crate::pool::worker::keep_registered();
        crate::pool::remote::keep_registered();
        let results: Queue<FromWorker> = Queue::new()?;
        let slots = crate::sync::RawArray::<u64>::zeroed(processes * 2)?;
        let setup = LocalSetup {
            results: results.clone(),
            slots,
            maxtasks,
            init: init.map(|(key, item)| (key, Arc::new(item))),
            start_method,
        };
        let (workers, remote) = match launcher {
            Launcher::Local => (start_local(&setup, processes)?, None),
            Launcher::Slurm(slurm) => {
                let (workers, step) = start_remote(&setup, &slurm, 0, processes, None)?;
                let steps = Mutex::new(vec![step]);
                (
                    workers,
                    Some(RemoteSetup {
                        slurm: *slurm,
                        steps,
                    }),
                )
            }
        };
        let bell = Bell(sys::eventfd()?);
        Ok(Arc::new_cyclic(|me| Shared {
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
                replacing: 0,
            }),
            stopped: Condvar::new(),
            results,
            bell,
            setup,
            processes,
            task_timeout,
            remote,
            me: me.clone(),
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn ring(&self) {
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
                tries: 0,
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
    pub(super) fn dispatch(&self, st: &mut State) {
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
                Err(SendFail::Refused(message)) => {
                    let error = TaskError::failed(message);
                    for task in batch {
                        task.fail(&error);
                    }
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
}

/// Starts `processes` local workers.
fn start_local(setup: &LocalSetup, processes: usize) -> Result<Vec<Option<WorkerSlot>>> {
    let mut workers = Vec::with_capacity(processes);
    for slot in 0..processes {
        match LocalLink::start(setup, slot as u32) {
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
    Ok(workers)
}

/// Starts `count` workers with `slurm` for the slots from `first` on (away from node
/// `exclude`), and returns them with their step.
pub(super) fn start_remote(
    setup: &LocalSetup,
    slurm: &Slurm,
    first: usize,
    count: usize,
    exclude: Option<&str>,
) -> Result<(Vec<Option<WorkerSlot>>, Step)> {
    let init = match &setup.init {
        Some((key, item)) if !item.fds.is_empty() => {
            return Err(TaskError::failed(format!(
                "the initializer `{key}` of a pool on other machines cannot take handles"
            ))
            .into());
        }
        Some((key, item)) => Some(((*key).to_owned(), item.bytes.clone())),
        None => None,
    };
    let replacement;
    let slurm = match exclude {
        Some(_) => {
            replacement = slurm.replacement(exclude);
            &replacement
        }
        None => slurm,
    };
    let mut args = |rank: usize| -> Result<codec::Encoded> {
        let args = RemoteArgs {
            slot: (first + rank) as u32,
            maxtasks: setup.maxtasks,
            init: init.clone().map(|(key, bytes)| {
                (
                    key,
                    Item {
                        bytes,
                        fds: Vec::new(),
                    },
                )
            }),
        };
        Ok(codec::encode(&(args,))?)
    };
    let started = slurm.start(
        RemotePoolWorker::KEY,
        RemotePoolWorker::KIND,
        count,
        &mut args,
    )?;
    let mut workers = Vec::with_capacity(count);
    for (rank, worker) in started.workers.into_iter().enumerate() {
        let link = RemoteLink::new(
            worker,
            (first + rank) as u32,
            setup.results.clone(),
            slurm.heartbeat(),
        )?;
        workers.push(Some(WorkerSlot::new(Box::new(link))));
    }
    Ok((workers, started.step))
}

impl WorkerSlot {
    pub(super) fn new(link: Box<dyn Link>) -> Self {
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
pub(super) fn oom_kills() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let events =
        std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.events", path.trim_end())).ok()?;
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}
