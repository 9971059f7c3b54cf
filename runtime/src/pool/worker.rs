//! The worker's side: the internal worker every pool process runs, its task loop, and
//! the per-worker state that tasks share.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ipc::queue::{Queue, TryGetError};
use crate::pool::message::{
    FromWorker, Item, Packet, PieceResult, Status, TaskMsg, TaskResult, ToWorker,
};
use crate::process::registry::{self, Entry, Outcome as EntryOutcome};
use crate::process::worker::{Failure, Worker};
use crate::sync::RawArray;
use crate::wire::codec;
use crate::wire::frames::Frame;

/// Results are sent when this many are waiting, ...
const FLUSH_COUNT: usize = 256;
/// ... when the first has waited this long, and at once when the worker waits for
/// tasks.
const FLUSH_AFTER: Duration = Duration::from_micros(200);

/// The bit of a slot word that says its task is running (the rest is the task id).
pub(crate) const RUNNING: u64 = 1;

/// What a pool worker process is given.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) tasks: Queue<Packet>,
    pub(crate) results: Queue<FromWorker>,
    /// One word per worker slot: the id of the task the worker runs or ran last.
    pub(crate) slots: RawArray<u64>,
    pub(crate) slot: u32,
    pub(crate) maxtasks: Option<u64>,
    /// The initializer's registry key and arguments.
    pub(crate) init: Option<(String, Item)>,
}

/// The worker every pool process runs. Not public API.
#[derive(Debug)]
pub(crate) struct PoolWorker;

impl Worker for PoolWorker {
    type Args = (WorkerArgs,);
    type Output = ();
    const KEY: &'static str = "multiproc::pool::worker";
    const KIND: &'static str = "SpawnPoolWorker";

    fn call((args,): Self::Args) -> Result<(), Failure> {
        run(args);
        Ok(())
    }
}

registry::register_builtin_worker!(PoolWorker);

