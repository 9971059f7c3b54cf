//! The usage guide's "Terminate": the exit codes of a terminated process (-15) and of
//! one that exits with 1.

use std::time::Duration;

#[multiproc::worker]
fn worker() {
    log::debug!("run");
    std::thread::sleep(Duration::from_secs(5));
}

#[multiproc::worker]
fn worker_exit_error() {
    multiproc::exit(1);
}

fn main() -> multiproc::Result<()> {
    multiproc::log_to_stderr(log::LevelFilter::Debug);
    let p = worker::process().with_name("worker");
    let p_error = worker_exit_error::process().with_name("worker_exit_error");

    p.start()?;
    p_error.start()?;

    p.terminate()?;

    // Wait until the processes end.
    p.join()?;
    p_error.join()?;
    log::debug!("{:?} {:?}", p.exitcode(), p_error.exitcode()); // Some(-15) Some(1)
    println!(
        "terminate: {} exitcode {}, {} exitcode {}",
        p.name(),
        p.exitcode().unwrap_or_default(),
        p_error.name(),
        p_error.exitcode().unwrap_or_default()
    );
    assert_eq!((p.exitcode(), p_error.exitcode()), (Some(-15), Some(1)));
    Ok(())
}
