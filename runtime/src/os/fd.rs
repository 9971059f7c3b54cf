//! Descriptors owned by handles.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::sys::socket::{ControlMessageOwned, RecvMsg};

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

/// Takes ownership of descriptors the kernel installed in this process with one
/// received message (an `SCM_RIGHTS` control message), appending them to `fds`.
pub(crate) fn adopt_received(raw: Vec<RawFd>, fds: &mut Vec<OwnedFd>) {
    // SAFETY: the kernel just installed these descriptors in this process for the
    // message being read; nothing else owns them.
    fds.extend(
        raw.into_iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
    );
}

/// The descriptors that came with a received message, now owned here (a control
/// message that cannot be parsed brings none).
pub(crate) fn received_fds<S>(msg: &RecvMsg<'_, '_, S>) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                adopt_received(raw, &mut fds);
            }
        }
    }
    fds
}
