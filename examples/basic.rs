//! The usage guide's "Basic Usage": names, pids, the parent, arguments,
//! `active_children` and `log_to_stderr`.
//!
//! ```text
//! cargo run --example basic
//! ```

use multiproc::prelude::*;

/// Checks who it is, then logs it.
#[multiproc::worker]
fn worker() {
    let p = current_process();
    let (pid, name) = (p.pid(), p.name().to_owned());
    assert_eq!(pid, std::process::id());
    assert_eq!(name, "worker_name");

    let pp = parent_process().expect("a child has a parent");
    assert_eq!(pp.pid(), std::os::unix::process::parent_id());

    log::debug!("run {name}({pid})");
}

/// Takes an argument.
#[multiproc::worker]
fn worker_args(num: u32) {
    log::debug!("worker {num}");
}

fn main() -> multiproc::Result<()> {
    // Python's `multiprocessing.log_to_stderr(logging.DEBUG)`: lines such as
    // `[DEBUG/Process-2] worker 0`, in this process and in every child.
    log_to_stderr(log::LevelFilter::Debug);

    let p1 = worker::process().with_name("worker_name");
    p1.start()?;
    for i in 0..5 {
        // Default names: "Process-2" ... "Process-6".
        worker_args::spawn(i)?;
    }

    // The children still running; each is joined.
    for p in active_children() {
        log::debug!("join {}({})", p.name(), p.pid().unwrap_or_default());
        p.join()?;
    }
    // Children that had already ended are not listed; their exit codes are known.
    assert_eq!(p1.join()?, 0, "the worker's checks failed");
    println!("basic: all children joined");
    Ok(())
}
