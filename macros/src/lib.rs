//! The macros of [multiproc](https://docs.rs/multiproc): the attributes `#[worker]`
//! and `#[process]`, and `#[derive(Plain)]`. Use them through the `multiproc` crate,
//! whose documentation tells the whole story.
//!
//! Each macro parses its item, validates it (errors point at the offending token), and
//! emits thin glue that calls into `multiproc::__private`; all behaviour lives in the
//! runtime crate.

#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod attr;
mod managed;
mod plain;
mod process;
mod worker;

use proc_macro::TokenStream;

/// Makes a function runnable in its own process.
///
/// Beside the function, which stays callable as before, it adds a type of the same
/// name with `spawn(args..)` (start now, returns a started `Process`) and
/// `process(args..)` (returns an unstarted `Process` to configure), and registers the
/// function so that a child process can run it. Arguments and the return value cross
/// the process boundary with serde, so they must be owned, `Serialize` and
/// `DeserializeOwned`. The function may return `()`, a value, or `Result<T, E>` with
/// `E: Debug` (an `Err` ends the child with exit code 1).
///
/// Options: `#[worker(name = "key")]` registers under `key` instead of
/// `module::path::name`; `#[worker(crate = "path")]` names the multiproc crate when it
/// was renamed.
#[proc_macro_attribute]
pub fn worker(args: TokenStream, input: TokenStream) -> TokenStream {
    worker::expand(args.into(), input.into()).into()
}

/// Makes a struct a process, as a subclass of Python's `multiprocessing.Process`.
///
/// The struct's fields are the process's state; it must implement `multiproc::Run`,
/// whose `run` executes in the child. The macro derives serde's `Serialize` and
/// `Deserialize` for the struct (unless it already derives them), registers it, and
/// adds `into_process(self)`, which returns an unstarted `Process`. The default process
/// name is the struct's name: `MyProcess-1`.
///
/// Options: `#[process(name = "key")]` and `#[process(crate = "path")]`, as for
/// `#[worker]`.
#[proc_macro_attribute]
pub fn process(args: TokenStream, input: TokenStream) -> TokenStream {
    process::expand(args.into(), input.into()).into()
}

/// Derives `multiproc::Plain` for a `#[repr(C)]` struct of plain fields without
/// padding, so that it can live in a shared `Value` or `Array`.
///
/// The derive checks at compile time that the struct is `#[repr(C)]` (or
/// `#[repr(transparent)]`), not generic, that every field is `Plain`, and that the
/// fields leave no padding; it writes the normalization of fields such as `bool`.
///
/// The implementation it emits is an `unsafe impl` (marked `#[allow(unsafe_code)]`,
/// so that a crate that denies unsafe code can use it; a crate that *forbids* it
/// cannot).
///
/// Option: `#[plain(crate = "path")]` names the multiproc crate when it was renamed,
/// as `crate = ".."` does for `#[worker]`.
#[proc_macro_derive(Plain, attributes(plain))]
pub fn derive_plain(input: TokenStream) -> TokenStream {
    plain::expand(input.into()).into()
}

/// Serves a type through a manager: on the type's `impl` block, generates
/// `<Type>Proxy`, whose methods mirror the block's `pub fn`s taking `&self` or
/// `&mut self` and return `multiproc::Result<_>`; `manager.create(value)` serves a value
/// and returns its proxy. Arguments and results must be owned, `Serialize` and
/// `DeserializeOwned`; so must the type. Option: `#[managed(crate = "path")]`.
#[proc_macro_attribute]
pub fn managed(args: TokenStream, input: TokenStream) -> TokenStream {
    managed::expand(args.into(), input.into()).into()
}
