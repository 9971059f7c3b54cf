//! Workers can live in a library crate: this binary spawns two defined in the
//! `multiproc-fixture-lib` crate (tests/fixture-lib), which it only depends on.

use multiproc_fixture_lib::{multiply, whoami};

fn main() -> multiproc::Result<()> {
    let product = multiply::spawn(6, 7)?.join_value()?;
    let p = whoami::process().with_name("from-a-library");
    p.start()?;
    let (name, pid) = p.join_value()?;
    assert_eq!(Some(pid), p.pid());
    println!("library_worker: 6 x 7 = {product}, computed in a child; {name} said hello");
    Ok(())
}
