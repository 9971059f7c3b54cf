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
//! middle of a frame, or descriptors cut off by the kernel are errors, so is a sealed frame whose `memfd` is missing or not one the
//! sender could have made (see [`crate::os::sealed::check_payload`]), and the buffer
//! grows only with bytes that really arrived: one read asks for at most as many bytes
//! as are already held (at least 64 KiB, at most 16 MiB), so a header that announces
//! 1 GiB makes the reader allocate 64 KiB, not what it claims.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage,
    getsockname, recvmsg, sendmsg,
};

use crate::os::sealed::{self, SealedMap};
use crate::os::sys;
use crate::wire::codec::{self, Encoded, HEADER_LEN, MAX_FDS, SEALED_BODY};
use crate::wire::error::{CodecError, CodecErrorKind};
use crate::wire::pages;
pub(crate) use crate::wire::payload::Payload;

/// Messages of this many bytes or more travel in a sealed `memfd` on a Unix socket.
///
/// Measured on a 2-CPU VM (4 KiB pages for `memfd`s: transparent huge pages are off
/// for shared memory), one thread sending frames to another: the `memfd` costs a
/// fresh page per 4 KiB at the sender (`pwrite`, about 58 ms for 64 MiB), mapping
/// them at the receiver (19 ms) and freeing them (23 ms), while the stream's buffers
/// are reused from one message to the next as long as the allocator keeps them, which
/// glibc does below 32 MiB. Per message: 1 MiB 2.0 ms in the stream, 2.3 ms sealed;
/// 16 MiB 20 ms and 26 ms; 32 MiB 83 ms and 69 ms; 64 MiB 194 ms and 141 ms.
pub(crate) const SEAL_ABOVE: usize = 32 << 20;

/// One message received: its bytes and the descriptors sent with it.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    pub(crate) bytes: Payload,
    pub(crate) fds: Vec<OwnedFd>,
}

impl From<Encoded> for Frame {
    fn from(encoded: Encoded) -> Frame {
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

/// Collects frames, and the descriptors that came with them, from a socket.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    /// `buf[..filled]` are the bytes not yet taken (`buf[0]` is the first byte of the
    /// next frame); `buf[filled..]` is zeroed room for the next reads, kept so that a
    /// large frame arriving in many reads is not zeroed again at each.
    buf: Vec<u8>,
    filled: usize,
    /// Stream offset of `buf[0]`.
    consumed: u64,
    /// Descriptors received, by the stream offset of the frame they belong to.
    fds: VecDeque<(u64, Vec<OwnedFd>)>,
    /// Room for the control messages of one read.
    cmsg: Vec<u8>,
    /// Never read past the end of the frame in progress (see [`FrameReader::exact`]).
    exact: bool,
}

impl FrameReader {
    /// A reader that reads a frame's header, then exactly its bytes, and never past
    /// its end: frames not taken yet stay in the socket, where another process holding
    /// the same socket can read them. Two reads per frame instead of one.
    pub(crate) fn exact() -> FrameReader {
        FrameReader {
            exact: true,
            ..FrameReader::default()
        }
    }

    /// The length of the message in progress, once its header has arrived (checked
    /// against the limit); for a sealed frame, once its body (the length) has.
    pub(crate) fn pending_len(&self) -> Option<Result<usize, CodecError>> {
        let header = match codec::parse_header(*self.data().first_chunk::<HEADER_LEN>()?) {
            Ok(header) => header,
            Err(e) => return Some(Err(e)),
        };
        if !header.sealed {
            return Some(Ok(header.len));
        }
        let body = self.data()[HEADER_LEN..].first_chunk::<SEALED_BODY>()?;
        Some(codec::sealed_len(*body))
    }

