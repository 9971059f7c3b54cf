//! The expansion of `#[multiproc::worker]` and `#[multiproc::process]` names nothing
//! through the scope it lands in: local items called `Result`, `Ok`, `Some`, `Vec`,
//! `Process`, `Worker`, `core`, `std`, `serde`, `multiproc`, ... do not break it, nor
//! does a module without the prelude, and it compiles without a warning under strict
//! lints (as serde's `test_gen.rs` and thiserror's `test_lints.rs` check theirs). The
//! tests at the end spawn some of these workers, to prove the expansion also runs.

#![deny(
    warnings,
    unused_qualifications,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unused_results,
    unused_lifetimes,
    single_use_lifetimes,
    trivial_casts,
    trivial_numeric_casts,
    rust_2018_idioms,
    clippy::all,
    clippy::pedantic
)]
#![forbid(unsafe_code)]
// Pedantic lints about the hand-written worker functions themselves, not about the
// expansion (a worker's arguments are owned by design).
#![allow(
    clippy::must_use_candidate,
    clippy::missing_errors_doc,
    clippy::needless_pass_by_value
)]

/// Prelude names and the crates the expansion uses, shadowed by local items of every
/// namespace (unit structs take both the type and the value namespace).
pub mod shadowed {
    #![allow(dead_code, non_camel_case_types, missing_debug_implementations)]

    /// Shadows `Result`.
    pub struct Result;
    /// Shadows `Ok`.
    pub struct Ok;
    /// Shadows `Err`.
    pub struct Err;
    /// Shadows `Option`.
    pub struct Option;
    /// Shadows `Some`.
    pub struct Some;
    /// Shadows `None`.
    pub struct None;
    /// Shadows `Box`.
    pub struct Box;
    /// Shadows `Vec`.
    pub struct Vec;
    /// Shadows `String`.
    pub struct String;
    /// Shadows `Default`.
    pub struct Default;
    /// Shadows `Into`.
    pub struct Into;
    /// Shadows `Sized`.
    pub struct Sized;
    /// Shadows `Send` and `Sync`.
    pub struct Send;
    /// Shadows `multiproc::Process`.
    pub struct Process;
    /// Shadows `multiproc::Worker`.
    pub struct Worker;
    /// Shadows `multiproc::Run`.
    pub struct Run;
    /// Shadows `inventory::submit!`'s node type.
    pub struct Node;
    /// Shadows `concat!`, `file!`, `line!` and `module_path!`.
    pub struct concat;
    /// Shadows the generated functions' names.
    pub fn spawn() {}
    /// Shadows the generated functions' names.
    pub fn process() {}
    /// Shadows the generated functions' names.
    pub fn into_process() {}
    /// Shadows the runtime's helpers.
    pub fn assert_portable() {}
    /// Shadows the runtime's helpers.
    pub fn into_value() {}
    /// Shadows the runtime's helpers.
    pub struct Probe;
    /// Shadows the runtime's helpers.
    pub struct Gate;

    /// Shadows `core`; the expansion must say `::core`.
    pub mod core {}
    /// Shadows `std`.
    pub mod std {}
    /// Shadows `serde`; the derive must go through `multiproc::__private::serde`.
    pub mod serde {}
    /// Shadows `inventory`.
    pub mod inventory {}
    /// Shadows `__private`.
    pub mod __private {}

    /// Methods and constants that the expansion must not pick up by accident.
    pub trait Distractions {
        /// As the constants the expansion asks of its types.
        const PORTABLE: bool = false;
        /// As the constants the expansion asks of its types.
        const RESULT: bool = false;
        /// As `Run::run`.
        fn run(&mut self) {}
        /// As `Worker::call`.
        fn call(&self) {}
        /// As `Process::start`.
        fn start(&self) {}
        /// As `IntoValue::into_value`.
        fn into_value(self)
        where
            Self: ::core::marker::Sized,
        {
        }
        /// As `Crossing::enter`.
        fn enter(self)
        where
            Self: ::core::marker::Sized,
        {
        }
        /// As `RunResult::into_result`.
        fn into_result(self)
        where
            Self: ::core::marker::Sized,
        {
        }
    }
    impl<T: ?::core::marker::Sized> Distractions for T {}

    /// A worker without arguments.
    #[multiproc::worker]
    pub fn nothing() {}

