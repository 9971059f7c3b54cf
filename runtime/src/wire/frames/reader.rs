//! Reading frames, and the descriptors that came with them, from a stream socket.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{MsgFlags, recvmsg};

use super::{Frame, FrameError, Payload};
use crate::os::fd;
use crate::os::sealed::SealedMap;
use crate::os::sys;
use crate::wire::codec::{self, HEADER_LEN, MAX_FDS, SEALED_BODY};
use crate::wire::error::{CodecError, CodecErrorKind};
use crate::wire::pages;

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
                        break Ok((msg.bytes, fd::received_fds(&msg), truncated));
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
    #[cfg(any(test, feature = "fuzzing"))]
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
