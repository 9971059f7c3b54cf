//! [`wait`]: block until one of several objects is ready, as Python's
//! `multiprocessing.connection.wait`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use crate::error::Result;
use crate::os::sys;
use crate::process::handle::Sentinel;

/// Something [`wait`] can watch: a process [`Sentinel`], a
/// [`Connection`](crate::Connection), or a queue ([`Queue`](crate::Queue),
/// [`SimpleQueue`](crate::SimpleQueue), [`JoinableQueue`](crate::JoinableQueue)).
///
/// Implement it for your own type by giving the descriptor that becomes readable when
/// the object is ready.
pub trait Waitable {
    /// The descriptor that becomes readable when the object is ready.
    fn wait_fd(&self) -> BorrowedFd<'_>;

    /// Not public API: how [`wait`] watches multiproc's own objects, whose descriptor
    /// alone does not tell whether they are ready.
    #[doc(hidden)]
    fn __watch(&self) -> Option<&dyn Watch> {
        None
    }
}

/// Not public API: the part of an object's readiness that its descriptor does not
/// show (messages already in shared memory, a doorbell that may be stale).
#[doc(hidden)]
pub trait Watch {
    /// Registers a waiter, so that the object's descriptor is signalled when it becomes
    /// ready; whether it is ready already.
    fn arm(&self) -> io::Result<bool>;
    /// Withdraws the waiter registered by `arm`.
    fn disarm(&self);
    /// Whether the object is ready now, by its shared state alone.
    fn is_ready(&self) -> io::Result<bool>;
    /// The descriptor polled readable: whether the object is really ready (a stale
    /// signal is cleared, and `false` returned).
    fn confirm(&self) -> io::Result<bool>;
    /// The longest the wait may sleep before it looks at the object again; `None` for
    /// no limit.
    fn recheck_after(&self) -> Option<Duration> {
        None
    }
}

impl Waitable for Sentinel {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl<W: Waitable + ?Sized> Waitable for &W {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        (**self).wait_fd()
    }

    fn __watch(&self) -> Option<&dyn Watch> {
        (**self).__watch()
    }
}

/// Withdraws the waiters registered on the watched objects, whatever way `wait` ends.
struct Armed<'a> {
    watches: Vec<&'a dyn Watch>,
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        for watch in &self.watches {
            watch.disarm();
        }
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: no
/// limit); returns the indices of the ready ones, in order, empty on timeout.
///
/// A [`Sentinel`] is ready once its process has ended; a
/// [`Connection`](crate::Connection) when a message can be received or its peer has
/// closed (a receive will not block); a queue when it has an item or is closed.
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
///
/// # Cost
///
/// A queue has no descriptor of its own that the kernel could watch. Each queue has
/// an `eventfd` for `wait`: while at least one process waits on the queue, a `put`
/// signals it (one system call, only when the signal is not already pending), and
/// nothing otherwise. In case a process died between two steps of that signalling, a
/// wait that includes a queue also looks at the queue once a second.
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.map(sys::deadline_after);
    let watches: Vec<Option<&dyn Watch>> = objects.iter().map(|o| o.__watch()).collect();
    let mut armed = Armed {
        watches: Vec::new(),
    };
    let mut ready_now = Vec::new();
    for (i, watch) in watches.iter().enumerate() {
        if let Some(watch) = watch {
            armed.watches.push(*watch);
            if watch.arm()? {
                ready_now.push(i);
            }
        }
    }
    let fds: Vec<(BorrowedFd<'_>, PollFlags)> = objects
        .iter()
        .map(|o| (o.wait_fd(), PollFlags::POLLIN))
        .collect();
    let slice = watches
        .iter()
        .flatten()
        .filter_map(|w| w.recheck_after())
        .min();
    loop {
        let until = if ready_now.is_empty() {
            match (deadline, slice) {
                (Some(d), Some(s)) => Some(d.min(Instant::now() + s)),
                (d, None) => d,
                (None, Some(s)) => Some(Instant::now() + s),
            }
        } else {
            // Something is ready already: only collect what else is, without waiting.
            Some(Instant::now())
        };
        let polled = sys::poll_until(&fds, until)?;
        let mut ready = Vec::new();
        for (i, events) in polled.iter().enumerate() {
            let is_ready = match watches[i] {
                _ if ready_now.contains(&i) => true,
                Some(watch) if !events.is_empty() => watch.confirm()?,
                // The recheck: the object may be ready without its signal.
                Some(watch) if slice.is_some() => watch.is_ready()?,
                None => !events.is_empty(),
                Some(_) => false,
            };
            if is_ready {
                ready.push(i);
            }
        }
        if !ready.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(ready);
        }
        ready_now.clear();
    }
}