    /// A worker with a value.
    #[multiproc::worker]
    pub fn add(a: u64, b: u64) -> u64 {
        a + b
    }

    /// A worker with `std` types, named by their full paths.
    #[multiproc::worker]
    pub fn words(
        text: ::std::string::String,
        limit: ::core::option::Option<usize>,
    ) -> ::std::vec::Vec<::std::string::String> {
        let words = text
            .split_whitespace()
            .map(::std::borrow::ToOwned::to_owned);
        match limit {
            ::core::option::Option::Some(n) => words.take(n).collect(),
            ::core::option::Option::None => words.collect(),
        }
    }

    /// A worker returning `Result`.
    #[multiproc::worker]
    pub fn checked_div(a: u32, b: u32) -> ::core::result::Result<u32, ::std::string::String> {
        a.checked_div(b)
            .ok_or_else(|| ::std::string::ToString::to_string("division by zero"))
    }

    /// Patterns, `mut`, a raw name and an argument named as the worker.
    #[multiproc::worker]
    pub fn shapes((a, b): (u8, u8), mut shapes: u8, r#type: bool, _: ()) -> (u8, bool) {
        shapes += a + b;
        (shapes, r#type)
    }

    /// A worker with a custom registry key.
    #[multiproc::worker(name = "hygiene::renamed")]
    pub fn renamed(renamed: i64) -> i64 {
        -renamed
    }

    /// A process whose fields use the full paths.
    #[multiproc::process]
    #[derive(Debug)]
    pub struct Counter {
        /// Up to where.
        pub upto: u32,
        /// The numbers, filled in the child.
        pub seen: ::std::vec::Vec<u32>,
    }

    impl multiproc::Run for Counter {
        fn run(&mut self) {
            self.seen.extend(0..self.upto);
            ::std::assert_eq!(self.seen.len(), self.upto as usize);
        }
    }

    /// A process that fails.
    #[multiproc::process]
    #[derive(Debug, Clone)]
    pub struct Failing {
        /// Why.
        pub reason: ::std::string::String,
    }

    impl multiproc::Run<::core::result::Result<(), ::std::string::String>> for Failing {
        fn run(&mut self) -> ::core::result::Result<(), ::std::string::String> {
            ::core::result::Result::Err(::core::clone::Clone::clone(&self.reason))
        }
    }
}

/// A module with a `Result` alias, as many crates have, and no `use` of multiproc.
pub mod aliased {
    /// This crate's error.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub struct Error(pub String);

    /// This crate's `Result`, with one parameter.
    pub type Result<T> = ::core::result::Result<T, Error>;

    /// Returns the crate's `Result`: the worker sees through the alias.
    #[multiproc::worker]
    pub fn parse(text: String) -> Result<u16> {
        text.parse().map_err(|e| Error(format!("{e}")))
    }

    /// Returns `std::io::Result`.
    #[multiproc::worker]
    pub fn length(text: String) -> std::io::Result<usize> {
        Ok(text.len())
    }
}

/// Return types whose names say nothing: the worker decides by the type.
pub mod by_type {
    /// An alias of `Result` under another name.
    pub type Fallible<T> = ::core::result::Result<T, ::std::string::String>;

    /// A value that is called `Result`.
    #[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub struct Result(pub u8);

    /// Fails through an alias that is not called `Result`.
    #[multiproc::worker]
    pub fn checked(n: u8) -> Fallible<u8> {
        if n > 0 { Ok(n) } else { Err("zero".to_owned()) }
    }

    /// Returns a value called `Result`.
    #[multiproc::worker]
    pub fn wrapped(n: u8) -> Result {
        Result(n)
    }
}

/// A module without the prelude: everything the expansion names must be absolute.
pub mod no_prelude {
    #![no_implicit_prelude]

    /// Shadows the crate itself; the attribute names it by `::multiproc`.
    pub mod multiproc {}

    /// A worker.
    #[::multiproc::worker]
    pub fn greet(name: ::std::string::String) -> ::std::string::String {
        ::std::format!("hello {name}")
    }

    /// A worker returning `Result`.
    #[::multiproc::worker]
    pub fn half(n: u32) -> ::core::result::Result<u32, u32> {
        if n % 2 == 0 {
            ::core::result::Result::Ok(n / 2)
        } else {
            ::core::result::Result::Err(n)
        }
    }

