//! The usage guide's "Daemon": a daemonic and a normal child, both joined.
//!
//! ```text
//! [DEBUG/daemon] start
//! [DEBUG/non_daemon] run
//! [DEBUG/daemon] end
//! ```

use std::time::Duration;

#[multiproc::worker]
fn daemon() {
    log::debug!("start");
    std::thread::sleep(Duration::from_millis(200));
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

    // Wait until the processes end.
    d.join()?;
    p.join()?;
    println!(
        "daemon: {} exited with {:?}, {} with {:?}",
        d.name(),
        d.exitcode(),
        p.name(),
        p.exitcode()
    );
    Ok(())
}
