//! The server's side: the loop that reads requests from the parent and forks a child
//! for each, and what the forked child does before it runs the child path.

use std::ffi::CString;
use std::io::{IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use nix::unistd::getppid;

use crate::os::fd;
use crate::process::bootstrap::{self, AcceptError, Selector, Source};
use crate::process::forkserver::{
    MAGIC, MAX_REQUEST, MAX_REQUEST_FDS, REQUEST_FDS, Request, SERVER_KEY,
};
use crate::process::registry;
use crate::wire::codec;

/// Runs the server on the channel named by `selector` and never returns; each forked
/// child continues in `run_child` (the child path of an exec'd child).
pub(crate) fn serve(selector: &Selector, run_child: fn(&Selector) -> !) -> ! {
    let sock = match bootstrap::inherited_channel_of(selector) {
        Ok(sock) => sock,
        Err(AcceptError::NoChannel(m) | AcceptError::Garbled(m)) => {
            leave(2, &format!("multiproc: {m}\n"))
        }
        // The parent is gone before the first request: nothing to serve.
        Err(AcceptError::ParentGone) => leave(0, ""),
    };
    // Keep nothing else the parent had open without close-on-exec: the server lives as
    // long as the program, and a pipe end it held would keep the pipe's reader from
    // ever seeing its end. Each child gets what it needs with its request.
    close_all_but(sock.as_raw_fd());
    if let Err(e) = setsockopt(&sock, sockopt::PassCred, &true) {
        leave(
            2,
            &format!("multiproc: fork server: cannot check senders: {e}\n"),
        );
    }
    // A Ctrl-C at the terminal goes to the whole process group: the server outlives it
    // for as long as the parent does. Blocked, not ignored: a child unblocks it, and an
    // interrupt sent to the child between the fork and that point is then delivered
    // (an ignored one would be lost).
    let _ = interrupts(SigmaskHow::SIG_BLOCK);
    // Built once here, the index of workers is ready in every forked child.
    let _ = registry::lookup(SERVER_KEY);
    loop {
        let (request, fds) = match read_request(&sock) {
            Ok(Some(got)) => got,
            // The parent closed its end: it ended, and so does the server.
            Ok(None) => leave(0, ""),
            Err(message) => leave(
                2,
                &format!("multiproc: fork server: {message}; no child started, leaving\n"),
            ),
        };
        let pid = fork_child(&sock, request, fds, run_child);
        if let Err(e) = write_all(&sock, &pid.to_le_bytes()) {
            leave(
                0,
                &format!("multiproc: fork server: cannot answer the parent: {e}\n"),
            );
        }
    }
}

/// Reads one request and its descriptors; `Ok(None)` at the end of the stream.
/// Every piece must come from the parent: a request sent by any other process (one
/// that got hold of the socket) is refused, and the server ends.
fn read_request(sock: &UnixStream) -> Result<Option<(Request, Vec<OwnedFd>)>, String> {
    let parent = getppid().as_raw();
    let mut buf = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut wanted = 8usize;
    while buf.len() < wanted {
        let mut chunk = vec![0u8; wanted - buf.len()];
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_REQUEST_FDS], UnixCredentials);
        let mut iov = [IoSliceMut::new(&mut chunk)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECONNRESET) => return Ok(None),
            Err(e) => return Err(format!("cannot read a request: {e}")),
        };
        let read = msg.bytes;
        let mut sender = None;
        for c in msg
            .cmsgs()
            .map_err(|e| format!("bad control message: {e}"))?
        {
            match c {
                ControlMessageOwned::ScmRights(raw) => fd::adopt_received(raw, &mut fds),
                ControlMessageOwned::ScmCredentials(creds) => sender = Some(creds.pid()),
                _ => {}
            }
        }
        if read == 0 && buf.is_empty() && fds.is_empty() {
            return Ok(None);
        }
        if read == 0 {
            return Err("the request ended early".into());
        }
        if sender != Some(parent) {
            return Err(format!(
                "a request came from process {}, not from the parent {parent}: refused",
                sender.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
            ));
        }
        buf.extend_from_slice(&chunk[..read]);
        if buf.len() == 8 && wanted == 8 {
            let magic = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
            if magic != MAGIC || len > MAX_REQUEST {
                return Err("a request of an unknown protocol".into());
            }
            wanted = 8 + len;
        }
    }
    let request: Request =
        codec::decode_record(&buf[8..]).map_err(|e| format!("a garbled request: {e}"))?;
    if fds.len() != REQUEST_FDS + request.inherited.len() {
        return Err(format!(
            "a request came with {} descriptors, not {}",
            fds.len(),
            REQUEST_FDS + request.inherited.len()
        ));
    }
    Ok(Some((request, fds)))
}

