//! How a child learns what to run: the selector argument and the bootstrap channel.
//!
//! The parent starts `/proc/self/exe` with `posix_spawn` (no `fork` of the parent's
//! memory, so the cost does not grow with it) and three extra arguments:
//! `--multiproc-child <key> fd=<n>`. Descriptor `n` in the child is one end of a Unix
//! socket pair whose other end the parent keeps. Over it the parent sends two frames
//! (see [`codec`](crate::wire::codec)): the [`Bootstrap`] record, then the encoded arguments.
//! The child sends back one report when its worker ends (see `child`).
//!
//! The selector alone runs nothing: the child checks that descriptor `n` is a socket
//! whose peer is its own parent process before it reads a byte, and exits with status
//! 2 and a message otherwise.
//!
//! Everything that knows how the channel is set up lives here: [`launch`] on the
//! parent's side, [`accept`] on the child's. A child started on another machine would
//! get a different [`Source`] (a connection it opens itself, authenticated) and the
//! same [`Bootstrap`] record over it, without the rest of the runtime noticing.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{getsockopt, sockopt};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::unistd::{Pid, getppid};
use serde::{Deserialize, Serialize};

use crate::os::sys;
use crate::wire::codec::{self, Encoded};
use crate::wire::frames::{self, Frame, FrameError, FrameReader};

/// The first argument that marks a process as a multiproc child.
pub(crate) const SELECTOR: &str = "--multiproc-child";

/// The descriptor the bootstrap channel gets in the child, unless taken.
const CHILD_FD: RawFd = 3;

/// Identifies the protocol; a child of a different multiproc build refuses to start.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"mpc1");

/// Where a child gets its bootstrap from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A socket inherited from the parent as this descriptor.
    Inherited(RawFd),
    /// A TCP address (`host:port`) to connect to and authenticate with the key in the
    /// environment (see `remote`): a worker started on another machine.
    Tcp(String),
}

/// The selector arguments: which entry to run, and where the bootstrap comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    pub(crate) key: String,
    pub(crate) source: Source,
}

impl Selector {
    /// Reads the selector from a process's arguments (program name first).
    ///
    /// `None`: not a child. `Some(Err)`: the selector is there but malformed.
    pub(crate) fn parse<A: AsRef<[u8]>>(args: &[A]) -> Option<Result<Selector, String>> {
        if args.get(1)?.as_ref() != SELECTOR.as_bytes() {
            return None;
        }
        let key = args.get(2).map(|k| String::from_utf8_lossy(k.as_ref()));
        let source = args.get(3).map(|s| String::from_utf8_lossy(s.as_ref()));
        Some(match (key, source) {
            (Some(key), Some(source)) => {
                if let Some(addr) = source.strip_prefix("tcp=").filter(|a| a.contains(':')) {
                    return Some(Ok(Selector {
                        key: key.into_owned(),
                        source: Source::Tcp(addr.to_owned()),
                    }));
                }
                match source
                    .strip_prefix("fd=")
                    .and_then(|n| n.parse::<RawFd>().ok())
                {
                    Some(fd) if fd > 2 => Ok(Selector {
                        key: key.into_owned(),
                        source: Source::Inherited(fd),
                    }),
                    _ => Err(format!(
                        "the bootstrap source `{source}` is not `fd=<n>` or `tcp=<host:port>`"
                    )),
                }
            }
            _ => Err(format!(
                "`{SELECTOR}` needs a worker key and a bootstrap source"
            )),
        })
    }

    /// The arguments after the program name.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let source = match &self.source {
            Source::Inherited(fd) => format!("fd={fd}"),
            Source::Tcp(addr) => format!("tcp={addr}"),
        };
        vec![SELECTOR.to_owned(), self.key.clone(), source]
    }
}

/// What a child needs to know before its worker runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    pub(crate) magic: u32,
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) ident: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    /// `log::LevelFilter as usize` when the parent called `log_to_stderr`.
    pub(crate) log_level: Option<usize>,
}

