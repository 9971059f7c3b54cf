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
//! [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`], [`Value`], [`Array`]).

#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]
#![doc(test(attr(deny(warnings))))]

mod bootstrap;
mod child;
mod codec;
mod connection;
mod context;
mod courier;
mod error;
mod futex;
mod logging;
mod process;
mod queue;
mod registry;
mod ring;
mod shm;
mod spin;
mod sync;
mod sys;
mod transport;
mod wait;
mod worker;

#[doc(hidden)]
pub mod __private {
    //! Not public API; used by generated code.
    pub use crate::private::*;
}
mod private;

pub use codec::MAX_MESSAGE_LEN;
pub use connection::{Connection, Pipe, RecvError, RecvIntoError, RecvTimeoutError, SendError};
pub use context::{
    CurrentProcess, MAIN_PROCESS_NAME, ParentProcess, cpu_count, current_process, exit,
    parent_process,
};
pub use error::{
    ChannelError, ChildError, CodecError, CodecErrorKind, Error, ProcessError, RegistryError,
    Result,
};
pub use logging::log_to_stderr;
pub use process::{Process, Sentinel, active_children};
pub use queue::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, QueueBuilder,
    SimpleQueue, TaskDoneError, TryGetError, TryPutError,
};
pub use sync::{
    Array, ArrayGuard, AtomicInt, Barrier, BarrierAction, BoundedSemaphore, BrokenBarrierError,
    Condition, ConditionGuard, Event, IndexError, Lock, LockGuard, LockResult, Lockable, NoAction,
    NotifyError, Plain, PoisonError, RLock, RLockGuard, RawArray, RawValue, ReleaseError,
    SEM_VALUE_MAX, Semaphore, SemaphoreGuard, SyncError, SyncErrorKind, TryLockError,
    TryLockResult, Value, ValueGuard, WaitError,
};
pub use wait::{Waitable, wait};
pub use worker::{Failure, Run, RunResult, Worker};
