//! A worker defined in a library crate, spawned from this test binary (another crate).

use multiproc_fixture_lib::{multiply, whoami};

#[test]
fn workers_from_a_library_crate_run() {
    assert_eq!(multiply::spawn(6, 7).unwrap().join_value().unwrap(), 42);
    let p = whoami::process().with_name("lib-child");
    p.start().unwrap();
    let (name, pid) = p.join_value().unwrap();
    assert_eq!(name, "lib-child");
    assert_eq!(Some(pid), p.pid());
}
