//! Not public API; used by generated code.
//!
//! Everything the expansion of `#[worker]` and `#[process]` names comes through here,
//! so that users need no direct dependency on `inventory` or `serde`.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::ipc::wait::Watch;
pub use crate::manager::error::ManagerError;
pub use crate::manager::managed::{
    Managed, ManagedEntry, decode_args, encode_result, unknown_method,
};
pub use crate::manager::proxy::ProxyCore;
pub use crate::process::handle::Process;
pub use crate::process::registry::Entry;
pub use crate::process::worker::{Failure, Run, RunResult, Worker};
pub use crate::sync::Plain;
pub use core::result::Result;
pub use inventory;
pub use serde;

/// The pid of this process's fork server while it runs; not public API (for tests).
pub fn forkserver_pid() -> Option<u32> {
    crate::process::forkserver::client::server_pid()
}

/// Sends a fork server request for `key` on `server` with `bootstrap` as the child's
/// channel, as the parent does; the pid the server answers, `None` if it refused.
/// Not public API (for tests of the server's checks).
pub fn forkserver_request(
    server: std::os::fd::BorrowedFd<'_>,
    key: &str,
    bootstrap: std::os::fd::BorrowedFd<'_>,
) -> crate::error::Result<Option<i32>> {
    let request = crate::process::forkserver::Request::current(key);
    crate::process::forkserver::send_request(server, &request, bootstrap)
}

/// The worker key of the fork server's selector; not public API (for tests).
pub const FORKSERVER_KEY: &str = crate::process::forkserver::SERVER_KEY;

/// The result of `spawn`; not public API.
pub type SpawnResult<R> = crate::error::Result<Process<R>>;

/// Questions about a concrete type `T` that generated code answers at compile time,
/// as constants: `Probe::<T>::MULTIPROC_PORTABLE` and `Probe::<T>::MULTIPROC_RESULT`.
/// Not public API; used by generated code.
///
/// Each constant is `true` in an inherent impl whose bounds say when it holds, and
/// `false` in the blanket trait [`Otherwise`]. A path such as `Probe::<T>::NAME`
/// finds inherent items before trait items, so for a concrete `T` (a worker is never
/// generic) the answer is the inherent `true` exactly when its impl applies: this
/// decides by the type, whatever name or alias the user wrote it with.
pub struct Probe<T>(PhantomData<T>);

impl<T> fmt::Debug for Probe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Probe")
    }
}

impl<T: Serialize + DeserializeOwned> Probe<T> {
    /// `T` can cross between processes. Not public API.
    pub const MULTIPROC_PORTABLE: bool = true;
}

impl<T, E> Probe<Result<T, E>> {
    /// `T` is a `Result`, however it was spelled. Not public API.
    pub const MULTIPROC_RESULT: bool = true;
}

/// The `false` answers of [`Probe`], for the types its inherent impls do not cover.
/// Not public API; generated code imports it (`use .. as _`) where it asks.
pub trait Otherwise {
    /// `T` cannot cross between processes.
    const MULTIPROC_PORTABLE: bool = false;
    /// `T` is not a `Result`.
    const MULTIPROC_RESULT: bool = false;
}

impl<T> Otherwise for Probe<T> {}

/// What a worker's return value becomes, chosen by `Probe::<R>::MULTIPROC_RESULT`:
/// `Returns<true>` for a `Result`, `Returns<false>` for a plain value.
/// Not public API; used by generated code.
#[derive(Debug)]
pub struct Returns<const RESULT: bool>;

/// A worker's return type as the runtime sees it, given the verdict `W` (a
/// [`Returns`]): the [`Worker::Output`] it sends back. Not public API; used by
/// generated code.
pub trait Outcome<W> {
    /// What the parent receives: `T` for `Result<T, E>`, the type itself otherwise.
    type Value;
}

impl<R> Outcome<Returns<false>> for R {
    type Value = R;
}

impl<T, E> Outcome<Returns<true>> for Result<T, E> {
    type Value = T;
}

/// How a returned value becomes its [`Outcome::Value`] or a [`Failure`]. Apart from
/// [`Outcome`], so that an error type without `Debug` is reported once, where the
/// worker's value is converted. Not public API; used by generated code.
#[diagnostic::on_unimplemented(
    message = "a #[worker] that returns `{Self}` needs `Debug` for its error type",
    label = "an `Err` ends the child with exit code 1 and its `Debug` text on stderr",
    note = "derive or implement `Debug` for the error type"
)]
pub trait IntoValue<W>: Outcome<W> + Sized {
    /// `Ok` with the value to send back, or the failure that ends the child with 1.
    fn into_value(self) -> Result<Self::Value, Failure>;
}

