//! Not public API; used by generated code.
//!
//! Everything the expansion of `#[worker]` and `#[process]` names comes through here,
//! so that users need no direct dependency on `inventory` or `serde`.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::ipc::wait::Watch;
pub use crate::manager::error::ManagerError;
pub use crate::manager::managed::{
    Managed, ManagedEntry, decode_args, encode_result, unknown_method,
};
pub use crate::manager::proxy::ProxyCore;
pub use crate::manager::server::SERVER_ENTRY as MANAGER_SERVER_ENTRY;
pub use crate::process::handle::Process;
pub use crate::process::registry::Entry;
pub use crate::process::worker::{Failure, Run, RunResult, Worker};
pub use crate::sync::Plain;
pub use core::result::Result;
pub use inventory;
pub use serde;

/// The result of `spawn`; not public API.
pub type SpawnResult<R> = crate::error::Result<Process<R>>;

/// A worker function's `Result<T, E>` return type, seen through its parts.
/// Not public API; used by generated code.
pub trait ResultLike {
    /// `T`.
    type Ok;
    /// `E`.
    type Err: fmt::Debug;
    /// The value itself.
    fn into_std(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E: fmt::Debug> ResultLike for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_std(self) -> Result<T, E> {
        self
    }
}

/// A worker's `Result` as the runtime wants it. Not public API.
pub fn from_result<R: ResultLike>(result: R) -> Result<R::Ok, Failure> {
    result.into_std().map_err(Failure::from_debug)
}

/// Runs a `#[process]` struct's `run`. Not public API.
pub fn run_struct<P: Run<R>, R: RunResult>(process: &mut P) -> Result<(), Failure> {
    process.run().into_result()
}

/// `f::spawn`: creates and starts. Not public API.
pub fn spawn<R>(process: Process<R>) -> SpawnResult<R> {
    process.start()?;
    Ok(process)
}

/// A type that can cross the process boundary as an argument or a return value.
/// Not public API; used by generated code to put errors on the user's type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross to the child process",
    label = "worker arguments must implement `Serialize` and `DeserializeOwned`",
    note = "derive them with `#[derive(serde::Serialize, serde::Deserialize)]`, or pass an owned type that has them"
)]
pub trait Portable {}

impl<T: Serialize + DeserializeOwned> Portable for T {}

/// Fails to compile, at the type's span, unless `T` is [`Portable`]. Not public API.
pub const fn assert_portable<T: Portable>() {}

/// Normalizes one field of a struct that derives [`Plain`]; fails to compile, at the
/// field's type, unless the field is `Plain`. Not public API; used by
/// `#[derive(Plain)]`.
///
/// # Safety
///
/// As [`Plain::normalize`].
pub unsafe fn normalize_field<T: Plain>(field: *mut T) {
    // SAFETY: the caller's guarantee.
    unsafe { T::normalize(field) }
}
