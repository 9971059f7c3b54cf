//! What a process runs: the [`Worker`] trait that `#[worker]` and `#[process]`
//! implement, and the [`Run`] trait of `#[process]` structs.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Something a child process can run: implemented by `#[worker]` for a function and
/// by `#[process]` for a struct.
///
/// Generic APIs name a worker by its type: `Process::from_worker::<square>(args)` is
/// what `square::process(args)` does. You rarely implement it by hand; the macros
/// also register the worker so that the child can find it (see
/// [`Process`](crate::Process)).
pub trait Worker: 'static {
    /// The arguments as one value: a tuple of the function's arguments (`()` for none,
    /// `(A,)` for one), or the struct itself for `#[process]`.
    type Args: Serialize + DeserializeOwned;
    /// What the worker gives back: the function's return type, `T` for `Result<T, E>`,
    /// and `()` for `#[process]` structs.
    type Output: Serialize + DeserializeOwned;
    /// The key the worker is registered under: `module::path::name` unless
    /// overridden with `#[worker(name = "...")]`.
    const KEY: &'static str;
    /// The prefix of default process names: `Process` for functions (`Process-1`),
    /// the struct's name for `#[process]` structs (`MyProcess-1`), as in Python.
    const KIND: &'static str = "Process";

    /// Runs the worker in the calling process.
    fn call(args: Self::Args) -> Result<Self::Output, Failure>;
}

/// How a worker failed without panicking: the `Debug` text of the `Err` it returned.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure {
    message: String,
}

impl Failure {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
        }
    }

    /// A failure described by the `Debug` text of `error`, as `main` reports an `Err`.
    pub fn from_debug<E: fmt::Debug>(error: E) -> Self {
        Failure::new(format!("{error:?}"))
    }

    /// The description.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_message(self) -> String {
        self.message
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The body of a `#[process]` struct, as `run` is for a subclass of Python's
/// `multiprocessing.Process`.
///
/// `run` gets the struct, with the field values it had when the process started, in
/// the child process. It returns `()`, or a `Result<(), E>` whose `Err` ends the child
/// with exit code 1 and the error's `Debug` text on stderr; for the latter, name the
/// return type in the trait: `impl Run<Result<(), MyError>> for MyProcess`.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[multiproc::process]
/// struct Greeter {
///     name: String,
/// }
///
/// impl Run for Greeter {
///     fn run(&mut self) {
///         println!("hello {} from {}", self.name, current_process().name());
///     }
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let p = Greeter { name: "ada".into() }.into_process();
///     p.start()?;
///     assert_eq!(p.join()?, 0);
///     Ok(())
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a #[process] struct but does not implement `multiproc::Run`",
    label = "this struct needs a `run` method",
    note = "add `impl multiproc::Run for {Self} {{ fn run(&mut self) {{ ... }} }}`"
)]
pub trait Run<R: RunResult = ()> {
    /// The process's work, run in the child.
    fn run(&mut self) -> R;
}

/// What [`Run::run`] may return: `()` or `Result<(), E>` with `E: Debug`.
pub trait RunResult: private::Sealed {
    /// `Ok` to exit with code 0; `Err` to exit with code 1 and print the failure.
    fn into_result(self) -> Result<(), Failure>;
}

impl RunResult for () {
    fn into_result(self) -> Result<(), Failure> {
        Ok(())
    }
}

impl<E: fmt::Debug> RunResult for Result<(), E> {
    fn into_result(self) -> Result<(), Failure> {
        self.map_err(Failure::from_debug)
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<E> Sealed for Result<(), E> {}
}
