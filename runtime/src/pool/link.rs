//! How the pool reaches one worker: the [`Link`] interface, and [`LocalLink`], a
//! worker process on this machine fed through its own shared-memory queue.
//!
//! The pool needs little of a worker: hand it a packet of tasks without waiting, ask
//! it to stop, kill it, and learn when and how it ended. Results of every worker come
//! back through the pool's one result queue. Workers on other machines implement the
//! same interface over their connection (`remote`).

use std::os::fd::{AsFd, BorrowedFd};

use crate::error::Result;
use crate::ipc::queue::{Queue, TryPutError};
use crate::pool::message::{FromWorker, Item, Packet};
use crate::pool::worker::{PoolWorker, WorkerArgs};
use crate::process::handle::{Process, Sentinel};
use crate::sync::RawArray;

/// Why a packet could not be handed to a worker.
#[derive(Debug)]
pub(crate) enum SendFail {
    /// The worker's queue has no room now; try again after it returned results.
    Full,
    /// The worker is gone or its queue refused the packet.
    Gone(String),
    /// This worker can never take these tasks (they hold handles, and the worker is
    /// on another machine): they fail with this message.
    Refused(String),
}

/// One worker, as the pool sees it.
pub(crate) trait Link: Send {
    /// Hands `packet` to the worker without waiting.
    fn send(&self, packet: Packet) -> std::result::Result<(), SendFail>;
    /// Asks the worker to finish once it has run the tasks it was sent.
    fn stop(&self);
    /// Ends the worker at once.
    fn kill(&self);
    /// The worker's exit code once it has ended (reaping it); `None` while it runs.
    fn exitcode(&self) -> Option<i32>;
    /// Waits for the worker to end.
    fn join(&self);
    /// Ready once the worker has ended.
    fn sentinel(&self) -> Sentinel;
    /// The worker's name (`SpawnPoolWorker-N`).
    fn name(&self) -> &str;
    /// The worker's process id, if it has one on this machine.
    fn pid(&self) -> Option<u32>;
    /// The node the worker runs on, if it is on another machine. Such a worker keeps
    /// no record of the task it runs: when it is lost, all its tasks are requeued.
    fn node(&self) -> Option<&str> {
        None
    }
}

/// What every local worker of one pool shares.
#[derive(Clone)]
pub(crate) struct LocalSetup {
    pub(crate) results: Queue<FromWorker>,
    pub(crate) slots: RawArray<u64>,
    pub(crate) maxtasks: Option<u64>,
    pub(crate) init: Option<(&'static str, std::sync::Arc<Item>)>,
    /// How the workers start; the program's start method if `None`.
    pub(crate) start_method: Option<crate::process::start::StartMethod>,
}

/// A worker process on this machine with its own task queue.
pub(crate) struct LocalLink {
    process: Process,
    tasks: Queue<Packet>,
    sentinel: Sentinel,
    name: String,
    pid: Option<u32>,
}

/// Each worker's task queue holds at most this many bytes of tasks; a larger task goes
/// into a shared region of its own.
const TASK_BUFFER: usize = 1 << 20;

impl LocalLink {
    /// Starts worker process number `slot`.
    pub(crate) fn start(setup: &LocalSetup, slot: u32) -> Result<LocalLink> {
        let tasks: Queue<Packet> = Queue::builder().buffer_size(TASK_BUFFER).build()?;
        let init = match &setup.init {
            Some((key, item)) => {
                let (bytes, fds) = item.to_parts()?;
                Some((
                    (*key).to_owned(),
                    Item {
                        bytes: crate::pool::message::Bytes(bytes.to_vec()),
                        fds: fds
                            .into_iter()
                            .map(crate::os::fd::PortableFd::new)
                            .collect(),
                    },
                ))
            }
            None => None,
        };
        let args = WorkerArgs {
            tasks: tasks.clone(),
            results: setup.results.clone(),
            slots: setup.slots.clone(),
            slot,
            maxtasks: setup.maxtasks,
            init,
        };
        let mut process = Process::from_worker::<PoolWorker>((args,)).with_daemon(true)?;
        if let Some(method) = setup.start_method {
            process.set_start_method(method)?;
        }
        process.start()?;
        let sentinel = process.sentinel()?;
        Ok(LocalLink {
            name: process.name(),
            pid: process.pid(),
            process,
            tasks,
            sentinel,
        })
    }
}

impl Link for LocalLink {
    fn send(&self, packet: Packet) -> std::result::Result<(), SendFail> {
        match self.tasks.try_put(packet) {
            Ok(()) => Ok(()),
            Err(TryPutError::Full(_)) => Err(SendFail::Full),
            Err(e) => Err(SendFail::Gone(e.to_string())),
        }
    }

    fn stop(&self) {
        // Closing the queue ends the worker's wait for tasks once it has run the
        // ones already in it.
        self.tasks.close();
    }

    fn kill(&self) {
        let _ = self.process.kill();
    }

    fn exitcode(&self) -> Option<i32> {
        self.process.exitcode()
    }

    fn join(&self) {
        if let Err(e) = self.process.join() {
            log::warn!("cannot join {}: {e}", self.name);
        }
    }

    fn sentinel(&self) -> Sentinel {
        self.sentinel.clone()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }
}

impl AsFd for LocalLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sentinel.as_fd()
    }
}