thread_local! {
    /// Set while a task runs on this thread: the panic hook then records, not prints.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// What the hook recorded of the task's panic: message and location.
    static CAUGHT: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_TASK.with(Cell::get) {
                let payload = info.payload();
                let message = match payload.downcast_ref::<&str>() {
                    Some(s) => (*s).to_owned(),
                    None => payload
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "Box<dyn Any>".to_owned()),
                };
                let location = info.location().map(ToString::to_string);
                CAUGHT.with(|c| *c.borrow_mut() = Some((message, location)));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` as a task: a panic becomes `Err((message, location))`. A payload that is
/// not a panic (the unwinding of [`exit`](crate::exit)) continues to unwind, so that
/// the worker process exits as asked.
fn run_guarded<T>(f: impl FnOnce() -> T) -> Result<T, (String, Option<String>)> {
    CAUGHT.with(|c| c.borrow_mut().take());
    // Guards nest (each item of a chunk inside the chunk's): restore, not clear.
    let outer = IN_TASK.with(|t| t.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    IN_TASK.with(|t| t.set(outer));
    match outcome {
        Ok(value) => Ok(value),
        Err(payload) => match CAUGHT.with(|c| c.borrow_mut().take()) {
            Some(caught) => {
                drop_quietly(payload);
                Err(caught)
            }
            None => panic::resume_unwind(payload),
        },
    }
}

/// Drops a panic payload, whose own `Drop` may panic.
fn drop_quietly(payload: Box<dyn Any + Send>) {
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
}

/// The item's descriptors, fresh, with its bytes, as a frame for the registry.
fn frame_of(item: Item) -> std::io::Result<Frame> {
    let fds = item
        .fds
        .iter()
        .map(|fd| fd.try_clone_owned())
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(item.fds);
    Ok(Frame {
        bytes: item.bytes.0.into(),
        fds,
    })
}

/// Runs one piece of a task (an encoded `Vec` of argument tuples) item by item, each
/// under its own panic guard.
fn run_piece(entry: Result<&'static Entry, &str>, piece: Item) -> PieceResult {
    let entry = match entry {
        Ok(entry) => entry,
        Err(message) => return PieceResult::All(Status::Failed(message.to_owned())),
    };
    let frame = match frame_of(piece) {
        Ok(frame) => frame,
        Err(e) => {
            return PieceResult::All(Status::Failed(format!("cannot receive the arguments: {e}")));
        }
    };
    let mut guard = |call: &mut dyn FnMut()| run_guarded(call);
    // The outer guard catches a panic outside the items' calls (a value's
    // `Serialize`, say): then the whole piece fails with it.
    match run_guarded(|| entry.run_chunk(frame, &mut guard)) {
        Ok(Ok(chunk)) => PieceResult::Done {
            statuses: chunk.statuses,
            values: Item::from_encoded(chunk.values),
        },
        Ok(Err(message)) => PieceResult::All(Status::Failed(message)),
        Err((message, location)) => PieceResult::All(Status::Panic { message, location }),
    }
}

/// Runs the initializer: `Err(message)` if it failed.
fn run_init(entry: Result<&'static Entry, &str>, item: Item) -> Result<(), String> {
    let entry = entry.map_err(str::to_owned)?;
    let frame = frame_of(item).map_err(|e| format!("cannot receive the arguments: {e}"))?;
    match run_guarded(move || entry.run(frame)) {
        Ok(EntryOutcome::Value(_)) => Ok(()),
        Ok(EntryOutcome::Failed(message)) => Err(message),
        Err((message, location)) => Err(match location {
            Some(location) => format!("panicked at {location}: {message}"),
            None => format!("panicked: {message}"),
        }),
    }
}

/// The worker's results on their way to the pool: the task loop leaves them here and
/// a sending thread puts them on the result queue in batches, lingering briefly for
/// more, so that a result never waits behind the next (maybe long) task.
struct Outbox {
    state: Mutex<OutState>,
    cond: Condvar,
}

#[derive(Default)]
struct OutState {
    waiting: Vec<TaskResult>,
    /// Send now: the task loop is about to wait for tasks.
    urgent: bool,
    /// Send what is left, then end.
    closing: bool,
    /// The result queue refused a batch: the pool is gone.
    broken: bool,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves a result; `false` if the pool is gone.
    fn push(&self, result: TaskResult) -> bool {
        let mut st = self.lock();
        if st.broken {
            return false;
        }
        st.waiting.push(result);
        let wake = st.waiting.len() == 1 || st.waiting.len() >= FLUSH_COUNT;
        drop(st);
        if wake {
            self.cond.notify_one();
        }
        true
    }

    /// Asks for what waits to be sent now.
    fn hurry(&self) {
        let mut st = self.lock();
        if !st.waiting.is_empty() {
            st.urgent = true;
            drop(st);
            self.cond.notify_one();
        }
    }

    fn close(&self) {
        self.lock().closing = true;
        self.cond.notify_one();
    }

    /// The sending thread.
    fn send_loop(&self, send: &mut SendResults, slot: u32) {
        loop {
            let mut st = self.lock();
            while st.waiting.is_empty() && !st.closing {
                st = self.cond.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            if st.waiting.is_empty() {
                return;
            }
            let deadline = Instant::now() + FLUSH_AFTER;
            while !st.urgent && !st.closing && st.waiting.len() < FLUSH_COUNT {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = self
                    .cond
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let batch = std::mem::take(&mut st.waiting);
            st.urgent = false;
            drop(st);
            if let Err(e) = send(FromWorker::Results {
                slot,
                results: batch,
            }) {
                log::debug!("pool worker cannot send results: {e}");
                self.lock().broken = true;
                return;
            }
        }
    }
}

/// Where a worker's tasks come from: its queue, or its connection to the pool.
pub(crate) trait Tasks {
    /// The next packet if one is there now: `Ok(None)` if not, `Err(())` once the pool
    /// is gone or has no more tasks for this worker.
    fn try_next(&mut self) -> Result<Option<Packet>, ()>;
    /// Waits for the next packet; `None` once the pool is gone or has no more.
    fn next(&mut self) -> Option<Packet>;
}

impl Tasks for Queue<Packet> {
    fn try_next(&mut self) -> Result<Option<Packet>, ()> {
        match self.try_get() {
            Ok(packet) => Ok(Some(packet)),
            Err(TryGetError::Empty) => Ok(None),
            Err(_) => Err(()),
        }
    }

    fn next(&mut self) -> Option<Packet> {
        self.get().ok()
    }
}

/// Sends one message to the pool; `Err` once the pool is gone.
pub(crate) type SendResults = Box<dyn FnMut(FromWorker) -> Result<(), String> + Send>;

fn run(mut args: WorkerArgs) {
    let word: &AtomicU64 = match args.slots.atomic(args.slot as usize * 2) {
        Ok(word) => word,
        Err(e) => {
            log::warn!("pool worker has no slot: {e}");
            return;
        }
    };
    let results = args.results.clone();
    let send: SendResults =
        Box::new(move |message| results.put(message).map_err(|e| e.to_string()));
    let (slot, maxtasks, init) = (args.slot, args.maxtasks, args.init.take());
    serve(slot, maxtasks, init, word, &mut args.tasks, send);
}

/// Runs a pool worker: the initializer, then tasks from `tasks` until they end, the
/// pool is gone, or `maxtasks` have run; results go through `send` from a thread of
/// their own. `word` is where the worker says which task it runs.
pub(crate) fn serve(
    slot: u32,
    maxtasks: Option<u64>,
    init: Option<(String, Item)>,
    word: &AtomicU64,
    tasks: &mut dyn Tasks,
    mut send: SendResults,
) {
    install_panic_hook();
    if let Some((key, item)) = init {
        let entry = registry::lookup(&key).map_err(|e| e.to_string());
        let outcome = run_init(entry.as_ref().map(|e| *e).map_err(String::as_str), item);
        if let Err(message) = outcome {
            let _ = send(FromWorker::InitFailed { slot, message });
            return;
        }
    }
    let outbox = Arc::new(Outbox {
        state: Mutex::new(OutState::default()),
        cond: Condvar::new(),
    });
    let sending = {
        let outbox = outbox.clone();
        std::thread::Builder::new()
            .name("multiproc-pool-results".into())
            .spawn(move || outbox.send_loop(&mut send, slot))
    };
    let sending = match sending {
        Ok(handle) => handle,
        Err(e) => {
            log::warn!("pool worker cannot start its sending thread: {e}");
            return;
        }
    };
    work(tasks, maxtasks, word, &outbox);
    outbox.close();
    let _ = sending.join();
}

/// The task loop: runs tasks until they end, the pool is gone, or the worker has run
/// `maxtasks` tasks.
fn work(tasks: &mut dyn Tasks, maxtasks: Option<u64>, word: &AtomicU64, outbox: &Outbox) {
    let mut entries: HashMap<u32, Result<&'static Entry, String>> = HashMap::new();
    let mut done: u64 = 0;
    loop {
        let packet = match tasks.try_next() {
            Ok(Some(packet)) => packet,
            Ok(None) => {
                outbox.hurry();
                match tasks.next() {
                    Some(packet) => packet,
                    None => return,
                }
            }
            Err(()) => return,
        };
        let message = packet
            .fds
            .iter()
            .map(|fd| fd.try_clone_owned())
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| e.to_string())
            .and_then(|fds| {
                codec::decode::<ToWorker>(&packet.bytes.0, fds).map_err(|e| e.to_string())
            });
        let (keys, tasks) = match message {
            Ok(ToWorker::Batch { keys, tasks }) => (keys, tasks),
            Err(e) => {
                // The pool cannot be wrong about its own messages; leave, so that it
                // sees a lost worker rather than tasks that never end.
                log::warn!("pool worker cannot read its tasks: {e}");
                return;
            }
        };
        for (index, key) in keys {
            entries.insert(index, registry::lookup(&key).map_err(|e| e.to_string()));
        }
        for TaskMsg { id, key, items } in tasks {
            let entry = match entries.get(&key) {
                Some(Ok(entry)) => Ok(*entry),
                Some(Err(message)) => Err(message.as_str()),
                None => Err("the pool sent a task for an unknown worker"),
            };
            word.store((id << 1) | RUNNING, Ordering::Release);
            let start = Instant::now();
            let pieces: Vec<PieceResult> = items.into_iter().map(|i| run_piece(entry, i)).collect();
            let now = Instant::now();
            word.store(id << 1, Ordering::Release);
            let nanos = u64::try_from(now.duration_since(start).as_nanos()).unwrap_or(u64::MAX);
            done += 1;
            if !outbox.push(TaskResult { id, nanos, pieces }) {
                return;
            }
            if maxtasks == Some(done) {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Per-worker state

type StateMap = HashMap<TypeId, &'static (dyn Any + Send + Sync)>;

fn states() -> &'static Mutex<StateMap> {
    static STATES: OnceLock<Mutex<StateMap>> = OnceLock::new();
    STATES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Stores `value` as this process's state of type `T`, for every later task of this
/// worker to read with [`worker_state`]; gives it back if a `T` is stored already.
///
/// Call it from the pool's [initializer](crate::PoolBuilder::initializer), which runs
/// once in each worker process before its tasks: build the expensive value there (a
/// model, a connection, a large table) and every task of that worker uses it. The
/// value lives until the process ends; it needs no `Serialize`, since it never leaves
/// the process. One value per type: wrap it in a type of your own to keep several.
///
/// ```
/// use multiproc::{Pool, set_worker_state, worker_state};
///
/// struct Model {
///     weights: Vec<u64>,
/// }
///
/// #[multiproc::worker]
/// fn load(scale: u64) {
///     let weights = (0..1000).map(|i| i * scale).collect();
///     // Built once per worker process.
///     let _ = set_worker_state(Model { weights });
/// }
///
/// #[multiproc::worker]
/// fn predict(i: usize) -> u64 {
///     let model = worker_state::<Model>().expect("the initializer stores the model");
///     model.weights[i]
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::builder().processes(2).initializer::<load>((3,)).build()?;
///     assert_eq!(pool.map::<predict>([1, 10, 100])?, [3, 30, 300]);
///     Ok(())
/// }
/// ```
pub fn set_worker_state<T: Any + Send + Sync>(value: T) -> Result<(), T> {
    let mut map = states().lock().unwrap_or_else(PoisonError::into_inner);
    if map.contains_key(&TypeId::of::<T>()) {
        return Err(value);
    }
    let leaked: &'static T = Box::leak(Box::new(value));
    map.insert(TypeId::of::<T>(), leaked);
    Ok(())
}

/// This process's state of type `T`, stored by [`set_worker_state`] (or
/// [`worker_state_or_init`]); `None` if there is none.
pub fn worker_state<T: Any + Send + Sync>() -> Option<&'static T> {
    let map = states().lock().unwrap_or_else(PoisonError::into_inner);
    let value: &'static (dyn Any + Send + Sync) = *map.get(&TypeId::of::<T>())?;
    value.downcast_ref::<T>()
}

/// This process's state of type `T`, built with `init` by the first task that asks
/// for it in each worker process (no initializer needed).
///
/// `init` runs without a lock held; if two threads of one process race, one value is
/// kept and the other dropped.
///
/// ```
/// use multiproc::{Pool, worker_state_or_init};
///
/// struct Table(Vec<u64>);
///
/// #[multiproc::worker]
/// fn lookup(i: usize) -> u64 {
///     let table = worker_state_or_init(|| Table((0..100).map(|x| x * x).collect()));
///     table.0[i]
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::new(2)?;
///     assert_eq!(pool.map::<lookup>([2, 3])?, [4, 9]);
///     Ok(())
/// }
/// ```
pub fn worker_state_or_init<T: Any + Send + Sync>(init: impl FnOnce() -> T) -> &'static T {
    if let Some(value) = worker_state::<T>() {
        return value;
    }
    let _ = set_worker_state(init());
    match worker_state::<T>() {
        Some(value) => value,
        // Stored just above, and never removed.
        None => unreachable!("the worker state of this type was just stored"),
    }
}
