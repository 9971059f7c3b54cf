//! The runtime of [multiproc](https://docs.rs/multiproc): everything that runs.
//!
//! Use it through the `multiproc` crate, which re-exports all of this beside the
//! `#[worker]` and `#[process]` macros; its documentation tells the whole story.
//!
//! What lives here: [`Process`] and its lifecycle, the bootstrap that re-executes the
//! program as a child and dispatches to the registered worker before `main`, the
//! process context ([`current_process`], [`parent_process`], [`active_children`]),
//! [`log_to_stderr`], [`wait`], the queues ([`Queue`], [`JoinableQueue`],
//! [`SimpleQueue`]) and pipes ([`Pipe`], [`Connection`]) that cross processes, and the
//! synchronisation primitives and shared values ([`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`], [`Value`], [`Array`]),
//! the [`Pool`] of worker processes with its [`AsyncResult`] and [`Imap`], the
//! [`Manager`], a server process holding shared objects behind proxies, and
//! [`SharedMemory`] and [`ShareableList`], named blocks any process attaches by name.

#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]
#![doc(test(attr(deny(warnings))))]

// The layers, lowest first: os, wire, process, ipc, sync, launch, then pool and
// manager side by side. Each uses only the ones before it (see ARCHITECTURE.md; tests/layers.rs
// checks it).
mod ipc;
mod launch;
mod manager;
mod os;
mod pool;
mod process;
mod sync;
mod wire;

mod error;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[doc(hidden)]
pub mod __private {
    //! Not public API; used by generated code.
    pub use crate::private::*;
}
mod private;

pub use error::{
    ChannelError, ChildError, CodecError, CodecErrorKind, Corruption, Error, ManagerError,
    ManagerErrorKind, ProcessError, RegistryError, Result,
};
pub use ipc::connection::{
    Connection, Pipe, RecvError, RecvIntoError, RecvTimeoutError, SendError,
};
pub use ipc::queue::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, QueueBuilder,
    QueueDrain, SimpleQueue, TaskDoneError, TryGetError, TryPutError,
};
pub use ipc::wait::{Waitable, wait};
pub use launch::{LaunchError, Launcher, Slurm, SlurmEnv};
pub use manager::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy, ListProxy,
    LockProxy, Managed, Manager, ManagerAddress, ProxyGuard, QueueProxy, RLockProxy,
    SemaphoreProxy, ToManagerAddress, ValueProxy,
};
pub use pool::{
    AsyncResult, Imap, OneArg, Pool, PoolBuilder, PoolError, TaskError, set_worker_state,
    worker_state, worker_state_or_init,
};
pub use process::context::{
    CurrentProcess, MAIN_PROCESS_NAME, ParentProcess, cpu_count, current_process, parent_process,
};
pub use process::exit::exit;
pub use process::handle::{Process, active_children};
pub use process::logging::log_to_stderr;
pub use process::sentinel::Sentinel;
pub use process::start::{START_METHOD_ENV, StartMethod, get_start_method, set_start_method};
pub use process::worker::{Failure, Run, RunResult, Worker};
pub use sync::{
    Array, ArrayGuard, AtomicInt, Barrier, BarrierAction, BoundedSemaphore, BrokenBarrierError,
    Condition, ConditionGuard, Event, IndexError, Item, Lock, LockGuard, LockResult, Lockable,
    NoAction, NotifyError, Plain, PoisonError, RLock, RLockGuard, RawArray, RawValue, ReleaseError,
    SEM_VALUE_MAX, Semaphore, SemaphoreGuard, ShareableList, SharedMemory, SharedMemoryBuilder,
    SharedMemoryError, SyncError, TryLockError, TryLockResult, Value, ValueGuard, WaitError,
};
pub use wire::codec::MAX_MESSAGE_LEN;