/// Who starts a child: the parts of its [`Bootstrap`] that describe the parent.
#[derive(Debug, Clone)]
pub(crate) struct Parent {
    /// The current process's name.
    pub(crate) name: String,
    /// The level the child should log at (`log::LevelFilter as usize`), if any.
    pub(crate) log_level: Option<usize>,
}

impl Bootstrap {
    pub(crate) fn new(key: &str, name: &str, ident: &[u32], daemon: bool, parent: Parent) -> Self {
        Bootstrap {
            magic: MAGIC,
            key: key.to_owned(),
            name: name.to_owned(),
            ident: ident.to_vec(),
            daemon,
            parent_pid: std::process::id(),
            parent_name: parent.name,
            log_level: parent.log_level,
        }
    }
}

/// A started child, as the parent holds it.
#[derive(Debug)]
pub(crate) struct Launched {
    pub(crate) pid: Pid,
    pub(crate) pidfd: OwnedFd,
    /// The parent's end of the channel, non-blocking.
    pub(crate) channel: UnixStream,
}

/// Starts a child that runs `boot.key` with the encoded `args`.
pub(crate) fn launch(boot: &Bootstrap, args: &Encoded) -> crate::error::Result<Launched> {
    let record = codec::encode_record(boot)?;

    let (ours, theirs) = UnixStream::pair()?;
    let target = if theirs.as_raw_fd() == CHILD_FD {
        CHILD_FD + 1
    } else {
        CHILD_FD
    };
    let selector = Selector {
        key: boot.key.clone(),
        source: Source::Inherited(target),
    };
    let pid = spawn_self(&selector, theirs.as_raw_fd(), target)?;
    drop(theirs);
    hand_over(pid, ours, &record, args)
}

/// A pidfd of the child `pid` this process just started; without one the child cannot
/// be watched safely, so on failure it is killed and reaped at once.
pub(crate) fn pidfd_or_stop(pid: Pid) -> nix::Result<OwnedFd> {
    sys::pidfd_open(pid).inspect_err(|_| {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    })
}

/// The parent's side once child `pid` exists with the other end of `ours`: opens its
/// pidfd and sends the bootstrap `record` and the arguments. A child that cannot be
/// watched or fed is killed and reaped; one that closed its channel early is not an
/// error here (its exit code tells the rest).
pub(crate) fn hand_over(
    pid: Pid,
    ours: UnixStream,
    record: &[u8],
    args: &Encoded,
) -> crate::error::Result<Launched> {
    let pidfd = pidfd_or_stop(pid)?;
    ours.set_nonblocking(true)?;
    let sent = frames::send_frame(ours.as_fd(), &[record], &[])
        .and_then(|()| frames::send_encoded(ours.as_fd(), args));
    match sent {
        Ok(()) => {}
        // The child died before reading its bootstrap; its exit code tells the rest.
        Err(FrameError::Io(e))
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EPIPE | nix::libc::ECONNRESET)
            ) =>
        {
            log::trace!("child {pid} closed its bootstrap channel early: {e}");
        }
        Err(e) => {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            return Err(e.into());
        }
    }
    Ok(Launched {
        pid,
        pidfd,
        channel: ours,
    })
}

/// `posix_spawn` of this same executable with the selector, the channel as `target`,
/// stdin from `/dev/null`, an empty signal mask, and default handling of the signals
/// multiproc relies on (so that a parent ignoring `SIGCHLD` or blocking `SIGTERM` does
/// not pass that on).
pub(crate) fn spawn_self(selector: &Selector, channel: RawFd, target: RawFd) -> nix::Result<Pid> {
    let mut actions = PosixSpawnFileActions::init()?;
    actions.add_dup2(channel, target)?;
    actions.add_open(0, "/dev/null", OFlag::O_RDONLY, Mode::empty())?;

    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    attr.set_sigmask(&SigSet::empty())?;
    let mut defaults = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
        Signal::SIGPIPE,
    ] {
        defaults.add(sig);
    }
    attr.set_sigdefault(&defaults)?;

    let program = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsStr::new("multiproc-child").to_owned());
    let mut argv = vec![cstring(program.as_bytes())];
    argv.extend(selector.to_args().iter().map(|a| cstring(a.as_bytes())));
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect();
    posix_spawn(c"/proc/self/exe", &actions, &attr, &argv, &env)
}

