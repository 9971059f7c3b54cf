//! The parent's side: the one server of this process, started on first use and again
//! after it died, and the start of a child through it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::sys::signal::Signal;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::error::Result;
use crate::os::sys;
use crate::process::bootstrap::{self, Bootstrap, Launched, Selector, Source};
use crate::process::forkserver::{Request, SERVER_KEY, send_request};
use crate::wire::codec::{self, Encoded};

/// A running server, as its parent holds it.
#[derive(Debug)]
struct Server {
    pid: Pid,
    pidfd: OwnedFd,
    sock: UnixStream,
}

/// This process's server, if one was started; the lock also keeps requests from
/// different threads apart.
static SERVER: Mutex<Option<Server>> = Mutex::new(None);

fn server_lock() -> MutexGuard<'static, Option<Server>> {
    SERVER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pid of this process's fork server while it runs (for tests and diagnostics).
pub(crate) fn server_pid() -> Option<u32> {
    let guard = server_lock();
    let server = guard.as_ref()?;
    match sys::is_readable(server.pidfd.as_fd()) {
        Ok(false) => u32::try_from(server.pid.as_raw()).ok(),
        _ => None,
    }
}

/// Starts the server: this program with the server's selector, its end of a fresh
/// socket pair as the channel.
fn start_server() -> Result<Server> {
    let (ours, theirs) = UnixStream::pair()?;
    // Credentials go with every message this end sends, so that the server can tell
    // its parent's requests from anyone else's from the first byte on.
    setsockopt(&ours, sockopt::PassCred, &true)?;
    let target = if theirs.as_raw_fd() == 3 { 4 } else { 3 };
    let selector = Selector {
        key: SERVER_KEY.to_owned(),
        source: Source::Inherited(target),
    };
    let pid = bootstrap::spawn_self(&selector, theirs.as_raw_fd(), target)?;
    drop(theirs);
    let pidfd = bootstrap::pidfd_or_stop(pid)?;
    log::trace!("started the fork server (pid {pid})");
    Ok(Server {
        pid,
        pidfd,
        sock: ours,
    })
}

/// Ends and reaps a server that failed a request (it ended, or is about to).
fn retire(server: Server) {
    let _ = sys::pidfd_send_signal(server.pidfd.as_fd(), Signal::SIGKILL);
    let _ = waitid(Id::PIDFd(server.pidfd.as_fd()), WaitPidFlag::WEXITED);
    log::trace!("the fork server (pid {}) is gone", server.pid);
}

/// Asks the server (starting it, or starting it again, as needed) for a child that
/// runs `key` on the channel end `bootstrap`; the child's pid.
fn fork_child(key: &str, bootstrap: &UnixStream) -> Result<Pid> {
    let request = Request::current(key);
    let mut guard = server_lock();
    for _ in 0..2 {
        let server = match guard.take() {
            Some(server) if matches!(sys::is_readable(server.pidfd.as_fd()), Ok(false)) => server,
            Some(dead) => {
                retire(dead);
                start_server()?
            }
            None => start_server()?,
        };
        match send_request(server.sock.as_fd(), &request, bootstrap.as_fd()) {
            Ok(Some(pid)) => {
                *guard = Some(server);
                return Ok(Pid::from_raw(pid));
            }
            Ok(None) => retire(server),
            Err(e) => {
                *guard = Some(server);
                return Err(e);
            }
        }
    }
    Err(io::Error::other(
        "the fork server ended without answering, twice in a row (started again after \
         the first time); use StartMethod::Spawn if it cannot run here",
    )
    .into())
}

/// Starts a child that runs `boot.key` with the encoded `args` through the fork
/// server: the same channel and the same two frames as
/// [`bootstrap::launch`], only the process comes from the server's fork.
pub(crate) fn launch(boot: &Bootstrap, args: &Encoded) -> Result<Launched> {
    let record = codec::encode_record(boot)?;
    let (ours, theirs) = UnixStream::pair()?;
    let pid = fork_child(&boot.key, &theirs)?;
    drop(theirs);
    // The child is this process's own (CLONE_PARENT), not yet reaped: its pid cannot
    // have been reused, so its pidfd names it.
    bootstrap::hand_over(pid, ours, &record, args)
}
