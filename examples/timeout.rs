//! The usage guide's "Timeout": `join` with a timeout, then `is_alive`.
//!
//! The daemon sleeps longer than the join waits, so it is still alive afterwards; it
//! is terminated when the program exits, as daemonic children are.
//!
//! ```text
//! [DEBUG/daemon] start
//! [DEBUG/non_daemon] run
//! [DEBUG/MainProcess] daemon is alive
//! ```

use std::time::Duration;

#[multiproc::worker]
fn daemon() {
    log::debug!("start");
    std::thread::sleep(Duration::from_secs(5));
    log::debug!("end");
}

#[multiproc::worker]
fn non_daemon() {
    log::debug!("run");
}

fn main() -> multiproc::Result<()> {
    multiproc::log_to_stderr(log::LevelFilter::Debug);
    let d = daemon::process().with_name("daemon").with_daemon(true)?;
    let p = non_daemon::process().with_name("non_daemon");

    d.start()?;
    p.start()?;

    // Wait until the process ends, or 0.2 seconds.
    let ended = d.join_timeout(Duration::from_millis(200))?;
    assert_eq!(ended, None);
    if d.is_alive() {
        log::debug!("{} is alive", d.name());
    }
    p.join()?;
    println!("timeout: {} still running after 0.2 s", d.name());
    // Returning from main terminates the daemon.
    Ok(())
}
