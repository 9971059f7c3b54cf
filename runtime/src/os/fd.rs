//! Descriptors owned by handles.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

/// A file descriptor owned by a handle that can cross to another process inside a
/// value (see [`codec`](crate::wire::codec)). Clones share the descriptor.
#[derive(Debug, Clone)]
pub(crate) struct PortableFd(Arc<OwnedFd>);

impl PortableFd {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        PortableFd(Arc::new(fd))
    }

    /// A new descriptor for the same open file.
    pub(crate) fn try_clone_owned(&self) -> std::io::Result<OwnedFd> {
        self.0.try_clone()
    }
}

impl AsFd for PortableFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for PortableFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
