//! [`Pool`]: Python's `multiprocessing.Pool` over `#[worker]` functions, on top of
//! [`process`](crate::process) and [`ipc`](crate::ipc).
//!
//! The engine, lowest first: `shared` (the state the handle, the submitters and the
//! pool's thread share, and the dispatch of tasks), `results` (what workers send
//! back), `supervise` (dead workers, replacements, task timeouts) and `lifecycle` (the
//! pool's thread and its shutdown). `link` is the interface through which the engine
//! reaches one worker, `worker` the worker's side and the per-worker state, `job` what
//! a submission waits on, `message` what crosses.

pub(crate) mod error;
mod imap;
mod job;
mod lifecycle;
mod link;
mod message;
mod remote;
mod results;
mod shared;
mod supervise;
pub(crate) mod worker;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

pub use error::{PoolError, TaskError};
pub use imap::Imap;
pub use job::AsyncResult;
pub use worker::{set_worker_state, worker_state, worker_state_or_init};

use crate::error::{Error, Result};
use crate::launch::Launcher;
use crate::process::context::cpu_count;
use crate::process::start::StartMethod;
use crate::process::worker::Worker;
use crate::wire::codec;
use crate::wire::error::CodecError;
use job::Job;
use message::Item;
use shared::{Phase, Shared};

/// How many tasks of `imap` one worker has in flight, in chunks.
const IMAP_WINDOW_PER_WORKER: usize = 256;

/// The argument tuple of a one-argument worker: `(A,)`. [`Pool::map`] and
/// [`Pool::imap`] take the bare `A` for such workers.
pub trait OneArg: private::Sealed {
    /// The argument.
    type Arg;
    /// The tuple holding `arg`.
    fn wrap(arg: Self::Arg) -> Self;
}

impl<A> OneArg for (A,) {
    type Arg = A;
    fn wrap(arg: A) -> (A,) {
        (arg,)
    }
}

mod private {
    pub trait Sealed {}
    impl<A> Sealed for (A,) {}
}

fn encode_args<T: Serialize + ?Sized>(args: &T) -> std::result::Result<Item, CodecError> {
    codec::encode(args).map(Item::from_encoded)
}

/// Python's default chunk size for `map`: `ceil(len / (4 * processes))`.
fn default_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(4 * processes.max(1)).max(1)
}

/// A pool of worker processes that run `#[worker]` functions: Python's
/// `multiprocessing.Pool`.
///
/// ```
/// use multiproc::Pool;
///
/// #[multiproc::worker]
/// fn sqr(x: u64) -> u64 { x * x }
///
/// #[multiproc::worker]
/// fn mul(x: u64, y: u64) -> u64 { x * y }
///
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::new(2)?;
///     assert_eq!(pool.map::<sqr>(0..5)?, [0, 1, 4, 9, 16]);
///     assert_eq!(pool.starmap::<mul>([(2, 3), (4, 5)])?, [6, 20]);
///     assert_eq!(pool.apply::<sqr>((7,))?, 49);
///     let mut total = 0;
///     for x in pool.imap_unordered::<sqr>(0..100)? {
///         total += x?;
///     }
///     assert_eq!(total, 328_350);
///     pool.close();
///     pool.join()?;
///     Ok(())
/// }
/// ```
///
/// # Workers
///
/// The workers are child processes named `SpawnPoolWorker-N` (as Python names the
/// workers of a spawn-context pool), daemonic, so they cannot start children, each
/// with its own task queue. The pool hands each worker a few tasks ahead (more when
/// tasks are short, as measured), and workers send results back in batches, so tiny
/// tasks do not pay a round trip each. A worker can be told to retire after
/// [`maxtasksperchild`](PoolBuilder::maxtasksperchild) tasks.
///
/// # Failures
///
/// A task that panics, returns `Err`, or whose worker dies gives a [`TaskError`] for
/// that task only: [`map`](Self::map) returns the first failing task's error (by
/// position, after every task has finished, as Python does), [`imap`](Self::imap)
/// yields it in its place and goes on. A worker killed at any moment (SIGKILL, the OOM
/// killer, [`task_timeout`](PoolBuilder::task_timeout)) fails only the task it was
/// running (and any it had finished without sending the result yet); the tasks it had
/// not started go to other workers, and a new worker takes its place, so the pool keeps
/// its size and nothing waits forever. (Python's `Pool.map` hangs in that case.)
///
/// # Shutting down
///
/// [`close`](Self::close) refuses new work and lets the workers finish what was
/// submitted, then exit; [`join`](Self::join) waits for that (and fails while the pool
/// still runs); [`terminate`](Self::terminate) kills the workers at once, and the
/// results that were not finished become errors.
///
/// # Caveats
///
/// Dropping a `Pool` terminates it, as leaving Python's `with Pool(...)` block does:
/// call `close` and `join` first to let submitted work finish. An [`AsyncResult`] or
/// [`Imap`] outlives the pool; once the pool is gone, its unfinished results are
/// errors. A chunk (see [`map_chunked`](Self::map_chunked)) whose worker dies is lost
/// as a whole.
pub struct Pool {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Pool {
    /// A pool of `processes` workers (0 is [`PoolError::NoProcesses`]).
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Configures a pool: [`PoolBuilder`].
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of workers the pool keeps.
    pub fn processes(&self) -> usize {
        self.shared.processes
    }

