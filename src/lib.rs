//! Python's `multiprocessing`, for Rust.
//!
//! Declare a function `#[worker]` (or a struct `#[process]`), call the generated
//! `spawn`, and it runs in its own process: typed arguments in, a typed value back,
//! exit codes, daemons, timeouts, termination and logging as Python's module has them.
//!
//! ```
//! #[multiproc::worker]
//! fn greet(name: String, times: u32) {
//!     for _ in 0..times {
//!         log::info!("hello {name}");
//!     }
//! }
//!
//! #[multiproc::worker]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     multiproc::log_to_stderr(log::LevelFilter::Info);
//!     let p = greet::spawn("ada".into(), 3)?; // started at once, named "Process-1"
//!     let mut q = greet::process("bob".into(), 1); // configured, not started
//!     q.set_name("greeter");
//!     q.set_daemon(true)?;
//!     q.start()?;
//!     p.join()?;
//!     assert_eq!(p.exitcode(), Some(0));
//!     assert_eq!(square::spawn(7)?.join_value()?, 49);
//!     for child in multiproc::active_children() {
//!         child.join()?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Workers
//!
//! `#[worker]` keeps the function callable as before and adds a type of the same
//! name with two constructors: `f::spawn(args..)` starts a [`Process`] at once,
//! `f::process(args..)` returns it unstarted, to be named or made daemonic first. The
//! type implements [`Worker`], so generic code can name the worker by its type.
//!
//! Arguments and the return value cross the process boundary with serde (bincode
//! underneath), so they must be owned, `Serialize` and `DeserializeOwned`; the macro
//! rejects a borrowed argument, a generic or `async` function, or a `self` receiver at
//! compile time, pointing at the offending token. A worker returns `()`, a value (read
//! it with [`Process::join_value`]), or `Result<T, E>`: an `Err` ends the child with exit
//! code 1 and `E`'s `Debug` text on its stderr.
//!
//! # Processes as structs
//!
//! `#[process]` on a struct with named fields makes it a process in the style of a
//! Python `Process` subclass: the fields are its state, [`Run::run`] its body.
//!
//! ```
//! use multiproc::prelude::*;
//!
//! #[multiproc::process]
//! struct Counter {
//!     upto: u32,
//! }
//!
//! impl Run for Counter {
//!     fn run(&mut self) {
//!         let me = current_process();
//!         println!("{} counts to {}", me.name(), self.upto);
//!     }
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let p = Counter { upto: 3 }.into_process(); // named "Counter-1"
//!     p.start()?;
//!     assert_eq!(p.join()?, 0);
//!     Ok(())
//! }
//! ```
//!
//! # Exit codes, failures and misuse
//!
//! [`Process::exitcode`] is `None` while the child runs, `0` when the worker returned,
//! `1` when it panicked or returned `Err`, `n` after [`exit(n)`](exit), and `-signal`
//! after a signal ([`Process::terminate`] gives `-15`, [`Process::kill`] `-9`). A child
//! that panics prints `Process <name>:` and the panic on its stderr, as Python prints a
//! traceback, and [`Process::join_value`] returns a [`ChildError`] that carries the
//! message. Misusing a handle (starting twice, joining before the start, setting the
//! daemon flag after it, starting a child from a daemonic process) returns an
//! [`Error::Process`], never panics.
//!
//! ```
//! #[multiproc::worker]
//! fn boom() {
//!     panic!("boom");
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let p = boom::spawn()?; // its stderr shows "Process Process-1:" and the panic
//!     assert_eq!(p.join()?, 1);
//!     let err = p.join_value().unwrap_err();
//!     assert!(err.to_string().contains("boom"));
//!     assert!(p.start().is_err()); // cannot start a process twice
//!     Ok(())
//! }
//! ```
//!
//! # Queues and pipes
//!
//! [`Queue`] passes items between any number of processes, first in, first out;
//! [`JoinableQueue`] adds Python's `task_done` and `join`, and [`SimpleQueue`] is the
//! plain variant. A [`Pipe`] makes two connected [`Connection`]s. Items and messages are
//! any `Serialize + DeserializeOwned` type, and the handles are serializable
//! themselves: they travel as worker arguments, as `#[process]` fields, or inside
//! messages to processes that already run. [`wait`] watches connections, queues and
//! process sentinels together.
//!
//! ```
//! use multiproc::prelude::*;
//!
//! #[multiproc::worker]
//! fn square_all(tasks: JoinableQueue<Option<u64>>, results: Queue<u64>) -> multiproc::Result<()> {
//!     while let Some(x) = tasks.get()? {
//!         results.put(x * x)?;
//!         tasks.task_done()?;
//!     }
//!     tasks.task_done()?; // the `None` that stopped the loop
//!     Ok(())
//! }
//!
//! #[multiproc::worker]
//! fn echo(conn: Connection<String>) -> multiproc::Result<()> {
//!     while let Ok(line) = conn.recv() {
//!         conn.send(line)?;
//!     }
//!     Ok(()) // end of file: the other end is closed
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let tasks = JoinableQueue::new()?;
//!     let results = Queue::new()?;
//!     let workers = (0..2)
//!         .map(|_| square_all::spawn(tasks.clone(), results.clone()))
//!         .collect::<multiproc::Result<Vec<_>>>()?;
//!     for x in 1..=4 {
//!         tasks.put(Some(x))?;
//!     }
//!     for _ in &workers {
//!         tasks.put(None)?;
//!     }
//!     tasks.join(); // every task is done
//!     let mut squares = (0..4).map(|_| results.get()).collect::<Result<Vec<_>, _>>()?;
//!     squares.sort();
//!     assert_eq!(squares, [1, 4, 9, 16]);
//!
//!     let (ours, theirs) = Pipe::new()?;
//!     let e = echo::spawn(theirs)?; // the child's end moves to the child
//!     ours.send("ping".to_owned())?;
//!     assert_eq!(ours.recv()?, "ping");
//!     drop(ours);
//!     assert_eq!(e.join()?, 0);
//!     for w in workers {
//!         w.join()?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! How they work, and where they differ from Python's:
//!
//! - **Shared memory.** A queue is a ring buffer in a sealed `memfd` that every
//!   holder maps, with a producer lock and a consumer lock; `put` encodes the item and
//!   copies it in, `get` copies it out. No feeder thread: when `put` returns, the item
//!   is in the queue, so a child that put items exits at once (Python's waits until
//!   they are read). A pipe has such a ring per direction for small messages, beside a
//!   Unix socket that carries large messages and handles and tells when the other end
//!   is gone. Byte buffers move at memory speed when they serialize as bytes
//!   (`serde_bytes`); a plain `Vec<u8>` goes element by element through serde.
//! - **Waiting.** A waiter spins briefly, adapting to how often that pays, then sleeps
//!   in the kernel (a futex for a queue, the socket for a pipe); an idle queue or pipe
//!   costs nothing, and a pipe round trip between two busy processes takes about a
//!   microsecond instead of a socket's two wake-ups (tens of microseconds).
//! - **Deaths.** A producer or consumer killed at any moment, holding the queue's
//!   locks or not, never wedges the others, and nobody receives a torn or duplicated
//!   item; a pipe whose peer dies reports end of file ([`RecvError::Disconnected`]),
//!   never a hang. Python's queue can deadlock in both cases.
//! - **Bad input.** Nothing read from another process is trusted: garbage in a
//!   connection's socket or in shared memory is an error value naming the problem.
//! - [`Queue::close`] closes the queue for every process (later gets drain it, then
//!   report `Closed`); Python's is per process, which in Rust is dropping the handle.
//!
//! # Managers
//!
//! A [`Manager`] is a server process (`SyncManager-N`) that holds shared objects; what
//! the program gets are proxies, which reach the server from any process they are
//! sent to (as worker arguments, through queues, inside other proxies):
//! [`ListProxy`] (shaped like a `Vec`), [`DictProxy`] (a `HashMap` keeping insertion
//! order), [`ValueProxy`], [`QueueProxy`], and proxies of the locks, semaphores, events,
//! conditions and barriers. Every proxy method is a round trip and returns a
//! [`Result`]: errors of the server's objects come back typed ([`ManagerErrorKind`]:
//! `IndexOutOfRange` for Python's `IndexError`, `Empty`, `Full`, ...), and a server
//! that is gone is an error, never a hang. Your own types are served with
//! [`#[managed]`](managed):
//!
//! ```
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! struct Counter {
//!     total: u64,
//! }
//!
//! #[multiproc::managed]
//! impl Counter {
//!     pub fn incr(&mut self, by: u64) -> u64 {
//!         self.total += by;
//!         self.total
//!     }
//! }
//!
//! #[multiproc::worker]
//! fn bump(counter: CounterProxy) -> multiproc::Result<u64> {
//!     counter.incr(2)
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let manager = multiproc::Manager::start()?;
//!     let counter: CounterProxy = manager.create(Counter::default())?;
//!     counter.incr(1)?;
//!     assert_eq!(bump::spawn(counter.clone())?.join_value()?, 3);
//!     manager.shutdown()
//! }
//! ```
//!
//! [`Manager::serve`] runs the server on TCP for other programs, which
//! [`Manager::connect`] with the key; every connection authenticates with an
//! HMAC-SHA256 challenge and response, as Python 3.12 does.
//!
//! # Errors
//!
//! Each operation returns a small error type of its own, in the style of
//! crossbeam-channel: [`TryPutError::Full`] gives the item back (`into_inner`),
//! predicates such as `is_closed` answer the common question, and `?` converts it into
//! the crate-wide [`Error`]. The category errors inside [`Error`] hold their causes
//! typed: an index out of an [`Array`] stays an [`IndexError`] with its index and
//! length in `Error::Sync(SyncError::Index(e))`, and [`ChannelError::is_corrupt`] tells
//! shared memory that another process wrote garbage into ([`Corruption`]) from a
//! queue that is merely closed or full. Wrapping is transparent: an error prints as
//! the one it wraps and returns that one's `source`, so reporters that walk the chain
//! (`anyhow`'s `{:#}`, `eyre`) print each cause once.
//!
//! # Where workers run
//!
//! A child is this same program, started again with `posix_spawn` of
//! `/proc/self/exe` and arguments that name the worker. A constructor in the runtime
//! runs the worker before `main` (and before a test harness reads its arguments), so
//! workers work unchanged in binaries, examples, `cargo test` integration tests,
//! doctests, release builds with fat LTO, and when defined in a library crate. The
//! worker's arguments, name and logging set-up reach the child over a private socket;
//! the same arguments given by hand, without that socket, run nothing and exit with
//! status 2.
//!
//! # Lifetime of children
//!
//! When the program exits normally, daemonic children are terminated and the others
//! joined, as in Python. If the program is killed instead, its children kill
//! themselves: none lingers as an orphan. Finished children are reaped by whichever of
//! `join`, `exitcode`, `is_alive` or [`active_children`] first sees them end.
//!
//! # Logging
//!
//! [`log_to_stderr`] installs a `log` logger with Python's format,
//! `[INFO/Process-1] message`, in this process and every child it starts, and the
//! runtime logs its lifecycle events through it with Python's wording.
//!
//! # Pools
//!
//! A [`Pool`] is Python's `multiprocessing.Pool` over `#[worker]` functions: worker
//! processes named `SpawnPoolWorker-N` (daemonic), and methods typed by the worker,
//! `pool.map::<f>(items)`, [`starmap`](Pool::starmap), [`apply`](Pool::apply),
//! [`apply_async`](Pool::apply_async) and [`map_async`](Pool::map_async) (an
//! [`AsyncResult`]), and lazy, bounded [`imap`](Pool::imap) and
//! [`imap_unordered`](Pool::imap_unordered) (an [`Imap`], an `ExactSizeIterator` for
//! inputs of known length).
//!
//! ```
//! use multiproc::Pool;
//!
//! #[multiproc::worker]
//! fn sqr(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let pool = Pool::new(2)?;
//!     assert_eq!(pool.map::<sqr>(0..4)?, [0, 1, 4, 9]);
//!     for (i, r) in pool.imap::<sqr>(0..)?.take(3).enumerate() {
//!         assert_eq!(r?, (i * i) as u64);
//!     }
//!     pool.close();
//!     pool.join()?;
//!     Ok(())
//! }
//! ```
//!
//! A failed task is a [`TaskError`] value (a panic with its message and location, an
//! `Err` with its `Debug` text, a lost worker with its name, pid and exit code or
//! signal, a timeout). A worker killed at any moment fails only the task it held; a new
//! worker takes its place and nothing waits forever. The builder sets the
//! [`initializer`](PoolBuilder::initializer), `maxtasksperchild` and `task_timeout`;
//! [`set_worker_state`] and [`worker_state`] keep an expensive value per worker
//! process. Dropping a pool terminates it, as leaving Python's `with` block does.
//!
//! # Locks and shared values
//!
//! Python's synchronisation primitives work between processes: [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`], and plain
//! data in shared memory, [`Value`] and [`Array`] (with a lock) or [`RawValue`] and
//! [`RawArray`] (without). Create one, hand clones to the children as worker arguments
//! or `#[process]` fields, and every process uses the same object.
//!
//! ```
//! use multiproc::{Array, Barrier, Lock, Value};
//!
//! #[multiproc::worker]
//! fn count(lock: Lock, total: Value<u64>, seen: Array<u32>, start: Barrier, i: usize) {
//!     start.wait().unwrap(); // all four begin together
//!     for _ in 0..1000 {
//!         let _held = lock.lock().unwrap();
//!         total.set(total.get() + 1);
//!     }
//!     seen.set(i, 1).unwrap();
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let lock = Lock::new()?;
//!     let total = Value::new(0u64)?;
//!     let seen = Array::<u32>::zeroed(4)?;
//!     let start = Barrier::new(4)?;
//!     let workers: Vec<_> = (0..4)
//!         .map(|i| count::spawn(lock.clone(), total.clone(), seen.clone(), start.clone(), i))
//!         .collect::<Result<_, _>>()?;
//!     for w in workers {
//!         w.join()?;
//!     }
//!     assert_eq!(total.get(), 4000);
//!     assert_eq!(seen.to_vec(), [1, 1, 1, 1]);
//!     Ok(())
//! }
//! ```
//!
//! Each object is a memfd mapped by every process that holds it: nothing is created in
//! `/dev/shm` or anywhere else with a name, so nothing is left behind, however the
//! processes end (Python warns of "leaked semaphore objects"; there are none here). The
//! uncontended paths are a few atomic operations, with no system call.
//!
//! Beyond Python, a process that dies in the middle never wedges the others:
//!
//! - a [`Lock`] or [`RLock`] whose holder died is taken over by a waiter, *poisoned*, as
//!   [`std::sync::Mutex`] reports a panic: [`PoisonError`] carries the guard, and
//!   `clear_poison` ends it;
//! - a semaphore records the permits each process holds and takes back those of a dead
//!   process;
//! - a [`Condition`] skips waiters that died, so that `notify(n)` wakes `n` live ones;
//! - a [`Barrier`] breaks ([`BrokenBarrierError`]) when one of its waiting parties dies.
//!
//! Waiters look for dead processes after 10 ms, then every 100 ms. Values hold [`Plain`]
//! data: numbers, `bool`, `char`, arrays of them, and `#[repr(C)]` structs that
//! `#[derive(Plain)]` checks; whatever another process writes, reading it is never
//! undefined behaviour.
//!
//! # Shared memory by name
//!
//! [`SharedMemory`] is Python's `multiprocessing.shared_memory`: a block in `/dev/shm`
//! that any process attaches to by name, unrelated programs too, with range-checked
//! [`read`](SharedMemory::read)/[`write`](SharedMemory::write) copies and typed views
//! ([`as_slice`](SharedMemory::as_slice)) of [`Plain`] data, read by many workers with
//! no copy; [`ShareableList`] is a fixed-length list of [`Item`]s in such a block. A
//! block is removed by [`unlink`](SharedMemory::unlink), or, unless created with
//! `track(false)`, once the process that created it and every process it started are
//! gone, SIGKILL included.
//!
//! ```
//! use multiproc::SharedMemory;
//!
//! #[multiproc::worker]
//! fn total(shm: SharedMemory) -> f64 {
//!     shm.as_slice::<f64>().iter().sum() // crossed as its name, attached again
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let mut shm = SharedMemory::create(1000 * 8)?;
//!     shm.as_mut_slice::<f64>().fill(0.5);
//!     let same = SharedMemory::open(shm.name())?;
//!     assert_eq!(total::spawn(same)?.join_value()?, 500.0);
//!     shm.unlink()?;
//!     Ok(())
//! }
//! ```
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]
#![doc(test(attr(deny(warnings))))]

pub use multiproc_macros::{Plain, managed, process, worker};
pub use multiproc_runtime::*;

// The README's examples run as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The names most programs need: `use multiproc::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Array, Barrier, BoundedSemaphore, Condition, Connection, Event, JoinableQueue, Lock, Pipe,
        Pool, Process, Queue, RLock, Run, Semaphore, SharedMemory, SimpleQueue, Value, Waitable,
        Worker, active_children, cpu_count, current_process, log_to_stderr, parent_process,
        process, wait, worker,
    };
}