/// A C string of `bytes`, cut at the first NUL (arguments and environment entries
/// cannot hold one anyway).
fn cstring(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).unwrap_or_default()
}

/// This process's arguments, from `/proc/self/cmdline` (which needs no help from std's
/// start-up code, unlike `std::env::args` on some C libraries).
pub(crate) fn process_args() -> Vec<Vec<u8>> {
    let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    let mut args: Vec<Vec<u8>> = cmdline.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    if args.last().is_some_and(Vec::is_empty) {
        args.pop();
    }
    args
}

/// Why a child could not get its bootstrap.
#[derive(Debug)]
pub(crate) enum AcceptError {
    /// No genuine channel: the selector was given by hand, or is stale.
    NoChannel(String),
    /// The channel is genuine but what came over it is not a bootstrap.
    Garbled(String),
    /// The parent that started this process ended before the bootstrap was read.
    ParentGone,
}

/// The child's side: checks the channel named by `selector`, reads the bootstrap
/// record and the arguments, and keeps the channel (close-on-exec) for the report.
pub(crate) fn accept(selector: &Selector) -> Result<(Bootstrap, Frame, UnixStream), AcceptError> {
    let Source::Inherited(fd) = selector.source else {
        return Err(AcceptError::NoChannel(
            "a TCP bootstrap source is read by `remote`, not here".to_owned(),
        ));
    };
    let channel = inherited_channel(fd)?;
    let mut reader = FrameReader::default();
    let (boot, args) = read_bootstrap(&mut reader, channel.as_fd(), &selector.key)?;
    Ok((boot, args, channel))
}

/// Reads the bootstrap record and the arguments from `channel`, and checks that the
/// record is of this protocol and names `key`.
pub(crate) fn read_bootstrap(
    reader: &mut FrameReader,
    channel: BorrowedFd<'_>,
    key: &str,
) -> Result<(Bootstrap, Frame), AcceptError> {
    let garbled = |what: &str, e: FrameError| AcceptError::Garbled(format!("{what}: {e}"));
    let record = reader
        .read_frame(channel, None)
        .map_err(|e| garbled("cannot read the bootstrap record", e))?
        .ok_or_else(|| {
            AcceptError::Garbled("the parent closed the channel before the bootstrap".into())
        })?;
    let boot: Bootstrap = codec::decode_record(&record.bytes)
        .map_err(|e| garbled("bad bootstrap record", e.into()))?;
    if boot.magic != MAGIC {
        return Err(AcceptError::Garbled(format!(
            "bootstrap record of an unknown protocol ({:#x})",
            boot.magic
        )));
    }
    if boot.key != key {
        return Err(AcceptError::Garbled(format!(
            "the selector names `{key}` but the bootstrap names `{}`",
            boot.key
        )));
    }
    let args = reader
        .read_frame(channel, None)
        .map_err(|e| garbled("cannot read the arguments", e))?
        .ok_or_else(|| {
            AcceptError::Garbled("the parent closed the channel before the arguments".into())
        })?;
    Ok((boot, args))
}

/// The channel named by `selector`, checked as [`accept`] checks it, for a process
/// that reads something else than a bootstrap over it (the fork server).
pub(crate) fn inherited_channel_of(selector: &Selector) -> Result<UnixStream, AcceptError> {
    match selector.source {
        Source::Inherited(fd) => inherited_channel(fd),
        Source::Tcp(_) => Err(AcceptError::NoChannel(format!(
            "this process was started with `{SELECTOR}` and a TCP source, but the fork \
             server takes only a socket inherited from its parent; nothing was run"
        ))),
    }
}

