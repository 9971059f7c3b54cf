// The shapes of function a #[worker] accepts.

use std::collections::BTreeMap;
use std::fmt;

#[multiproc::worker]
fn nothing() {}

#[multiproc::worker]
fn unit_return() -> () {}

#[multiproc::worker]
fn many(
    a: u8,
    b: u16,
    c: u32,
    d: u64,
    e: i8,
    f: i16,
    g: i32,
    h: String,
    i: Vec<u8>,
    j: bool,
) -> usize {
    usize::from(a)
        + usize::from(b)
        + c as usize
        + d as usize
        + e as usize
        + f as usize
        + g as usize
        + h.len()
        + i.len()
        + usize::from(j)
}

#[multiproc::worker]
fn mutable(mut total: u64, mut items: Vec<u64>) -> u64 {
    items.sort();
    for item in items {
        total += item;
    }
    total
}

#[multiproc::worker]
fn destructure((a, b): (u32, u32), [x, y]: [u8; 2], _: String, arg0: u32) -> u32 {
    a + b + u32::from(x) + u32::from(y) + arg0
}

#[derive(Debug)]
struct MyError;

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("my error")
    }
}

#[multiproc::worker]
fn fallible(x: i64) -> Result<i64, MyError> {
    if x < 0 { Err(MyError) } else { Ok(x) }
}

#[multiproc::worker]
fn fallible_unit(ok: bool) -> Result<(), String> {
    if ok { Ok(()) } else { Err("no".to_owned()) }
}

#[multiproc::worker]
fn io_result(path: std::path::PathBuf) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

#[multiproc::worker]
fn collections(map: BTreeMap<String, Vec<Option<u8>>>) -> (usize, Option<String>) {
    (map.len(), map.keys().next().cloned())
}

#[multiproc::worker(name = "custom::key")]
fn renamed(x: u32) -> u32 {
    x
}

#[multiproc::worker(crate = "multiproc")]
fn with_crate_path(x: u32) -> u32 {
    x
}

#[multiproc::worker]
fn f(f: u32) -> u32 {
    f + 1
}

#[multiproc::worker]
fn r#type(r#type: String) -> String {
    r#type
}

#[multiproc::worker]
pub fn public(x: u32) -> u32 {
    x
}

mod inner {
    #[multiproc::worker]
    pub(crate) fn restricted(x: u32) -> u32 {
        x
    }
}

/// Documented, with attributes the macro must keep.
#[multiproc::worker]
#[inline]
#[allow(clippy::needless_pass_by_value)]
fn documented(x: String) -> usize {
    x.len()
}

fn main() {
    use multiproc::Worker;

    // Workers defined in a function body.
    #[multiproc::worker]
    fn local(x: u32) -> u32 {
        x * 2
    }

    // The functions stay callable.
    nothing();
    unit_return();
    assert_eq!(many(1, 1, 1, 1, 1, 1, 1, "1".into(), vec![1], true), 10);
    assert_eq!(mutable(1, vec![2, 3]), 6);
    assert_eq!(destructure((1, 2), [3, 4], String::new(), 5), 15);
    assert!(fallible(-1).is_err());
    assert!(fallible_unit(true).is_ok());
    let _ = io_result("/".into());
    assert_eq!(collections(BTreeMap::new()).0, 0);
    assert_eq!(renamed(3), 3);
    assert_eq!(with_crate_path(3), 3);
    assert_eq!(f(1), 2);
    assert_eq!(r#type("t".into()), "t");
    assert_eq!(public(1), 1);
    assert_eq!(inner::restricted(1), 1);
    assert_eq!(documented("ab".into()), 2);
    assert_eq!(local(2), 4);

    // The generated constructors have the expected signatures.
    let _: fn() -> multiproc::Process = nothing::process;
    let _: fn(u64, Vec<u64>) -> multiproc::Process<u64> = mutable::process;
    let _: fn((u32, u32), [u8; 2], String, u32) -> multiproc::Process<u32> = destructure::process;
    let _: fn(i64) -> multiproc::Process<i64> = fallible::process;
    let _: fn(bool) -> multiproc::Process<()> = fallible_unit::process;
    let _: fn(std::path::PathBuf) -> multiproc::Process<u64> = io_result::process;
    let _: fn(u32) -> multiproc::Result<multiproc::Process<u32>> = f::spawn;
    let _: fn(String) -> multiproc::Process<String> = r#type::process;
    let _: fn(u32) -> multiproc::Process<u32> = local::process;

    // The registry keys.
    assert_eq!(<renamed as Worker>::KEY, "custom::key");
    assert_eq!(
        <nothing as Worker>::KEY,
        concat!(module_path!(), "::nothing")
    );
    assert_eq!(
        <inner::restricted as Worker>::KEY,
        concat!(module_path!(), "::inner::restricted")
    );
}
