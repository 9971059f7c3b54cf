//! A started child as the parent holds it ([`Child`]: its pid, pidfd and channel),
//! and the reading of the report the child sends over that channel.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::unistd::Pid;

use crate::process::report::Report;
use crate::wire::error::CodecError;
use crate::wire::frames::{FrameError, FrameReader};

/// A started child, as the parent holds it.
pub(super) struct Child {
    pub(super) pid: Pid,
    pub(super) pidfd: Arc<OwnedFd>,
    pub(super) channel: UnixStream,
    pub(super) reports: Mutex<Reports>,
}

/// What has been read from a child's channel.
#[derive(Default)]
pub(super) struct Reports {
    frames: FrameReader,
    pub(super) eof: bool,
    pub(super) report: Option<std::result::Result<Report, CodecError>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Child {
    /// Reads whatever the child has sent, without blocking.
    pub(super) fn drain(&self) {
        let mut reports = lock(&self.reports);
        let reports = &mut *reports;
        while !reports.eof {
            match reports.frames.fill(self.channel.as_fd()) {
                Ok(0) => {
                    reports.eof = true;
                    if reports.frames.pending() > 0 && reports.report.is_none() {
                        reports.report = Some(Err(CodecError::new(
                            crate::wire::error::CodecErrorKind::Truncated,
                            format!(
                                "the child's report ended after {} bytes",
                                reports.frames.pending()
                            ),
                        )));
                    }
                }
                Ok(_) => loop {
                    match reports.frames.next_frame() {
                        Ok(Some(frame)) => {
                            if reports.report.is_none() {
                                reports.report = Some(Report::parse(frame));
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            // A garbled stream: keep the error, stop reading.
                            reports.report = Some(Err(e));
                            reports.eof = true;
                            break;
                        }
                    }
                },
                Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(FrameError::Io(_)) => reports.eof = true,
                Err(FrameError::Codec(e)) => {
                    reports.report = Some(Err(e));
                    reports.eof = true;
                }
            }
        }
    }
}
