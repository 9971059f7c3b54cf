//! A worker's return type is a `Result` by its type, not by its name: an `Err`
//! returned through any alias ends the child with exit code 1 and the error's `Debug`
//! text on stderr, an `Ok` gives its value to `join_value`, and every other type is a
//! value sent back as it is, even one called `Result`.

mod common;

use common::{is_helper, lines, run_helper};
use multiproc::{Error, Process};

/// A crate's own `Result`, under another name.
type Fallible<T> = Result<T, String>;

/// As `anyhow::Result`: an alias with a default error type.
type AnyResult<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// `std::io::Result`, renamed.
use std::io::Result as IoOutcome;

#[multiproc::worker]
fn parse(text: String) -> Fallible<u32> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

#[multiproc::worker]
fn halve(n: u64) -> AnyResult<u64> {
    if n % 2 == 0 {
        Ok(n / 2)
    } else {
        Err(format!("{n} is odd").into())
    }
}

#[multiproc::worker]
fn length(path: String) -> IoOutcome<u64> {
    Ok(std::fs::metadata(path)?.len())
}

#[multiproc::worker]
fn std_path(ok: bool) -> std::result::Result<(), u8> {
    if ok { Ok(()) } else { Err(7) }
}

mod values {
    use serde::{Deserialize, Serialize};

    /// A plain value that happens to be called `Result`.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Result {
        pub passed: u32,
        pub failed: u32,
    }

    /// Returns a value named `Result` that is no `std::result::Result`.
    #[multiproc::worker]
    pub fn tally(passed: u32, failed: u32) -> Result {
        Result { passed, failed }
    }

    /// An `Option` is a value: `None` is sent back, not a failure.
    #[multiproc::worker]
    pub fn first(words: Vec<String>) -> Option<String> {
        words.into_iter().next()
    }

    /// A `Result` nested in a value is a value too.
    #[multiproc::worker]
    pub fn nested(fail: bool) -> (std::result::Result<u8, String>,) {
        (if fail { Err("inner".to_owned()) } else { Ok(1) },)
    }
}

/// The error message the parent decodes for a child that returned `Err`.
fn failure<R>(p: &Process<R>) -> String
where
    R: serde::de::DeserializeOwned,
{
    match p.join_value() {
        Err(Error::Child(e)) => {
            assert!(!e.is_panic(), "{e}");
            assert_eq!(e.exitcode(), 1, "{e}");
            e.error_message().unwrap_or_default().to_owned()
        }
        Err(other) => panic!("expected a child error, got {other}"),
        Ok(_) => panic!("expected a child error, got a value"),
    }
}

#[test]
fn output_is_the_ok_type_through_an_alias() {
    let _: fn(String) -> Process<u32> = parse::process;
    let _: fn(u64) -> Process<u64> = halve::process;
    let _: fn(String) -> Process<u64> = length::process;
    let _: fn(bool) -> Process<()> = std_path::process;
    let _: fn(u32, u32) -> Process<values::Result> = values::tally::process;
    let _: fn(Vec<String>) -> Process<Option<String>> = values::first::process;
}

#[test]
fn ok_through_an_alias_gives_the_value() -> multiproc::Result<()> {
    assert_eq!(parse::spawn("42".into())?.join_value()?, 42);
    assert_eq!(halve::spawn(10)?.join_value()?, 5);
    let path = std::env::current_exe()?;
    let size = std::fs::metadata(&path)?.len();
    let p = length::spawn(path.to_string_lossy().into_owned())?;
    assert_eq!(p.join_value()?, size);
    let p = std_path::spawn(true)?;
    assert_eq!(p.join()?, 0);
    p.join_value()?;
    Ok(())
}

#[test]
fn err_through_an_alias_exits_with_1() -> multiproc::Result<()> {
    let p = parse::spawn("x".into())?;
    assert_eq!(p.join()?, 1);
    assert_eq!(failure(&p), "\"not a number: x\"");

    let p = halve::spawn(3)?;
    assert_eq!(p.join()?, 1);
    assert_eq!(failure(&p), "\"3 is odd\"");

    let p = length::spawn("/nonexistent/multiproc-worker-results".into())?;
    assert_eq!(p.join()?, 1);
    assert!(failure(&p).contains("NotFound"));

    let p = std_path::spawn(false)?;
    assert_eq!(p.join()?, 1);
    assert_eq!(failure(&p), "7");
    Ok(())
}

#[test]
fn other_types_are_values() -> multiproc::Result<()> {
    let p = values::tally::spawn(3, 1)?;
    assert_eq!(p.join()?, 0);
    assert_eq!(
        p.join_value()?,
        values::Result {
            passed: 3,
            failed: 1
        }
    );
    assert_eq!(values::first::spawn(Vec::new())?.join_value()?, None);
    let p = values::nested::spawn(true)?;
    assert_eq!(p.join()?, 0);
    assert_eq!(p.join_value()?, (Err("inner".to_owned()),));
    Ok(())
}

#[test]
fn err_through_an_alias_prints_its_debug_text() {
    const NAME: &str = "err_through_an_alias_prints_its_debug_text";
    if is_helper(NAME) {
        let code = parse::spawn("seven".into())
            .and_then(|p| p.join())
            .expect("the worker runs");
        println!("exitcode {code}");
        return;
    }
    let out = run_helper(NAME);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines(&out.stdout), ["exitcode 1"], "{out:?}");
    let stderr = lines(&out.stderr);
    assert!(
        stderr.contains(&"Error: \"not a number: seven\"".to_owned()),
        "{stderr:?}"
    );
}