    /// The process ids of the pool's current workers (they change when a worker is
    /// replaced).
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    fn check_running(&self) -> Result<()> {
        match self.shared.lock().phase {
            Phase::Running => Ok(()),
            _ => Err(Error::Pool(PoolError::NotRunning)),
        }
    }

    /// Encodes `args` and submits them in chunks of `chunksize` (Python's default if
    /// `None`).
    fn submit_all<W: Worker>(
        &self,
        args: impl IntoIterator<Item = W::Args>,
        chunksize: Option<usize>,
    ) -> Result<Arc<Job>> {
        if chunksize == Some(0) {
            return Err(Error::Pool(PoolError::ChunkSize));
        }
        self.check_running()?;
        let args: Vec<W::Args> = args.into_iter().collect();
        let n = args.len();
        let job = Job::new(n, false);
        if n == 0 {
            return Ok(job);
        }
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(n, self.processes()));
        // A chunk's arguments travel as one encoded `Vec`, and its values come back so.
        let mut chunks = Vec::with_capacity(n.div_ceil(chunksize));
        for chunk in args.chunks(chunksize) {
            chunks.push(vec![(encode_args(chunk)?, chunk.len())]);
        }
        self.shared.submit(W::KEY, chunks, &job, 0, false)?;
        Ok(job)
    }

    /// Runs worker `W` on each item (the worker's one argument) and returns the
    /// results in input order, or the first failing task's error ([`Error::Task`])
    /// once all have finished.
    ///
    /// Items go to the workers in chunks of Python's default size,
    /// `ceil(len / (4 * processes))`; [`map_chunked`](Self::map_chunked) sets it.
    pub fn map<W>(
        &self,
        items: impl IntoIterator<Item = <W::Args as OneArg>::Arg>,
    ) -> Result<Vec<W::Output>>
    where
        W: Worker,
        W::Args: OneArg,
    {
        self.map_async::<W>(items)?.get()
    }

    /// [`map`](Self::map) with `chunksize` items per task (0 is
    /// [`PoolError::ChunkSize`]). A chunk is one task for a worker: larger chunks cost
    /// less per item, smaller ones spread uneven work better.
    pub fn map_chunked<W>(
        &self,
        items: impl IntoIterator<Item = <W::Args as OneArg>::Arg>,
        chunksize: usize,
    ) -> Result<Vec<W::Output>>
    where
        W: Worker,
        W::Args: OneArg,
    {
        let job = self.submit_all::<W>(items.into_iter().map(OneArg::wrap), Some(chunksize))?;
        AsyncResult::new(job, job::decode_all::<W::Output>).get()
    }

    /// [`map`](Self::map) without waiting: the results, in input order, come from
    /// the [`AsyncResult`].
    pub fn map_async<W>(
        &self,
        items: impl IntoIterator<Item = <W::Args as OneArg>::Arg>,
    ) -> Result<AsyncResult<Vec<W::Output>>>
    where
        W: Worker,
        W::Args: OneArg,
    {
        let job = self.submit_all::<W>(items.into_iter().map(OneArg::wrap), None)?;
        Ok(AsyncResult::new(job, job::decode_all::<W::Output>))
    }

    /// Runs worker `W` on each item, an argument tuple (`W::Args`): Python's
    /// `starmap`. Results in input order, or the first failing task's error.
    pub fn starmap<W: Worker>(
        &self,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        self.starmap_async::<W>(items)?.get()
    }

    /// [`starmap`](Self::starmap) without waiting.
    pub fn starmap_async<W: Worker>(
        &self,
        items: impl IntoIterator<Item = W::Args>,
    ) -> Result<AsyncResult<Vec<W::Output>>> {
        let job = self.submit_all::<W>(items, None)?;
        Ok(AsyncResult::new(job, job::decode_all::<W::Output>))
    }

    /// Runs worker `W` once with `args` and waits for its value: Python's `apply`.
    pub fn apply<W: Worker>(&self, args: W::Args) -> Result<W::Output> {
        self.apply_async::<W>(args)?.get()
    }

    /// Runs worker `W` once with `args`, without waiting: Python's `apply_async`.
    pub fn apply_async<W: Worker>(&self, args: W::Args) -> Result<AsyncResult<W::Output>> {
        let job = self.submit_all::<W>([args], Some(1))?;
        Ok(AsyncResult::new(job, job::decode_one::<W::Output>))
    }

