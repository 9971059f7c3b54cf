//! Frames over a Unix stream socket, with descriptors attached.
//!
//! A frame is a 4-byte little-endian length and that many bytes (see `codec`). The
//! descriptors of a frame travel as `SCM_RIGHTS` with the frame's first bytes. The
//! kernel delivers them with the `recvmsg` that reads those bytes, and never reads past
//! a message that carried descriptors in the same call; so the descriptors received by
//! one read belong to the last frame that starts within the bytes of that read. The
//! reader keeps them until that frame is taken.
//!
//! # Large messages
//!
//! A message of [`SEAL_ABOVE`] bytes or more sent on a Unix socket does not travel in
//! the stream: it is written into a `memfd` sealed against writing and resizing
//! ([`crate::os::sealed`]), and the frame only says so (a flag in its header, the
//! message's length as its body) and carries the `memfd` as its last descriptor. The
//! reader checks the `memfd` (its seals, and a size equal to the length announced)
//! and hands the message back mapped read-only, so it is copied once by the sender
//! and never by the reader: no copies in the socket, no fresh buffer faulted in page
//! by page. Sockets of other families (TCP) cannot carry descriptors: frames on them
//! are always sent whole.
//!
//! Nothing here trusts the peer: a length above the limit, descriptors arriving in the
//! middle of a frame, or descriptors cut off by the kernel are errors, so is a sealed
//! frame whose `memfd` is missing or not one the sender could have made (see
//! [`crate::os::sealed::check_payload`]), and the buffer grows only with bytes that
//! really arrived: one read asks for at most as many bytes
//! as are already held (at least 64 KiB, at most 16 MiB), so a header that announces
//! 1 GiB makes the reader allocate 64 KiB, not what it claims.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockaddrLike, SockaddrStorage, getsockname, sendmsg,
};

use crate::os::sealed;
use crate::os::sys;
use crate::wire::codec::{self, Encoded, MAX_FDS, SEALED_BODY};
use crate::wire::error::{CodecError, CodecErrorKind};
pub(crate) use crate::wire::payload::Payload;

mod reader;
#[cfg(test)]
mod tests;

pub(crate) use reader::FrameReader;

/// Messages of this many bytes or more travel in a sealed `memfd` on a Unix socket
/// (defined beside the encoder's sink, which encodes such a message into one).
pub(crate) use crate::wire::sink::SEAL_ABOVE;

/// One message received: its bytes and the descriptors sent with it.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    pub(crate) bytes: Payload,
    pub(crate) fds: Vec<OwnedFd>,
}

/// For an [`Encoded`] whose bytes are in this process (one made by `codec::encode`).
impl From<Encoded> for Frame {
    fn from(encoded: Encoded) -> Frame {
        debug_assert!(encoded.sealed.is_none(), "a sealed message made a frame");
        Frame {
            bytes: encoded.bytes.into(),
            fds: encoded.fds,
        }
    }
}

/// A frame that could not be read: the stream failed or its bytes were bad.
#[derive(Debug)]
pub(crate) enum FrameError {
    Io(io::Error),
    Codec(CodecError),
}

impl From<CodecError> for FrameError {
    fn from(e: CodecError) -> Self {
        FrameError::Codec(e)
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => e.fmt(f),
            FrameError::Codec(e) => e.fmt(f),
        }
    }
}

impl From<FrameError> for crate::error::Error {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => crate::error::Error::Io(e),
            FrameError::Codec(e) => crate::error::Error::Codec(e),
        }
    }
}

