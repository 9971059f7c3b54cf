//! [`Sentinel`]: what [`wait`](crate::wait()) watches to see a process end, for a child
//! ([`Process::sentinel`](crate::Process::sentinel)) and for the parent
//! ([`ParentProcess::sentinel`](crate::ParentProcess::sentinel)) alike.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Something [`wait`](crate::wait()) can watch: ready once a process has ended.
///
/// From [`Process::sentinel`](crate::Process::sentinel) or
/// [`ParentProcess::sentinel`](crate::ParentProcess::sentinel). It stays valid after the
/// process handle is closed.
#[derive(Debug, Clone)]
pub struct Sentinel(Arc<OwnedFd>);

impl Sentinel {
    /// The sentinel of the process whose pidfd is `fd`.
    pub(crate) fn new(fd: Arc<OwnedFd>) -> Self {
        Sentinel(fd)
    }
}

impl AsFd for Sentinel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Sentinel {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