    /// Reads once from `sock`, blocking or not as the socket is: the count of bytes
    /// read, 0 at the end of the stream; `WouldBlock` when a non-blocking socket has
    /// nothing.
    pub(crate) fn fill(&mut self, sock: BorrowedFd<'_>) -> Result<usize, FrameError> {
        let want = self.want();
        let start = self.filled;
        if self.buf.len() < start + want {
            if self.buf.capacity() < start + want {
                self.buf.reserve(start + want - self.buf.len());
                pages::prefer_huge_pages(&mut self.buf);
            }
            self.buf.resize(start + want, 0);
        }
        if self.cmsg.is_empty() {
            self.cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
        }
        let result = {
            let mut iov = [IoSliceMut::new(&mut self.buf[start..start + want])];
            loop {
                match recvmsg::<()>(
                    sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut self.cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Err(Errno::EINTR) => continue,
                    Err(e) => break Err(io::Error::from(e)),
                    Ok(msg) => {
                        let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                        let mut fds = Vec::new();
                        if let Ok(cmsgs) = msg.cmsgs() {
                            for cmsg in cmsgs {
                                if let ControlMessageOwned::ScmRights(raw) = cmsg {
                                    // SAFETY: the kernel just installed these
                                    // descriptors in this process for us alone.
                                    fds.extend(
                                        raw.into_iter()
                                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                                    );
                                }
                            }
                        }
                        break Ok((msg.bytes, fds, truncated));
                    }
                }
            }
        };
        let (n, fds, truncated) = match result {
            Ok(read) => read,
            Err(e) => return Err(FrameError::Io(e)),
        };
        self.received(start, n, fds, truncated)?;
        Ok(n)
    }

    /// Takes in a read of `n` bytes at `buf[start..]`, with the descriptors that came
    /// with them (`truncated` if the kernel cut some off).
    fn received(
        &mut self,
        start: usize,
        n: usize,
        fds: Vec<OwnedFd>,
        truncated: bool,
    ) -> Result<(), CodecError> {
        self.filled = start + n;
        if truncated {
            return Err(CodecError::new(
                CodecErrorKind::Oversized,
                "descriptors were cut off: more than one message can carry",
            ));
        }
        if !fds.is_empty() {
            self.attach(start, fds)?;
        }
        Ok(())
    }

    /// What [`fill`](Self::fill) does, with `bytes` and `fds` standing for what the
    /// kernel would deliver: takes as many of `bytes` as one read would ask for, and
    /// returns how many it took. For fuzzing the reader without a socket.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn feed(&mut self, bytes: &[u8], fds: Vec<OwnedFd>) -> Result<usize, CodecError> {
        let n = self.want().min(bytes.len());
        let start = self.filled;
        if self.buf.len() < start + self.want() {
            self.buf.resize(start + self.want(), 0);
        }
        self.buf[start..start + n].copy_from_slice(&bytes[..n]);
        self.received(start, n, fds, false)?;
        Ok(n)
    }