/// Sends one frame made of `parts` on a stream socket, with `fds` attached, and
/// waits for room when the socket is non-blocking. Never raises `SIGPIPE`: a peer that
/// closed its end gives `EPIPE`. On a Unix socket, a message of [`SEAL_ABOVE`] bytes or
/// more goes in a sealed `memfd` (module docs), unless `fds` already has as many
/// descriptors as a message can carry.
pub(crate) fn send_frame(
    sock: BorrowedFd<'_>,
    parts: &[&[u8]],
    fds: &[OwnedFd],
) -> Result<(), FrameError> {
    if fds.len() > MAX_FDS {
        return Err(CodecError::new(
            CodecErrorKind::Oversized,
            format!(
                "{} descriptors in one message, above the limit of {MAX_FDS}",
                fds.len()
            ),
        )
        .into());
    }
    let len = parts.iter().map(|p| p.len()).sum();
    let header = codec::frame_header(len)?;
    let mut raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    if len >= SEAL_ABOVE && fds.len() < MAX_FDS && is_unix(sock) {
        let memfd = sealed::seal_parts("message", parts)?;
        raw.push(memfd.as_raw_fd());
        let body: [u8; SEALED_BODY] = (len as u64).to_le_bytes();
        // `memfd` is closed once sent: the peer's copy keeps the memory.
        return write_all(sock, vec![&codec::sealed_header(), &body], &raw);
    }
    let mut bufs: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    bufs.push(&header);
    bufs.extend(parts.iter().copied().filter(|p| !p.is_empty()));
    write_all(sock, bufs, &raw)
}

/// Sends `message` (made by `codec::encode_message` or `codec::encode`) as one frame,
/// as [`send_frame`] does. A message already in a sealed `memfd` is sent as the sealed
/// frame, without a copy; on a socket that cannot carry it (TCP), or when the
/// message's own descriptors leave no room for it, its bytes are read back and sent
/// in the stream. The `memfd` stays `message`'s (the peer gets its own descriptor).
pub(crate) fn send_encoded(sock: BorrowedFd<'_>, message: &Encoded) -> Result<(), FrameError> {
    let Some(body) = &message.sealed else {
        return send_frame(sock, &[&message.bytes], &message.fds);
    };
    if message.fds.len() < MAX_FDS && is_unix(sock) {
        codec::frame_header(body.len)?;
        let mut raw: Vec<RawFd> = message.fds.iter().map(AsRawFd::as_raw_fd).collect();
        raw.push(body.fd.as_raw_fd());
        let len: [u8; SEALED_BODY] = (body.len as u64).to_le_bytes();
        return write_all(sock, vec![&codec::sealed_header(), &len], &raw);
    }
    let bytes = sealed::read_back(&body.fd, body.len)?;
    send_frame(sock, &[&bytes], &message.fds)
}

/// Whether `sock` is a Unix socket (one that carries descriptors).
fn is_unix(sock: BorrowedFd<'_>) -> bool {
    getsockname::<SockaddrStorage>(sock.as_raw_fd())
        .is_ok_and(|addr| addr.family() == Some(AddressFamily::Unix))
}

/// Writes all of `bufs` on `sock`, with the descriptors `raw` attached to the first
/// bytes.
fn write_all(sock: BorrowedFd<'_>, mut bufs: Vec<&[u8]>, raw: &[RawFd]) -> Result<(), FrameError> {
    let mut first = 0;
    let mut fds_sent = raw.is_empty();
    while first < bufs.len() {
        let iov: Vec<IoSlice<'_>> = bufs[first..].iter().map(|b| IoSlice::new(b)).collect();
        let rights = [ControlMessage::ScmRights(raw)];
        let cmsgs: &[ControlMessage<'_>] = if fds_sent { &[] } else { &rights };
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(mut sent) => {
                fds_sent = true;
                while first < bufs.len() && sent >= bufs[first].len() {
                    sent -= bufs[first].len();
                    first += 1;
                }
                if sent > 0 {
                    bufs[first] = &bufs[first][sent..];
                }
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                sys::poll_until(&[(sock.as_fd(), PollFlags::POLLOUT)], None)?;
            }
            Err(e) => return Err(FrameError::Io(e.into())),
        }
    }
    Ok(())
}