impl<R> IntoValue<Returns<false>> for R {
    fn into_value(self) -> Result<R, Failure> {
        Ok(self)
    }
}

// Not recommended: the error names the worker's return type rather than `E: Debug`
// inside this impl.
#[diagnostic::do_not_recommend]
impl<T, E: fmt::Debug> IntoValue<Returns<true>> for Result<T, E> {
    fn into_value(self) -> Result<T, Failure> {
        self.map_err(Failure::from_debug)
    }
}

/// What a worker returned, as the runtime wants it; fails to compile, at the return
/// type `R`, when `R` is a `Result` whose error type is not `Debug`. Not public API.
pub fn into_value<R: IntoValue<W>, W>(returned: R) -> Result<R::Value, Failure> {
    returned.into_value()
}

/// Lets a type reach the bounds of [`Worker`] only once it is known to cross, chosen
/// by `Probe::<T>::MULTIPROC_PORTABLE`. Not public API; used by generated code.
///
/// A worker whose arguments or output cannot cross already fails to compile at the
/// user's type ([`assert_portable`]); behind `Gate<false>`, the rest of the generated
/// code sees a stand-in type that satisfies every bound, so that this one mistake is
/// reported once rather than again by each bound that mentions the type.
#[derive(Debug)]
pub struct Gate<const PORTABLE: bool>;

/// The type behind a [`Gate`], and the way through it. Not public API.
pub trait Crossing<T> {
    /// `T` behind `Gate<true>`; [`Unportable`] behind `Gate<false>`.
    type Type: Serialize + DeserializeOwned;
    /// Into the gate.
    fn enter(value: T) -> Self::Type;
    /// Out of the gate.
    fn leave(value: Self::Type) -> T;
}

impl<T: Serialize + DeserializeOwned> Crossing<T> for Gate<true> {
    type Type = T;
    fn enter(value: T) -> T {
        value
    }
    fn leave(value: T) -> T {
        value
    }
}

impl<T> Crossing<T> for Gate<false> {
    type Type = Unportable;
    fn enter(_: T) -> Unportable {
        Unportable
    }
    fn leave(_: Unportable) -> T {
        // A program that reaches this has a `Gate<false>`, which generated code only
        // builds beside a failed `assert_portable`: it never compiles. Should one ever
        // be built, this constant fails to evaluate when `leave` is instantiated, so
        // the mistake still shows at compile time rather than at run time.
        let () = NeverCompiled::<T>::ERROR;
        unreachable!("a worker whose types cannot cross was compiled")
    }
}

/// The stand-in that [`Gate<false>`] gives the bounds of [`Worker`]. Not public API.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Unportable;

/// A constant that fails to evaluate for every `T`. Not public API.
struct NeverCompiled<T>(PhantomData<T>);

impl<T> NeverCompiled<T> {
    const ERROR: () = panic!(
        "multiproc: a #[worker] or #[process] whose types are not Serialize + \
         DeserializeOwned was compiled"
    );
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

/// A type that can cross the process boundary as an argument, a return value or the
/// state of a `#[process]` struct.
/// Not public API; used by generated code to put errors on the user's type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross to the child process",
    label = "what crosses between processes must implement `Serialize` and `DeserializeOwned`",
    note = "derive them with `#[derive(serde::Serialize, serde::Deserialize)]`, or use an owned type that has them"
)]
pub trait Portable {}

// Not recommended: a type that is neither `Serialize` nor `DeserializeOwned` gets one
// error, "`T` cannot cross", rather than one per missing trait.
#[diagnostic::do_not_recommend]
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

/// Whether a field's type is valid for every bit pattern, for the
/// `VALID_FOR_ANY_BITS` of a struct that derives [`Plain`]: `Plain::VALID_FOR_ANY_BITS`
/// of a plain type, and `false` (from [`AnyBitsFallback`]) for any other, so that a
/// field that is not plain gets its one error from [`normalize_field`], not a second
/// one here. Works for the concrete field types the derive sees. Not public API; used
/// by `#[derive(Plain)]`.
#[derive(Debug)]
pub struct AnyBitsProbe<T: ?Sized>(std::marker::PhantomData<T>);

impl<T: Plain> AnyBitsProbe<T> {
    /// `T::VALID_FOR_ANY_BITS`.
    pub const VALID_FOR_ANY_BITS: bool = T::VALID_FOR_ANY_BITS;
}

/// The `false` that [`AnyBitsProbe`] gives a type that is not [`Plain`]. Not public
/// API; used by `#[derive(Plain)]`.
pub trait AnyBitsFallback {
    /// `false`: not plain.
    const VALID_FOR_ANY_BITS: bool = false;
}

impl<T: ?Sized> AnyBitsFallback for AnyBitsProbe<T> {}
