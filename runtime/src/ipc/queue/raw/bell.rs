//! Closing a queue, and the eventfd bell that [`wait`](crate::ipc::wait) watches.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::ipc::wait::Watch;
use crate::os::futex;
use crate::os::sys;

use super::raw_queue::{RECHECK, RawQueue};

impl RawQueue {
    pub(crate) fn close(&self) {
        let header = self.header();
        header.info.closed.store(1, Ordering::SeqCst);
        for word in [&header.wake.not_empty, &header.wake.not_full] {
            word.fetch_add(1, Ordering::SeqCst);
            futex::wake(word, u32::MAX);
        }
        header.wake.bell.store(1, Ordering::SeqCst);
        let _ = sys::eventfd_signal(self.bell.as_fd());
    }

    pub(super) fn ring_bell(&self) {
        let bell = &self.header().wake.bell;
        if bell.load(Ordering::Relaxed) == 0 && bell.swap(1, Ordering::SeqCst) == 0 {
            if let Err(e) = sys::eventfd_signal(self.bell.as_fd()) {
                log::debug!("cannot signal a queue's eventfd: {e}");
            }
        }
    }

    pub(crate) fn bell_fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    fn ready(&self) -> bool {
        self.has_items() || self.is_closed()
    }

    pub(crate) fn watch_arm(&self) -> io::Result<bool> {
        self.header().wake.watchers.fetch_add(1, Ordering::SeqCst);
        Ok(self.ready())
    }

    pub(crate) fn watch_disarm(&self) {
        self.header().wake.watchers.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn watch_is_ready(&self) -> io::Result<bool> {
        Ok(self.ready())
    }

    pub(crate) fn watch_confirm(&self) -> io::Result<bool> {
        if self.ready() {
            return Ok(true);
        }
        // A stale signal (the items it announced are gone): clear it, then look again,
        // in this order, so that a put that saw the bell still set is not missed.
        sys::eventfd_reset(self.bell.as_fd())?;
        self.header().wake.bell.store(0, Ordering::SeqCst);
        if self.ready() {
            self.ring_bell();
            return Ok(true);
        }
        Ok(false)
    }

    pub(crate) fn recheck_after() -> Duration {
        RECHECK
    }
}

impl Watch for RawQueue {
    fn arm(&self) -> std::io::Result<bool> {
        self.watch_arm()
    }

    fn disarm(&self) {
        self.watch_disarm();
    }

    fn is_ready(&self) -> std::io::Result<bool> {
        self.watch_is_ready()
    }

    fn confirm(&self) -> std::io::Result<bool> {
        self.watch_confirm()
    }

    fn recheck_after(&self) -> Option<Duration> {
        Some(RawQueue::recheck_after())
    }
}