    /// A process.
    #[::multiproc::process]
    #[derive(Debug)]
    pub struct Quiet {
        /// A field.
        pub level: u8,
    }

    impl ::multiproc::Run for Quiet {
        fn run(&mut self) {
            self.level = 0;
        }
    }
}

/// A crate that renamed `multiproc`, with `crate = "..."`.
pub mod renamed_crate {
    /// Where the crate is re-exported.
    pub mod reexport {
        pub use ::multiproc as mp;
    }

    /// A worker naming the crate by another path.
    #[::multiproc::worker(crate = "crate::renamed_crate::reexport::mp")]
    pub fn triple(x: u32) -> u32 {
        3 * x
    }

    /// A process naming the crate by another path.
    #[::multiproc::process(crate = crate::renamed_crate::reexport::mp)]
    #[derive(Debug)]
    pub struct Idle {}

    impl reexport::mp::Run for Idle {
        fn run(&mut self) {}
    }
}

/// Workers and processes private to a function body.
#[test]
fn local_items_expand() {
    #[multiproc::worker]
    fn local(x: u8) -> u8 {
        x
    }

    #[multiproc::process]
    struct LocalProcess {
        x: u8,
    }

    impl multiproc::Run for LocalProcess {
        fn run(&mut self) {
            self.x += 1;
        }
    }

    assert_eq!(local(1), 1);
    let _: multiproc::Process<u8> = local::process(1);
    let _: multiproc::Process = LocalProcess { x: 1 }.into_process();
}

#[test]
fn workers_run_in_children() -> multiproc::Result<()> {
    use multiproc::Worker;

    assert_eq!(shadowed::add::spawn(2, 3)?.join_value()?, 5);
    assert_eq!(shadowed::nothing::spawn()?.join()?, 0);
    assert_eq!(
        shadowed::words::spawn("a b c".into(), Some(2))?.join_value()?,
        ["a", "b"]
    );
    assert_eq!(shadowed::checked_div::spawn(7, 2)?.join_value()?, 3);
    let failed = shadowed::checked_div::spawn(7, 0)?;
    assert_eq!(failed.join()?, 1);
    assert!(
        failed
            .join_value()
            .unwrap_err()
            .to_string()
            .contains("division by zero")
    );
    assert_eq!(
        shadowed::shapes::spawn((1, 2), 3, true, ())?.join_value()?,
        (6, true)
    );
    assert_eq!(<shadowed::renamed as Worker>::KEY, "hygiene::renamed");
    assert_eq!(shadowed::renamed::spawn(4)?.join_value()?, -4);

    assert_eq!(aliased::parse::spawn("443".into())?.join_value()?, 443);
    assert_eq!(aliased::parse::spawn("x".into())?.join()?, 1);
    assert_eq!(aliased::length::spawn("four".into())?.join_value()?, 4);

    assert_eq!(by_type::checked::spawn(2)?.join_value()?, 2);
    assert_eq!(by_type::checked::spawn(0)?.join()?, 1);
    assert_eq!(
        by_type::wrapped::spawn(5)?.join_value()?,
        by_type::Result(5)
    );

    assert_eq!(
        no_prelude::greet::spawn("ada".into())?.join_value()?,
        "hello ada"
    );
    assert_eq!(no_prelude::half::spawn(8)?.join_value()?, 4);
    assert_eq!(no_prelude::half::spawn(7)?.join()?, 1);

    assert_eq!(renamed_crate::triple::spawn(5)?.join_value()?, 15);
    Ok(())
}

#[test]
fn processes_run_in_children() -> multiproc::Result<()> {
    let counter = shadowed::Counter {
        upto: 3,
        seen: Vec::new(),
    }
    .into_process();
    counter.start()?;
    assert_eq!(counter.join()?, 0);
    assert!(counter.name().starts_with("Counter-"));

    let failing = shadowed::Failing {
        reason: "on purpose".into(),
    }
    .into_process();
    failing.start()?;
    assert_eq!(failing.join()?, 1);

    let quiet = no_prelude::Quiet { level: 3 }.into_process();
    quiet.start()?;
    assert_eq!(quiet.join()?, 0);

    let idle = renamed_crate::Idle {}.into_process();
    idle.start()?;
    assert_eq!(idle.join()?, 0);
    Ok(())
}