/// Takes descriptor `fd` as the bootstrap channel if it is a Unix socket connected to
/// this process's parent.
fn inherited_channel(fd: RawFd) -> Result<UnixStream, AcceptError> {
    let not_ours = |why: String| {
        AcceptError::NoChannel(format!(
            "this process was started with `{SELECTOR}`, which is for multiproc's own use, \
             but {why}; it has no bootstrap channel from a parent multiproc process, so \
             nothing was run"
        ))
    };
    if !is_open(fd) {
        return Err(not_ours(format!("descriptor {fd} is not open")));
    }
    // SAFETY: `fd` is open (just checked) and is the channel this process inherited:
    // no other code in it owns that number, so nothing closes it during the checks.
    unsafe { with_borrowed(fd, |borrowed| check_channel(fd, borrowed, not_ours)) }?;
    // SAFETY: the descriptor is open, and nothing else in this fresh process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| AcceptError::NoChannel(format!("descriptor {fd}: {e}")))?;
    Ok(UnixStream::from(owned))
}

/// Checks that the open descriptor `borrowed` (number `fd`) is a Unix socket whose peer
/// is this process's parent; `not_ours` says why not otherwise.
fn check_channel(
    fd: RawFd,
    borrowed: BorrowedFd<'_>,
    not_ours: impl Fn(String) -> AcceptError,
) -> Result<(), AcceptError> {
    let stat = fstat(borrowed).map_err(|e| not_ours(format!("descriptor {fd}: {e}")))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(not_ours(format!("descriptor {fd} is not a socket")));
    }
    let creds = getsockopt(&borrowed, sockopt::PeerCredentials)
        .map_err(|e| not_ours(format!("descriptor {fd} is not a Unix socket ({e})")))?;
    let parent = getppid();
    if creds.pid() <= 0 {
        // A TCP or UDP socket, or a Unix socket that is not connected: no process is
        // at the other end, so no parent can have died there.
        return Err(not_ours(format!(
            "the socket at descriptor {fd} is not a socket of my parent: no process is \
             connected to it"
        )));
    }
    if creds.pid() != parent.as_raw() {
        if u32::try_from(creds.pid()).is_ok_and(crate::os::identity::process_is_dead) {
            return Err(AcceptError::ParentGone);
        }
        return Err(not_ours(format!(
            "the socket at descriptor {fd} belongs to process {}, not to the parent {parent}",
            creds.pid()
        )));
    }
    Ok(())
}

/// Whether descriptor number `fd` is open in this process: `fcntl(F_GETFD)` on the bare
/// number, which reads its flags and claims nothing about who owns it.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; a number that is not open gives
    // EBADF.
    unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) != -1 }
}

/// Runs `f` with descriptor `fd` borrowed for the call only (the borrow's lifetime is
/// the closure's argument, so it cannot outlive the call).
///
/// # Safety
///
/// `fd` must be open when this is called and stay open until `f` returns: neither `f`
/// nor anything else in the process may close it meanwhile.
unsafe fn with_borrowed<R>(fd: RawFd, f: impl FnOnce(BorrowedFd<'_>) -> R) -> R {
    // SAFETY: the caller keeps `fd` open for the whole call, which the borrow cannot
    // outlive.
    f(unsafe { BorrowedFd::borrow_raw(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parses() {
        assert_eq!(Selector::parse(&["prog"]), None);
        assert_eq!(Selector::parse(&["prog", "--other"]), None);
        assert_eq!(
            Selector::parse(&["prog", SELECTOR, "m::f", "fd=3"]),
            Some(Ok(Selector {
                key: "m::f".into(),
                source: Source::Inherited(3)
            }))
        );
        assert!(matches!(Selector::parse(&["prog", SELECTOR]), Some(Err(_))));
        assert!(matches!(
            Selector::parse(&["prog", SELECTOR, "m::f", "fd=1"]),
            Some(Err(_))
        ));
        assert!(matches!(
            Selector::parse(&["prog", SELECTOR, "m::f", "tcp=x"]),
            Some(Err(_))
        ));
        assert_eq!(
            Selector::parse(&["prog", SELECTOR, "m::f", "tcp=node1:4000"]),
            Some(Ok(Selector {
                key: "m::f".into(),
                source: Source::Tcp("node1:4000".into())
            }))
        );
    }

    #[test]
    fn selector_round_trips() {
        let sel = Selector {
            key: "a::b".into(),
            source: Source::Inherited(4),
        };
        let mut args = vec!["prog".to_owned()];
        args.extend(sel.to_args());
        assert_eq!(Selector::parse(&args), Some(Ok(sel)));
    }
}