    fn lazy<'a, W: Worker>(
        &self,
        items: impl Iterator<Item = W::Args> + 'a,
        chunksize: usize,
        unordered: bool,
    ) -> Result<Imap<'a, W::Output>> {
        if chunksize == 0 {
            return Err(Error::Pool(PoolError::ChunkSize));
        }
        self.shared.lazy_start()?;
        // Item by item (a one-element `Vec` each), so that an argument that cannot be
        // encoded fails its own item only.
        let input: imap::Input<'a> = Box::new(items.map(|a| encode_args(std::slice::from_ref(&a))));
        let window = IMAP_WINDOW_PER_WORKER * self.processes() * chunksize;
        Ok(Imap::new(
            self.shared.clone(),
            input,
            W::KEY,
            chunksize,
            window,
            unordered,
        ))
    }

    /// Runs worker `W` on each item, yielding `Result<W::Output, TaskError>` in input
    /// order as results arrive; a failure is yielded in its place and the iteration
    /// goes on. The input is read as tasks are handed out, with a bounded number in
    /// flight, so it may be endless; see [`Imap`].
    pub fn imap<'a, W>(
        &self,
        items: impl IntoIterator<Item = <W::Args as OneArg>::Arg> + 'a,
    ) -> Result<Imap<'a, W::Output>>
    where
        W: Worker,
        W::Args: OneArg,
    {
        self.lazy::<W>(items.into_iter().map(OneArg::wrap), 1, false)
    }

    /// [`imap`](Self::imap) with `chunksize` items per task (0 is
    /// [`PoolError::ChunkSize`]).
    pub fn imap_chunked<'a, W>(
        &self,
        items: impl IntoIterator<Item = <W::Args as OneArg>::Arg> + 'a,
        chunksize: usize,
    ) -> Result<Imap<'a, W::Output>>
    where
        W: Worker,
        W::Args: OneArg,
    {
        self.lazy::<W>(items.into_iter().map(OneArg::wrap), chunksize, false)
    }

    /// As [`imap`](Self::imap), but yields results as tasks finish, in any order.
    pub fn imap_unordered<'a, W>(
        &self,
        items: impl IntoIterator<Item = <W::Args as OneArg>::Arg> + 'a,
    ) -> Result<Imap<'a, W::Output>>
    where
        W: Worker,
        W::Args: OneArg,
    {
        self.lazy::<W>(items.into_iter().map(OneArg::wrap), 1, true)
    }

    /// [`imap_unordered`](Self::imap_unordered) with `chunksize` items per task.
    pub fn imap_unordered_chunked<'a, W>(
        &self,
        items: impl IntoIterator<Item = <W::Args as OneArg>::Arg> + 'a,
        chunksize: usize,
    ) -> Result<Imap<'a, W::Output>>
    where
        W: Worker,
        W::Args: OneArg,
    {
        self.lazy::<W>(items.into_iter().map(OneArg::wrap), chunksize, true)
    }

    /// Refuses further submissions ([`PoolError::NotRunning`]); the workers finish
    /// the work already submitted, then exit. Does nothing if the pool is closed or
    /// terminated already.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits for the workers to exit after [`close`](Self::close) or
    /// [`terminate`](Self::terminate); [`PoolError::StillRunning`] before either, as
    /// in Python. It also waits for open [`Imap`] iterators to be exhausted or
    /// dropped, since they may still submit work.
    pub fn join(&self) -> Result<()> {
        if self.shared.lock().phase == Phase::Running {
            return Err(Error::Pool(PoolError::StillRunning));
        }
        self.shared.wait_stopped();
        self.join_thread();
        Ok(())
    }

    /// Kills the workers at once, even in the middle of tasks, and returns when they
    /// are gone. Results not finished become [`TaskError`]s whose
    /// [`is_terminated`](TaskError::is_terminated) is true.
    pub fn terminate(&self) -> Result<()> {
        self.shared.terminate();
        self.shared.wait_stopped();
        self.join_thread();
        Ok(())
    }

    fn join_thread(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = self.shared.lock().phase;
        f.debug_struct("Pool")
            .field("processes", &self.processes())
            .field("state", &phase)
            .finish()
    }
}

