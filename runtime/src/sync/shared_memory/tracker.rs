//! The tracker: a process that removes the tracked blocks a process created once that
//! process and every process descended from it are gone, however they ended.
//!
//! # How it knows
//!
//! The first tracked [`create`](super::SharedMemory::create) of a process starts a
//! tracker and keeps one end of a `SOCK_SEQPACKET` socket pair to it. That end is
//! *inheritable* (not close-on-exec), so every process this one starts afterwards, and
//! every process those start, holds it too, whichever way they were started (a
//! multiproc child, a `std::process::Command`, a shell). The tracker reads names from
//! its end (`R<name>`: track, `U<name>`: unlinked, forget it) until it reads end of
//! file, which the kernel gives only once every holder has closed the other end: when
//! the creator and all its descendants have exited or been killed, `SIGKILL`
//! included. It then unlinks every name it still tracks and exits.
//!
//! A name is registered *before* its object is created, so a creator killed at any
//! instruction never leaves an untracked object behind; if the creation then fails
//! (the name exists) the name is unregistered at once.
//!
//! # Why a kill of the whole tree does not reach it
//!
//! The creator starts this program again (`/proc/self/exe`) with a selector argument;
//! a constructor here catches it before `main`, closes every other inherited
//! descriptor, forks, and the first process exits at once (its parent reaps it). The
//! tracker itself is the grandchild: adopted by init (or the nearest subreaper), in a
//! session and process group of its own, its working directory `/`, and with
//! `SIGINT`, `SIGHUP` and `SIGTERM` ignored. So it is no descendant of the creator
//! that a walk of the process tree finds, a signal to the creator's process group or
//! terminal does not reach it, and its parent reaps it when it exits: no zombie.
//!
//! # Caveats
//!
//! Only processes started *after* the first tracked `create` hold the socket: one
//! started before it (or by another thread while the tracker is being started) does not
//! keep this process's blocks alive. A descendant that lives on (a daemon the program started) keeps the blocks alive
//! until it ends too: it holds the tracker's socket. A block that another process
//! unlinks stays registered here; the tracker's late `shm_unlink` of the name then
//! finds nothing, or removes a new object created under the same name since.

use std::ffi::{CStr, CString, c_char, c_int};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::libc;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, setsid};

use crate::os::named_shm;

/// The first argument that makes a process a tracker.
const SELECTOR: &str = "--multiproc-shm-tracker";

/// The tracker's end of the socket, in the tracker.
const TRACKER_FD: RawFd = 3;

/// The longest message: a kind byte and a name.
const MAX_MESSAGE: usize = 1 + named_shm::NAME_MAX;

/// This process's end of the socket to its tracker, once one is started.
static TRACKER: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Registers `name` (without its `/`) with this process's tracker, starting the
/// tracker first if there is none (or the one there was is gone).
pub(crate) fn register(name: &str) -> io::Result<()> {
    keep_linked();
    tell(b'R', name, true)
}

/// Tells the tracker that `name` was unlinked (nothing to do at the end). Does nothing
/// when no tracker runs.
pub(crate) fn unregister(name: &str) -> io::Result<()> {
    tell(b'U', name, false)
}