/// Forks the child for `request` as a child of the parent (`CLONE_PARENT`); returns
/// its pid, or `-errno` if the fork failed. In the child, never returns.
fn fork_child(
    sock: &UnixStream,
    request: Request,
    fds: Vec<OwnedFd>,
    run_child: fn(&Selector) -> !,
) -> i32 {
    // A raw clone, as fork(2) with one more flag: the server is single-threaded, so no
    // lock is held by another thread across it. glibc's `raise` and `abort` use the
    // kernel's thread id, not a cached one, so they stay right in the child.
    // SAFETY: clone without CLONE_VM and without a new stack returns twice, like fork;
    // the child only touches its own copy of this single thread's memory.
    let pid = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_clone,
            (nix::libc::CLONE_PARENT | nix::libc::SIGCHLD) as nix::libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        0 => become_child(sock, request, fds, run_child),
        pid if pid > 0 => i32::try_from(pid).unwrap_or(-nix::libc::EOVERFLOW),
        _ => -Errno::last_raw(),
    }
}

/// In the forked child: drop the server's socket, take the parent's stdout, stderr,
/// environment, working directory and umask, unblock `SIGINT`, and run
/// the child path on the bootstrap channel.
fn become_child(
    sock: &UnixStream,
    request: Request,
    fds: Vec<OwnedFd>,
    run_child: fn(&Selector) -> !,
) -> ! {
    if let Err(e) = place_descriptors(sock.as_raw_fd(), fds, &request.inherited) {
        leave(
            2,
            &format!("multiproc: fork server: cannot place the child's descriptors: {e}\n"),
        )
    }
    set_environment(&request.env);
    if let Some(cwd) = request.cwd.and_then(|c| CString::new(c).ok()) {
        // A directory removed since leaves the server's: the exec'd child could not
        // have entered it either, by name.
        // SAFETY: chdir with a NUL-terminated path.
        unsafe { nix::libc::chdir(cwd.as_ptr()) };
    }
    // SAFETY: umask only sets the process's file mode mask.
    unsafe { nix::libc::umask(request.umask as nix::libc::mode_t) };
    let _ = interrupts(SigmaskHow::SIG_UNBLOCK);
    let selector = Selector {
        key: request.key,
        source: Source::Inherited(sock.as_raw_fd()),
    };
    run_child(&selector)
}

/// Puts the descriptors of a request where an exec'd child would have them: the
/// channel (`fds[0]`) at `at`, the number of the child's copy of the server's socket
/// (which the selector's `fd=<n>` names, as in an exec'd child), the parent's stdout
/// and stderr at 1 and 2, and each inherited descriptor at its number in the parent
/// (the channel wins a clash, as in an exec'd child). All are first moved above every
/// number involved, so that no placement overwrites a descriptor still to be placed.
fn place_descriptors(at: RawFd, fds: Vec<OwnedFd>, inherited: &[RawFd]) -> nix::Result<()> {
    let above = fds
        .iter()
        .map(AsRawFd::as_raw_fd)
        .chain(inherited.iter().copied())
        .chain([at])
        .max()
        .unwrap_or(at)
        + 1;
    let moved = fds
        .iter()
        .map(|fd| {
            // SAFETY: a new descriptor, owned by nothing else.
            fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(above)).map(|n| unsafe { OwnedFd::from_raw_fd(n) })
        })
        .collect::<nix::Result<Vec<OwnedFd>>>()?;
    drop(fds);
    let targets = [at, 1, 2].into_iter().chain(inherited.iter().copied());
    for (i, (fd, target)) in moved.iter().zip(targets).enumerate() {
        if i >= REQUEST_FDS && target == at {
            continue;
        }
        // SAFETY: dup2 onto a number this process owns nothing at any more (every
        // received descriptor was moved above `above`), or onto the child's copy of
        // the server's socket (`at`), which is never used again. The copy has no
        // close-on-exec, as an inherited descriptor.
        if unsafe { nix::libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return Err(Errno::last());
        }
    }
    drop(moved);
    Ok(())
}

/// Replaces the environment with `env`.
fn set_environment(env: &[(Vec<u8>, Vec<u8>)]) {
    // SAFETY: this process has one thread (just forked from a single-threaded server),
    // so nothing reads the environment concurrently.
    unsafe { nix::libc::clearenv() };
    for (key, value) in env {
        if let (Ok(k), Ok(v)) = (CString::new(key.clone()), CString::new(value.clone())) {
            // SAFETY: as above; both strings are NUL-terminated.
            unsafe { nix::libc::setenv(k.as_ptr(), v.as_ptr(), 1) };
        }
    }
}

/// Closes every descriptor above stderr but `keep`.
fn close_all_but(keep: RawFd) {
    let close_range = |first: RawFd, last: u32| {
        if let Ok(first) = u32::try_from(first) {
            if first <= last {
                // SAFETY: at this point the server owns no descriptor but 0-2 and
                // `keep`: the ones closed belong to nothing in this process.
                unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first, last, 0) };
            }
        }
    };
    if let Ok(below) = u32::try_from(keep - 1) {
        close_range(3, below);
    }
    close_range(keep + 1, u32::MAX);
}

/// Blocks or unblocks `SIGINT` for this (single) thread.
fn interrupts(how: SigmaskHow) -> nix::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    signal::sigprocmask(how, Some(&set), None)
}

fn write_all(sock: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::send;
    while !bytes.is_empty() {
        match send(sock.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn leave(code: i32, message: &str) -> ! {
    let _ = std::io::stderr().lock().write_all(message.as_bytes());
    std::process::exit(code)
}
