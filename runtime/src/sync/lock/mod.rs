//! [`Lock`] and [`RLock`]: locks shared between processes, robust to the death of
//! their holder.
//!
//! [`Lock`] (`non_reentrant.rs`) and [`RLock`] (`reentrant.rs`) share the steps of an
//! acquisition (`attempt.rs`); [`Lockable`] (`lockable.rs`, over the trait in
//! `sealed.rs`) is how a `Condition`, a `Value` or an `Array` uses either.

mod attempt;
mod lockable;
mod non_reentrant;
mod reentrant;
pub(crate) mod sealed;

pub use lockable::Lockable;
pub use non_reentrant::{Lock, LockGuard};
pub use reentrant::{RLock, RLockGuard};