fn tell(kind: u8, name: &str, start: bool) -> io::Result<()> {
    let mut message = Vec::with_capacity(1 + name.len());
    message.push(kind);
    message.extend_from_slice(name.as_bytes());
    let mut tracker = TRACKER.lock().unwrap_or_else(PoisonError::into_inner);
    // At worst: a send to a tracker that is gone, the start of a new one, a send to it.
    for _ in 0..3 {
        let Some(fd) = tracker.as_ref() else {
            if !start {
                return Ok(());
            }
            *tracker = Some(start_tracker()?);
            continue;
        };
        match send_all(fd, &message) {
            Ok(()) => return Ok(()),
            // The tracker is gone (killed by hand): start another one.
            Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ECONNREFUSED) if start => {
                *tracker = None;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other("the shared memory tracker ends at once"))
}

fn send_all(fd: &OwnedFd, message: &[u8]) -> nix::Result<()> {
    loop {
        match send(fd.as_raw_fd(), message, MsgFlags::MSG_NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Starts a tracker; returns this process's end of its socket, made inheritable.
fn start_tracker() -> io::Result<OwnedFd> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let mut actions = PosixSpawnFileActions::init()?;
    if theirs.as_raw_fd() == TRACKER_FD {
        // dup2 onto itself keeps close-on-exec: move it aside first.
        let moved = fcntl(&theirs, FcntlArg::F_DUPFD_CLOEXEC(TRACKER_FD + 1))?;
        actions.add_dup2(moved, TRACKER_FD)?;
        let spawned = spawn(&mut actions);
        let _ = nix::unistd::close(moved);
        spawned?;
    } else {
        actions.add_dup2(theirs.as_raw_fd(), TRACKER_FD)?;
        spawn(&mut actions)?;
    }
    drop(theirs);
    // From now on every process started from here inherits it (see the module docs).
    fcntl(&ours, FcntlArg::F_SETFD(FdFlag::empty()))?;
    Ok(ours)
}

/// Spawns the first process of the tracker (which forks the tracker and exits) and
/// reaps it.
fn spawn(actions: &mut PosixSpawnFileActions) -> io::Result<()> {
    for fd in 0..3 {
        let flags = if fd == 0 {
            OFlag::O_RDONLY
        } else {
            OFlag::O_WRONLY
        };
        // Nothing of the creator's terminal or pipes: a reader of the creator's output
        // must not wait for the tracker to end.
        actions.add_open(fd, "/dev/null", flags, Mode::empty())?;
    }
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK)?;
    attr.set_sigmask(&SigSet::empty())?;
    let program = std::env::args_os()
        .next()
        .unwrap_or_else(|| "multiproc-shm-tracker".into());
    let argv = [cstring(program.into_vec()), cstring(SELECTOR.into())];
    // The program's environment: its loader may need it (`LD_LIBRARY_PATH`).
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(kv)
        })
        .collect();
    let pid = posix_spawn(c"/proc/self/exe", actions, &attr, &argv, &env)?;
    loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn cstring(mut bytes: Vec<u8>) -> CString {
    bytes.retain(|b| *b != 0);
    CString::new(bytes).unwrap_or_default()
}

type InitArrayFn = extern "C" fn(c_int, *const *const c_char, *const *const c_char);

/// The constructor that turns a process started with [`SELECTOR`] into a tracker,
/// before `main` (and before the child's dispatch, which has no priority).
#[used]
#[unsafe(link_section = ".init_array.00300")]
static DISPATCH: InitArrayFn = dispatch;

/// Names the constructor, so that a program that creates a tracked block links it.
fn keep_linked() {
    std::hint::black_box(&DISPATCH);
}

extern "C" fn dispatch(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    if is_tracker(argc, argv) {
        run()
    }
}

fn is_tracker(argc: c_int, argv: *const *const c_char) -> bool {
    if argv.is_null() {
        // Some C libraries do not pass arguments to constructors: ask the kernel.
        let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
        return cmdline.split(|b| *b == 0).nth(1) == Some(SELECTOR.as_bytes());
    }
    if argc != 2 {
        return false;
    }
    // SAFETY: the loader passes `argc` valid, NUL-terminated argument strings.
    let arg = unsafe { *argv.add(1) };
    // SAFETY: as above.
    !arg.is_null() && unsafe { CStr::from_ptr(arg) }.to_bytes() == SELECTOR.as_bytes()
}

/// The tracker's life; never returns.
fn run() -> ! {
    // Only the socket survives: nothing else the creator left open stays held.
    // SAFETY: close_range takes two descriptor numbers and flags.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, TRACKER_FD + 1, u32::MAX, 0) };
    if closed != 0 {
        for fd in (TRACKER_FD + 1)..1024 {
            // SAFETY: closing numbers this process does not otherwise use (nothing
            // else runs yet: this is a constructor of a fresh process).
            unsafe { libc::close(fd) };
        }
    }
    // SAFETY: single-threaded (a constructor of a fresh process), so the child may do
    // anything.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => exit(0),
        Ok(ForkResult::Child) => {}
        Err(_) => exit(1),
    }
    let _ = setsid();
    let _ = std::env::set_current_dir("/");
    for sig in [
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGPIPE,
    ] {
        // SAFETY: installs the ignore disposition; no handler code involved.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    // SAFETY: descriptor 3 was given to this process by its creator, and nothing else
    // in this process owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(TRACKER_FD) };
    let mut tracked = std::collections::BTreeSet::new();
    let mut buf = [0u8; MAX_MESSAGE + 1];
    loop {
        match recv(socket.as_fd().as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(Errno::EINTR) => continue,
            // End of file: every holder is gone. An error: nothing more will come.
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some((kind, name)) = parse(&buf[..n]) {
                    if kind == b'R' {
                        tracked.insert(name);
                    } else {
                        tracked.remove(&name);
                    }
                }
            }
        }
    }
    for name in &tracked {
        let _ = named_shm::unlink(name);
    }
    exit(0)
}

/// A message: its kind (`R` or `U`) and the name as `shm_unlink` takes it; `None` for
/// anything else (a message cut at the buffer's end, a name that is no name).
fn parse(message: &[u8]) -> Option<(u8, CString)> {
    let (&kind, name) = message.split_first()?;
    if !matches!(kind, b'R' | b'U') || name.len() > named_shm::NAME_MAX {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?;
    Some((kind, named_shm::c_name(name)?))
}

fn exit(code: i32) -> ! {
    // SAFETY: ends the process at once, without running the program's exit handlers
    // (this process never ran the program).
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse() {
        assert_eq!(
            parse(b"Rpsm_1"),
            Some((b'R', CString::new("/psm_1").unwrap()))
        );
        assert_eq!(parse(b"Ux").map(|m| m.0), Some(b'U'));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"R"), None);
        assert_eq!(parse(b"Xname"), None);
        assert_eq!(parse(b"Ra/b"), None);
        assert_eq!(parse(b"R\xff"), None);
    }
}
