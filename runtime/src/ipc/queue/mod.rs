//! [`Queue`], [`SimpleQueue`] and [`JoinableQueue`]: Python's queues, across any number
//! of processes, in shared memory.
//!
//! One untyped shared-memory queue (`raw`) underneath three typed handles: [`Queue`]
//! (`handle.rs`) encodes items and holds the operations; [`JoinableQueue`]
//! (`joinable.rs`) adds `task_done` and `join`; [`SimpleQueue`] (`simple.rs`) offers a
//! subset. Both delegate to a `Queue` inside. [`QueueBuilder`] (`builder.rs`) makes
//! any of the three.

mod builder;
mod error;
mod handle;
mod joinable;
mod many;
pub(crate) mod raw;
mod simple;

pub use builder::QueueBuilder;
pub use error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
pub use handle::Queue;
pub use joinable::JoinableQueue;
pub use many::QueueDrain;
pub use simple::SimpleQueue;

/// The hash of `T`'s name, kept in a queue's shared memory to check handles on arrival.
fn type_hash<T>() -> u64 {
    crate::ipc::type_hash::type_hash(std::any::type_name::<T>())
}