    /// How many bytes the next read asks for. For fuzzing.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn wanted(&self) -> usize {
        self.want()
    }

    /// The bytes the reader holds, taken or not: what it has allocated for frames.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn buffer_len(&self) -> usize {
        self.buf.len()
    }

    /// Files `fds`, received with the bytes from `buf[from..]`, under the last frame
    /// that starts within those bytes.
    fn attach(&mut self, from: usize, fds: Vec<OwnedFd>) -> Result<(), CodecError> {
        let mut pos = 0usize;
        let mut last = None;
        while pos < self.filled {
            last = Some(pos);
            let Some(header) = self.data().get(pos..pos + HEADER_LEN) else {
                break;
            };
            let mut len = [0u8; HEADER_LEN];
            len.copy_from_slice(header);
            pos = pos + HEADER_LEN + codec::parse_header(len)?.len;
        }
        match last {
            Some(start) if start >= from => {
                self.fds.push_back((self.consumed + start as u64, fds));
                Ok(())
            }
            _ => Err(CodecError::new(
                CodecErrorKind::Decode,
                "descriptors arrived in the middle of a message",
            )),
        }
    }

    /// How many bytes to read next: the rest of the frame in progress, at least a page
    /// (unless exact) and at most [`FrameReader::room`].
    fn want(&self) -> usize {
        let needed = match self.data().first_chunk::<HEADER_LEN>() {
            // A bad header is an error at the next `next_frame`; read a little till then.
            Some(header) => codec::parse_header(*header)
                .map_or(0, |h| h.len + HEADER_LEN)
                .saturating_sub(self.filled),
            None if self.exact => HEADER_LEN - self.filled,
            None => 0,
        };
        let room = self.room();
        if self.exact {
            // Zero only if a whole frame waits to be taken, which callers take first.
            return needed.clamp(1, room);
        }
        needed.clamp(4096, room)
    }

    /// The most one read may add: as many bytes as are already held, at least 64 KiB
    /// and at most 16 MiB. The buffer thus grows with what the peer really sent (it at
    /// most doubles per read), not with the length a header claims.
    fn room(&self) -> usize {
        self.filled.clamp(64 << 10, 16 << 20)
    }

    /// Takes the next whole frame, if one has arrived. A sealed frame whose `memfd` is
    /// missing or wrong is an error, taken all the same: the next frame is intact.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, CodecError> {
        let Some(header) = self.data().first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = codec::parse_header(*header)?;
        let len = header.len;
        if self.filled < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.truncate(self.filled);
        self.filled -= HEADER_LEN + len;
        let rest = self.buf.split_off(HEADER_LEN + len);
        let bytes = std::mem::replace(&mut self.buf, rest);
        let start = self.consumed;
        self.consumed += (HEADER_LEN + len) as u64;
        let mut fds = match self.fds.front() {
            Some((at, _)) if *at == start => self.fds.pop_front().map(|(_, fds)| fds),
            _ => None,
        }
        .unwrap_or_default();
        if !header.sealed {
            return Ok(Some(Frame {
                bytes: Payload::heap_from(bytes, HEADER_LEN),
                fds,
            }));
        }
        let body = bytes[HEADER_LEN..]
            .first_chunk::<SEALED_BODY>()
            .copied()
            .unwrap_or_default();
        let len = codec::sealed_len(body)?;
        let Some(memfd) = fds.pop() else {
            return Err(CodecError::new(
                CodecErrorKind::Decode,
                "a sealed frame without its memfd",
            ));
        };
        let map = SealedMap::open(memfd, len)
            .map_err(|e| CodecError::new(CodecErrorKind::Decode, e.to_string()))?;
        Ok(Some(Frame {
            bytes: Payload::sealed(map),
            fds,
        }))
    }

    /// Bytes of an unfinished frame still held: non-zero at the end of the stream means
    /// the last frame was cut short.
    pub(crate) fn pending(&self) -> usize {
        self.filled
    }

    /// The bytes not yet taken.
    fn data(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Reads until a whole frame has arrived (from a blocking socket, or waiting on a
    /// non-blocking one until `deadline`). `Ok(None)` at a clean end of the stream.
    pub(crate) fn read_frame(
        &mut self,
        sock: BorrowedFd<'_>,
        deadline: Option<Instant>,
    ) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(Some(frame));
            }
            match self.fill(sock) {
                Ok(0) if self.pending() == 0 => return Ok(None),
                Ok(0) => {
                    return Err(CodecError::new(
                        CodecErrorKind::Truncated,
                        format!("the stream ended {} bytes into a frame", self.pending()),
                    )
                    .into());
                }
                Ok(_) => {}
                Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    let ready = sys::poll_until(&[(sock, PollFlags::POLLIN)], deadline)?;
                    if ready[0].is_empty() {
                        return Err(FrameError::Io(io::ErrorKind::TimedOut.into()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn pipe_fd() -> OwnedFd {
        nix::unistd::pipe().unwrap().0
    }

    #[test]
    fn frames_and_descriptors_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        send_frame(a.as_fd(), &[b"one"], &[]).unwrap();
        send_frame(a.as_fd(), &[b"tw", b"o"], &[pipe_fd(), pipe_fd()]).unwrap();
        send_frame(a.as_fd(), &[], &[]).unwrap();
        send_frame(a.as_fd(), &[b"four"], &[pipe_fd()]).unwrap();
        drop(a);
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        while let Some(frame) = reader.read_frame(b.as_fd(), None).unwrap() {
            got.push((frame.bytes.into_vec(), frame.fds.len()));
        }
        assert_eq!(
            got,
            vec![
                (b"one".to_vec(), 0),
                (b"two".to_vec(), 2),
                (Vec::new(), 0),
                (b"four".to_vec(), 1)
            ]
        );
    }

    #[test]
    fn a_large_frame_arrives_whole() {
        let (a, b) = UnixStream::pair().unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let expected = big.clone();
        let writer = std::thread::spawn(move || {
            send_frame(a.as_fd(), &[&big], &[pipe_fd()]).unwrap();
        });
        let frame = FrameReader::default()
            .read_frame(b.as_fd(), None)
            .unwrap()
            .unwrap();
        writer.join().unwrap();
        assert_eq!(frame.bytes, expected);
        assert_eq!(frame.fds.len(), 1);
    }

    #[test]
    fn truncated_and_oversized_frames_are_errors() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&10u32.to_le_bytes()).unwrap();
        a.write_all(b"short").unwrap();
        drop(a);
        match FrameReader::default().read_frame(b.as_fd(), None) {
            Err(FrameError::Codec(e)) => assert_eq!(e.kind(), CodecErrorKind::Truncated),
            other => panic!("unexpected {other:?}"),
        }
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&u32::MAX.to_le_bytes()).unwrap();
        match FrameReader::default().read_frame(b.as_fd(), None) {
            Err(FrameError::Codec(e)) => assert_eq!(e.kind(), CodecErrorKind::Oversized),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_claimed_length_does_not_size_the_buffer() {
        let (mut a, b) = UnixStream::pair().unwrap();
        // A header announcing 512 MiB, then 10 bytes of it.
        a.write_all(&(512u32 << 20).to_le_bytes()).unwrap();
        a.write_all(b"0123456789").unwrap();
        for mut reader in [FrameReader::default(), FrameReader::exact()] {
            while reader.pending() < 14 {
                reader.fill(b.as_fd()).unwrap();
                assert!(reader.buf.len() <= 128 << 10, "{} bytes", reader.buf.len());
            }
            assert!(reader.next_frame().unwrap().is_none());
            // Later bytes go to a second reader: put them back for it.
            a.write_all(&(512u32 << 20).to_le_bytes()).unwrap();
            a.write_all(b"0123456789").unwrap();
        }
        // Growing by what arrived still gets a large frame across.
        let (a, b) = UnixStream::pair().unwrap();
        let big = vec![5u8; 5 << 20];
        let writer = std::thread::spawn(move || send_frame(a.as_fd(), &[&big], &[]).unwrap());
        let mut reader = FrameReader::default();
        let frame = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
        writer.join().unwrap();
        assert_eq!(frame.bytes.len(), 5 << 20);
        assert!(frame.bytes.iter().all(|&x| x == 5));
    }

    #[test]
    fn descriptors_in_the_middle_of_a_frame_are_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        // A header announcing 8 bytes, then 4 of them with a descriptor attached.
        let fd = pipe_fd();
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(&8u32.to_le_bytes())],
            &[],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let mut reader = FrameReader::default();
        reader.fill(b.as_fd()).unwrap();
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"abcd")],
            &[ControlMessage::ScmRights(&[fd.as_raw_fd()])],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        match reader.fill(b.as_fd()) {
            Err(FrameError::Codec(e)) => assert!(e.to_string().contains("middle"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn exact_reads_leave_later_frames_in_the_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        send_frame(a.as_fd(), &[b"first"], &[]).unwrap();
        send_frame(a.as_fd(), &[], &[]).unwrap();
        send_frame(a.as_fd(), &[b"third"], &[pipe_fd()]).unwrap();
        let mut reader = FrameReader::exact();
        assert_eq!(
            reader.read_frame(b.as_fd(), None).unwrap().unwrap().bytes,
            b"first"
        );
        assert_eq!(reader.pending(), 0);
        // A second reader of the same socket sees the rest, descriptors included.
        let mut other = FrameReader::exact();
        assert!(
            other
                .read_frame(b.as_fd(), None)
                .unwrap()
                .unwrap()
                .bytes
                .is_empty()
        );
        let third = other.read_frame(b.as_fd(), None).unwrap().unwrap();
        assert_eq!((&*third.bytes, third.fds.len()), (&b"third"[..], 1));
        // The length of a frame is known once its header arrived.
        let mut a = a;
        std::io::Write::write_all(&mut a, &7u32.to_le_bytes()).unwrap();
        b.set_nonblocking(true).unwrap();
        assert!(reader.pending_len().is_none());
        reader.fill(b.as_fd()).unwrap();
        assert_eq!(reader.pending_len().unwrap().unwrap(), 7);
    }

    #[test]
    fn a_large_frame_travels_sealed_with_its_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let big: Vec<u8> = (0..SEAL_ABOVE as u32 + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        let sent = big.clone();
        // A thread: were the frame not sealed, it would not fit the socket's buffer.
        let writer = std::thread::spawn(move || {
            send_frame(a.as_fd(), &[b"head", &sent], &[pipe_fd(), pipe_fd()]).unwrap();
            send_frame(a.as_fd(), &[b"small"], &[]).unwrap();
        });
        let mut reader = FrameReader::exact();
        let frame = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
        assert!(frame.bytes.is_sealed());
        assert_eq!(frame.bytes.len(), big.len() + 4);
        assert_eq!(&frame.bytes[..4], b"head");
        assert!(frame.bytes[4..] == big[..]);
        // The value's descriptors, without the memfd.
        assert_eq!(frame.fds.len(), 2);
        let next = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
        assert!(!next.bytes.is_sealed());
        assert_eq!(next.bytes, b"small");
        writer.join().unwrap();
    }

    #[test]
    fn a_large_frame_over_tcp_travels_whole() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let big = vec![9u8; SEAL_ABOVE + 1];
        let writer = std::thread::spawn(move || send_frame(a.as_fd(), &[&big], &[]).unwrap());
        let frame = FrameReader::default()
            .read_frame(b.as_fd(), None)
            .unwrap()
            .unwrap();
        writer.join().unwrap();
        assert!(!frame.bytes.is_sealed());
        assert_eq!(frame.bytes.len(), SEAL_ABOVE + 1);
        assert!(frame.bytes.iter().all(|&x| x == 9));
    }

    /// Sends a sealed frame's header and `body` with `fds`, as a peer may.
    fn send_marked(sock: BorrowedFd<'_>, body: &[u8], fds: &[OwnedFd]) {
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
        let header = codec::sealed_header();
        let iov = [IoSlice::new(&header), IoSlice::new(body)];
        sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None).unwrap();
    }

    fn memfd_of(bytes: &[u8], seals: nix::fcntl::SealFlag) -> OwnedFd {
        use std::os::unix::fs::FileExt;
        let fd = crate::os::shm::memfd("test").unwrap();
        std::fs::File::from(fd.try_clone().unwrap())
            .write_all_at(bytes, 0)
            .unwrap();
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_ADD_SEALS(seals)).unwrap();
        fd
    }

    #[test]
    fn bad_sealed_frames_are_errors_and_the_next_frame_is_intact() {
        use nix::fcntl::SealFlag;
        let (a, b) = UnixStream::pair().unwrap();
        let len = |n: u64| n.to_le_bytes();
        let resize = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
        let (sock, _peer) = UnixStream::pair().unwrap();
        let cases: Vec<(&str, [u8; 8], Vec<OwnedFd>)> = vec![
            ("without its memfd", len(3), vec![]),
            ("a pipe", len(3), vec![pipe_fd()]),
            ("a socket", len(3), vec![sock.into()]),
            ("not sealed", len(3), vec![memfd_of(b"abc", resize)]),
            (
                "not sealed",
                len(3),
                vec![memfd_of(b"abc", SealFlag::F_SEAL_WRITE)],
            ),
            (
                "announced as 4",
                len(4),
                vec![memfd_of(b"abc", sealed::PAYLOAD_SEALS)],
            ),
            (
                "above the limit",
                len(codec::MAX_MESSAGE_LEN as u64 + 1),
                vec![memfd_of(b"abc", sealed::PAYLOAD_SEALS)],
            ),
            ("empty", len(0), vec![pipe_fd()]),
        ];
        for reader in [FrameReader::default(), FrameReader::exact()] {
            let mut reader = reader;
            for (what, body, fds) in &cases {
                let fds: Vec<OwnedFd> = fds.iter().map(|fd| fd.try_clone().unwrap()).collect();
                send_marked(a.as_fd(), body, &fds);
                send_frame(a.as_fd(), &[b"next"], &[]).unwrap();
                match reader.read_frame(b.as_fd(), None) {
                    Err(FrameError::Codec(e)) => assert!(e.to_string().contains(what), "{e}"),
                    other => panic!("{what}: unexpected {other:?}"),
                }
                let next = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
                assert_eq!(next.bytes, b"next", "after {what}");
            }
            // A genuine one still arrives.
            let fd = sealed::seal_parts("test", &[b"abc"]).unwrap();
            send_marked(a.as_fd(), &len(3), &[fd]);
            let frame = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
            assert_eq!((&*frame.bytes, frame.fds.len()), (&b"abc"[..], 0));
        }
    }

    #[test]
    fn nonblocking_reads_resume() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut reader = FrameReader::default();
        match reader.fill(b.as_fd()) {
            Err(FrameError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            other => panic!("unexpected {other:?}"),
        }
        send_frame(a.as_fd(), &[b"late"], &[]).unwrap();
        let frame = reader
            .read_frame(
                b.as_fd(),
                Some(sys::deadline_after(std::time::Duration::from_secs(10))),
            )
            .unwrap()
            .unwrap();
        assert_eq!(frame.bytes, b"late");
    }
}
