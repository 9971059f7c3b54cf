//! Checked wrappers for the system calls that nix does not cover, and the few
//! blocking helpers built on them. Each returns `nix::Result` (or `io::Result`) and
//! retries `EINTR` itself.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::signal::Signal;
use nix::sys::time::TimeSpec;
use nix::unistd::Pid;

/// `pidfd_open(2)`: a descriptor that refers to process `pid` for as long as it is
/// open, so that signals and waits never reach a recycled pid. Close-on-exec.
pub(crate) fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = Errno::result(fd)?;
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: sends `signal` to the process behind `pidfd`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> nix::Result<()> {
    // SAFETY: a valid descriptor, a valid signal number, no siginfo, no flags.
    let res = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(res).map(drop)
}

/// The time left until `deadline` (`None`: wait forever), zero once it has passed.
pub(crate) fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// The instant `timeout` from now; a century from now for timeouts too long to add.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Waits until one of `fds` has one of its events, or `deadline` passes.
///
/// Returns the events seen on each descriptor (empty where nothing happened); all
/// empty means the deadline passed. `POLLHUP` and `POLLERR` count as ready.
pub(crate) fn poll_until(
    fds: &[(BorrowedFd<'_>, PollFlags)],
    deadline: Option<Instant>,
) -> io::Result<Vec<PollFlags>> {
    loop {
        let mut pollfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|(fd, events)| PollFd::new(*fd, *events))
            .collect();
        let timeout = remaining(deadline).map(TimeSpec::from_duration);
        match ppoll(&mut pollfds, timeout, None) {
            Ok(_) => {
                return Ok(pollfds
                    .iter()
                    .map(|p| p.revents().unwrap_or(PollFlags::empty()))
                    .collect());
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `fd` is readable (or hung up) right now, without blocking.
pub(crate) fn is_readable(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let now = Some(Instant::now());
    Ok(!poll_until(&[(fd, PollFlags::POLLIN)], now)?[0].is_empty())
}

/// `eventfd(2)`: a counter descriptor, readable while non-zero; non-blocking and
/// close-on-exec.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes an initial value and flags and returns a new descriptor.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    let fd = Errno::result(fd)?;
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd's counter, making it readable. A counter at its maximum stays
/// readable, so `EAGAIN` is success too.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one = 1u64.to_ne_bytes();
    loop {
        match nix::unistd::write(fd, &one) {
            Ok(_) | Err(Errno::EAGAIN) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Resets an eventfd's counter to zero (not readable), without waiting.
pub(crate) fn eventfd_reset(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut buf = [0u8; 8];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(_) | Err(Errno::EAGAIN) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
