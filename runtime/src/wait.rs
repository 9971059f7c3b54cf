//! [`wait`]: block until one of several objects is ready, as Python's
//! `multiprocessing.connection.wait`.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::poll::PollFlags;

use crate::error::Result;
use crate::process::Sentinel;
use crate::sys;

/// Something [`wait`] can watch.
pub trait Waitable {
    /// The descriptor that becomes readable when the object is ready.
    fn wait_fd(&self) -> BorrowedFd<'_>;
}

impl Waitable for Sentinel {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: no
/// limit); returns the indices of the ready ones, in order, empty on timeout.
///
/// A [`Sentinel`] is ready once its process has ended.
///
/// ```
/// # use std::time::Duration;
/// #[multiproc::worker]
/// fn nap(ms: u64) {
///     std::thread::sleep(Duration::from_millis(ms));
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let slow = nap::spawn(5_000)?;
///     let fast = nap::spawn(0)?;
///     let sentinels = [slow.sentinel()?, fast.sentinel()?];
///     let ready = multiproc::wait(&[&sentinels[0], &sentinels[1]], None)?;
///     assert_eq!(ready, vec![1]);
///     slow.terminate()?;
///     slow.join()?;
///     Ok(())
/// }
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.map(sys::deadline_after);
    let fds: Vec<(BorrowedFd<'_>, PollFlags)> = objects
        .iter()
        .map(|o| (o.wait_fd(), PollFlags::POLLIN))
        .collect();
    let ready = sys::poll_until(&fds, deadline)?;
    Ok(ready
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(i, _)| i)
        .collect())
}
