//! The fork server ([`StartMethod::ForkServer`](crate::StartMethod::ForkServer)): a
//! process that is this same program, exec'd once with the selector
//! `--multiproc-child multiproc::forkserver fd=<n>`, single-threaded, that forks each
//! new child on request.
//!
//! The parent (`client`) and the server (`server`) talk over a socket pair made when
//! the server is started, inherited by the server at exec: no other process can reach
//! it by a name. Each request carries the worker key, the parent's current environment,
//! working directory and umask, and three descriptors (the child's end of a fresh
//! bootstrap channel, the parent's stdout and stderr). The server checks that every
//! request comes from its parent (`SCM_CREDENTIALS`, which the kernel fills in), forks
//! with `CLONE_PARENT` so that the new process is a child of the parent, not of the
//! server, and answers with its pid. The parent then watches, signals and reaps it
//! exactly as a child it exec'd, and sends the bootstrap over the channel as
//! `bootstrap::launch` does. The forked process sets up what it was sent, then runs the
//! same child path as an exec'd child (`child`), from the bootstrap on.
//!
//! The server reads nothing but requests and ends when its parent does (its socket
//! reads end-of-file), so it leaves nothing behind a program that ended or was killed.

pub(crate) mod client;
pub(crate) mod server;

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use serde::{Deserialize, Serialize};

use crate::wire::codec;

/// The worker key of the server's selector: no worker can have it (keys are Rust paths
/// ending in an identifier, never `forkserver` alone under `multiproc`).
pub(crate) const SERVER_KEY: &str = "multiproc::forkserver";

/// Identifies the request protocol.
const MAGIC: u32 = u32::from_le_bytes(*b"mpf1");

/// The largest request body the server reads (the environment is most of it).
const MAX_REQUEST: usize = 16 << 20;

/// The descriptors every request carries: bootstrap channel, stdout, stderr.
const REQUEST_FDS: usize = 3;

/// The most descriptors one request carries (the kernel's limit for one message).
const MAX_REQUEST_FDS: usize = 253;

/// What the parent asks the server for: a child running `key`, set up as the parent is
/// now.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) key: String,
    pub(crate) env: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) cwd: Option<Vec<u8>>,
    pub(crate) umask: u32,
    /// The numbers, in the parent, of its descriptors without close-on-exec (above
    /// stderr), which an exec'd child would inherit: they follow the first three
    /// descriptors of the request, in this order.
    pub(crate) inherited: Vec<RawFd>,
}

impl Request {
    /// A request for `key` with the current process's environment, working directory
    /// and umask.
    pub(crate) fn current(key: &str) -> Request {
        use std::os::unix::ffi::OsStringExt;
        Request {
            key: key.to_owned(),
            env: std::env::vars_os()
                .map(|(k, v)| (k.into_vec(), v.into_vec()))
                .collect(),
            cwd: std::env::current_dir()
                .ok()
                .map(|d| d.into_os_string().into_vec()),
            umask: current_umask(),
            inherited: inheritable_fds(),
        }
    }
}

/// This process's descriptors above stderr that do not have close-on-exec: what an
/// exec'd child inherits.
fn inheritable_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .filter(|fd| {
            // SAFETY: F_GETFD only reads the descriptor flags; a number closed since
            // (such as the directory's own) gives -1.
            let flags = unsafe { nix::libc::fcntl(*fd, nix::libc::F_GETFD) };
            flags >= 0 && flags & nix::libc::FD_CLOEXEC == 0
        })
        .collect();
    fds.sort_unstable();
    fds
}

/// The umask of this process, read without changing it (`umask(2)` can only set it,
/// which would race with other threads creating files).
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Sends `request` on the server socket `sock` (blocking), with `bootstrap` (the
/// child's end of its channel) and this process's stdout and stderr attached, and
/// reads the answer: the new child's pid, `None` if the server closed the socket
/// without answering (it ended, or refused the request).
pub(crate) fn send_request(
    sock: BorrowedFd<'_>,
    request: &Request,
    bootstrap: BorrowedFd<'_>,
) -> crate::error::Result<Option<i32>> {
    let body = codec::encode_record(request)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_REQUEST)
        .ok_or_else(|| io::Error::other("the fork server request (environment) is too large"))?;
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4..].copy_from_slice(&len.to_le_bytes());
    if REQUEST_FDS + request.inherited.len() > MAX_REQUEST_FDS {
        return Err(io::Error::other(format!(
            "{} descriptors without close-on-exec: more than a forked child can be given \
             ({}); use StartMethod::Spawn",
            request.inherited.len(),
            MAX_REQUEST_FDS - REQUEST_FDS
        ))
        .into());
    }
    let mut fds: Vec<RawFd> = vec![bootstrap.as_raw_fd(), 1, 2];
    fds.extend_from_slice(&request.inherited);
    let mut parts: [&[u8]; 2] = [&header, &body];
    let mut first = 0;
    let mut fds_sent = false;
    while first < parts.len() {
        let iov: Vec<IoSlice<'_>> = parts[first..].iter().map(|b| IoSlice::new(b)).collect();
        let rights = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds_sent { &[] } else { &rights };
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(mut sent) => {
                fds_sent = true;
                while first < parts.len() && sent >= parts[first].len() {
                    sent -= parts[first].len();
                    first += 1;
                }
                if sent > 0 {
                    parts[first] = &parts[first][sent..];
                }
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EPIPE | Errno::ECONNRESET) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    let mut answer = [0u8; 4];
    let mut got = 0;
    while got < answer.len() {
        match nix::unistd::read(sock, &mut answer[got..]) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(Errno::ECONNRESET) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    match i32::from_le_bytes(answer) {
        pid if pid > 0 => Ok(Some(pid)),
        errno => Err(io::Error::from_raw_os_error(-errno).into()),
    }
}
