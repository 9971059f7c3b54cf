//! [`Value`] and [`Array`] (and their lock-less [`RawValue`] and [`RawArray`]): plain
//! data in shared memory.
//!
//! # Layout
//!
//! One region: the lock's state first when the object has its own lock (an
//! [`RLock`](crate::RLock) by default), then the elements from offset 16 (or the
//! type's alignment, if larger: in the lock's cache line, which a locked update then
//! moves between CPUs alone), or from offset 0 without a lock. A handle holds the region, the offset and the
//! length; a handle that arrives from another process is checked against the region's
//! real size before use.
//!
//! Elements are read and written with volatile accesses: another process may change
//! them at any time, so the compiler must neither cache nor invent accesses. A read
//! copies the bits out first and then makes them a valid value ([`Plain`]), so that
//! whatever another process wrote never becomes an invalid `bool` or `char` here.

mod array;
mod cells;
mod plain;
mod value;

pub use array::{Array, ArrayGuard, RawArray};
pub use plain::{AtomicInt, Plain};
pub use value::{RawValue, Value, ValueGuard};