/// Configures a [`Pool`]; [`build`](Self::build) checks the settings and starts it.
///
/// ```
/// use std::time::Duration;
/// use multiproc::Pool;
///
/// #[multiproc::worker]
/// fn setup(greeting: String) {
///     let _ = multiproc::set_worker_state(greeting);
/// }
///
/// #[multiproc::worker]
/// fn greet(name: String) -> String {
///     let greeting = multiproc::worker_state::<String>().cloned().unwrap_or_default();
///     format!("{greeting}, {name}")
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::builder()
///         .processes(2)
///         .initializer::<setup>(("hello".to_string(),))
///         .maxtasksperchild(100)
///         .task_timeout(Duration::from_secs(30))
///         .build()?;
///     assert_eq!(pool.map::<greet>(["ada".to_string()])?, ["hello, ada"]);
///     assert!(Pool::builder().processes(0).build().is_err());
///     Ok(())
/// }
/// ```
#[derive(Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<(&'static str, std::result::Result<Item, CodecError>)>,
    maxtasks: Option<usize>,
    task_timeout: Option<Duration>,
    launcher: Launcher,
    start_method: Option<StartMethod>,
}

impl PoolBuilder {
    /// Where the workers run: [`Launcher::Local`] (the default), or on the nodes of a
    /// cluster with [`Slurm`](crate::Slurm), whose number of workers then sets the
    /// pool's size (overriding [`processes`](Self::processes)).
    ///
    /// The pool works the same on either: tasks go to whichever worker is free, and
    /// `imap` reads its input as tasks are handed out. A worker on another machine
    /// that is lost (its connection drops, or it stops sending heartbeats) has all its
    /// tasks requeued on the others at once, each task at most
    /// [`retries`](crate::Slurm::retries) times before it fails with a [`TaskError`]
    /// naming the node; the pool asks Slurm for a replacement on another node. Task
    /// arguments and results cannot hold handles (queues, locks, shared memory) on
    /// such workers, and [`task_timeout`](Self::task_timeout) applies to local
    /// workers only.
    pub fn launcher(mut self, launcher: impl Into<Launcher>) -> Self {
        self.launcher = launcher.into();
        self
    }

    /// How the workers are started (Python's `Pool(context=get_context(method))`);
    /// the program's start method ([`set_start_method`](crate::set_start_method)) if
    /// not set. Applies to the workers that replace others too.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// The number of workers; [`cpu_count`] if not set. 0 is an error at `build`.
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = Some(processes);
        self
    }

    /// A worker run once in each worker process, with `args`, before that process
    /// runs any task (Python's `initializer` and `initargs`). Use it to build
    /// per-worker state with [`set_worker_state`]. If it fails (panics or returns
    /// `Err`) in a worker, the pool is broken: every task not yet started fails with a
    /// [`TaskError`] whose [`is_initializer`](TaskError::is_initializer) is true.
    pub fn initializer<W: Worker>(mut self, args: W::Args) -> Self {
        self.init = Some((W::KEY, encode_args(&args)));
        self
    }

    /// Each worker exits after this many tasks and a fresh one takes its place
    /// (Python's `maxtasksperchild`); 0 is an error at `build`. Unlimited if not set.
    pub fn maxtasksperchild(mut self, tasks: usize) -> Self {
        self.maxtasks = Some(tasks);
        self
    }

    /// A task running longer than `timeout` fails with a [`TaskError`] whose
    /// [`is_timeout`](TaskError::is_timeout) is true; its worker is killed and
    /// replaced. The check runs every tenth of the timeout (1 to 50 ms). A zero
    /// timeout is an error at `build`.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Checks the settings and starts the workers.
    pub fn build(self) -> Result<Pool> {
        let processes = match (&self.launcher, self.processes) {
            (Launcher::Slurm(slurm), _) if slurm.workers() == 0 => {
                return Err(Error::Pool(PoolError::NoProcesses));
            }
            (Launcher::Slurm(slurm), _) => slurm.workers(),
            (_, Some(0)) => return Err(Error::Pool(PoolError::NoProcesses)),
            (_, Some(n)) => n,
            (_, None) => cpu_count(),
        };
        if self.maxtasks == Some(0) {
            return Err(Error::Pool(PoolError::MaxTasksPerChild));
        }
        if self.task_timeout == Some(Duration::ZERO) {
            return Err(Error::Pool(PoolError::TaskTimeout));
        }
        let init = match self.init {
            Some((key, item)) => {
                crate::process::registry::lookup(key)?;
                Some((key, item?))
            }
            None => None,
        };
        let shared = Shared::start(
            processes,
            self.maxtasks.map(|k| k as u64),
            self.task_timeout,
            init,
            self.launcher,
            self.start_method,
        )?;
        let engine = shared.clone();
        let thread = std::thread::Builder::new()
            .name("multiproc-pool".into())
            .spawn(move || {
                let run = engine.clone();
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || run.run()))
                    .is_err()
                {
                    log::error!("the pool's thread panicked: terminating the pool");
                    engine.emergency_stop();
                }
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                shared.terminate();
                shared.emergency_stop();
                return Err(e.into());
            }
        };
        Ok(Pool {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.init.as_ref().map(|(key, _)| key))
            .field("maxtasksperchild", &self.maxtasks)
            .field("task_timeout", &self.task_timeout)
            .field("launcher", &self.launcher)
            .finish()
    }
}
