//! Receiving: the next message from the ring or the socket, whichever holds the
//! next sequence number, and the end of file.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::inner::{Attempt, Inner, Received, RecvFail, RxState, is_hangup, lock};
use super::layout::{MSG, SEQ_LEN};
use crate::error::Error;
use crate::ipc::error::{ChannelError, Corruption};
use crate::ipc::ring::{Ring, Word};
use crate::wire::error::{CodecError, CodecErrorKind};
use crate::wire::frames::FrameError;

impl Inner {
    // --- receiving ---

    /// Receives one message of at most `max` bytes: into `out` (cleared first), or
    /// mapped if it came in a sealed `memfd` (`Received::sealed`, `out` left empty).
    pub(super) fn recv_raw(
        &self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
        max: usize,
    ) -> std::result::Result<Received, RecvFail> {
        let dir = self.recv_dir().ok_or(ChannelError::WriteOnly)?;
        let mut socket_ready = false;
        loop {
            let attempt = {
                let mut rx = self.rx();
                if let Some(first) = &rx.broken {
                    return Err(ChannelError::Broken(first.clone()).into());
                }
                let ctl = &self.header().dirs[dir].ring;
                let Some(_held) = lock(&ctl.rx.lock, deadline) else {
                    return Err(RecvFail::Timeout);
                };
                self.try_recv(dir, &mut rx, out, max, socket_ready)?
            };
            match attempt {
                Attempt::Got(received) => return Ok(received),
                Attempt::Eof => return Err(RecvFail::Disconnected),
                Attempt::Retry => {
                    socket_ready = false;
                    // Each retry follows progress (a doorbell, a message published as
                    // the socket closed), but the deadline holds on this path too.
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(RecvFail::Timeout);
                    }
                }
                Attempt::Nothing(seen) => socket_ready = self.wait_readable(dir, seen, deadline)?,
            }
        }
    }

    /// Records an error that loses the stream's place, and returns it.
    fn break_stream(rx: &mut RxState, error: Error) -> RecvFail {
        rx.broken = Some(error.to_string());
        RecvFail::Failed(error)
    }

    /// With both receive locks held: takes the next message if it is there.
    fn try_recv(
        &self,
        dir: usize,
        rx: &mut RxState,
        out: &mut Vec<u8>,
        max: usize,
        socket_ready: bool,
    ) -> std::result::Result<Attempt, RecvFail> {
        let ring = self.ring(dir);
        let ctl = &self.header().dirs[dir].ring;
        let head = Word(ctl.head.word.load(Ordering::Relaxed));
        let next = head.count();
        if rx.reader.pending() == 0 {
            let tail = ring.tail(head);
            match ring.header(head, tail, |k| k == MSG) {
                Err(corrupt) => {
                    ring.release(ring.fresh_tail());
                    return Err(Self::break_stream(
                        rx,
                        ChannelError::Corrupt(Corruption::new(corrupt.0)).into(),
                    ));
                }
                Ok(Some(h)) if h.seq == u64::from(next) => {
                    if h.len as usize > max {
                        let e = ChannelError::BadMessageLength {
                            len: h.len as usize,
                            max,
                        };
                        return Err(Self::break_stream(rx, e.into()));
                    }
                    out.clear();
                    ring.read_payload(head, &h, out);
                    ring.release(Ring::after(head, &h));
                    return Ok(Attempt::Got(Received {
                        fds: Vec::new(),
                        sealed: None,
                    }));
                }
                // The next message went through the socket.
                Ok(Some(_)) => {}
                Ok(None) => {
                    if tail.count() == next && !socket_ready {
                        return Ok(Attempt::Nothing(tail));
                    }
                }
            }
        }
        // One frame from the socket, without waiting.
        loop {
            match rx.reader.pending_len() {
                Some(Ok(len)) if len > max.saturating_add(SEQ_LEN) => {
                    let e = ChannelError::BadMessageLength {
                        len: len.saturating_sub(SEQ_LEN),
                        max,
                    };
                    return Err(Self::break_stream(rx, e.into()));
                }
                Some(Err(e)) => return Err(Self::break_stream(rx, e.into())),
                _ => {}
            }
            let frame = match rx.reader.next_frame() {
                Ok(frame) => frame,
                Err(e) => return Err(Self::break_stream(rx, e.into())),
            };
            if let Some(frame) = frame {
                if frame.bytes.is_empty() {
                    // A doorbell: the message is in the ring.
                    return Ok(Attempt::Retry);
                }
                let Some(seq) = frame
                    .bytes
                    .first_chunk::<SEQ_LEN>()
                    .map(|s| u64::from_le_bytes(*s))
                else {
                    let e = CodecError::new(
                        CodecErrorKind::Decode,
                        format!(
                            "a frame of {} bytes, too short for a message's sequence number",
                            frame.bytes.len()
                        ),
                    );
                    return Err(Self::break_stream(rx, e.into()));
                };
                if seq != u64::from(next) {
                    let e = CodecError::new(
                        CodecErrorKind::Decode,
                        format!("message number {seq} where {next} was due"),
                    );
                    return Err(Self::break_stream(rx, e.into()));
                }
                out.clear();
                let mut bytes = frame.bytes;
                bytes.advance(SEQ_LEN);
                let sealed = if bytes.is_sealed() {
                    Some(bytes)
                } else {
                    out.extend_from_slice(&bytes);
                    None
                };
                ring.release(Word::new(next.wrapping_add(1), head.pos()));
                return Ok(Attempt::Got(Received {
                    fds: frame.fds,
                    sealed,
                }));
            }
            match rx.reader.fill(self.socket.as_fd()) {
                Ok(0) => {
                    if rx.reader.pending() > 0 {
                        let e = CodecError::new(
                            CodecErrorKind::Truncated,
                            format!(
                                "the stream ended {} bytes into a frame",
                                rx.reader.pending()
                            ),
                        );
                        return Err(Self::break_stream(rx, e.into()));
                    }
                    return self.at_end_of_file(dir, head, rx);
                }
                Ok(_) => {}
                Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Attempt::Nothing(ring.fresh_tail()));
                }
                Err(FrameError::Io(e)) if is_hangup(&e) => {
                    return self.at_end_of_file(dir, head, rx);
                }
                Err(FrameError::Io(e)) => return Err(e.into()),
                Err(FrameError::Codec(e)) => return Err(Self::break_stream(rx, e.into())),
            }
        }
    }

    /// The socket ended: messages published into the ring before the end are still
    /// due; a message announced but never sent means the sender died while sending.
    ///
    /// A ring record that is not the one due (or not a record at all) can never
    /// become due once the other end is gone: it is reported once as corruption and
    /// dropped with everything after it, so that the next receive finds the end of
    /// file (`Disconnected`) instead of retrying for ever.
    fn at_end_of_file(
        &self,
        dir: usize,
        head: Word,
        rx: &mut RxState,
    ) -> std::result::Result<Attempt, RecvFail> {
        let ring = self.ring(dir);
        let tail = ring.fresh_tail();
        if tail.pos() != head.pos() {
            let why = match ring.header(head, tail, |k| k == MSG) {
                Ok(Some(h)) if h.seq == u64::from(head.count()) => return Ok(Attempt::Retry),
                // Published and freed in between: look again.
                Ok(None) => return Ok(Attempt::Retry),
                Ok(Some(h)) => format!(
                    "message number {} where {} was due, from an end that is closed",
                    h.seq,
                    head.count()
                ),
                Err(corrupt) => corrupt.0,
            };
            ring.release(tail);
            return Err(RecvFail::Failed(
                ChannelError::Corrupt(Corruption::new(format!(
                    "{why}; the rest of the ring is dropped"
                )))
                .into(),
            ));
        }
        if tail.count() != head.count() {
            let e = CodecError::new(
                CodecErrorKind::Truncated,
                "the other end closed in the middle of sending a message",
            );
            return Err(Self::break_stream(rx, e.into()));
        }
        Ok(Attempt::Eof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::connection::{Connection, Pipe};
    use std::io::Write;
    use std::time::Duration;

    fn raw_write(conn: &Connection<u32>, bytes: &[u8]) {
        let mut s =
            std::os::unix::net::UnixStream::from(conn.as_fd().try_clone_to_owned().unwrap());
        s.set_nonblocking(false).unwrap();
        s.write_all(bytes).unwrap();
        s.set_nonblocking(true).unwrap();
    }

    #[test]
    fn garbage_on_the_socket() {
        for (bytes, expect) in [
            (&[0xff, 0xff, 0xff, 0xff][..], "message too large"),
            (
                &[3, 0, 0, 0, 1, 2, 3][..],
                "too short for a message's sequence number",
            ),
            (
                &[9, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1][..],
                "message number 5 where 0 was due",
            ),
        ] {
            let (a, b) = Pipe::<u32>::new().unwrap();
            raw_write(&a, bytes);
            let e = b.recv_timeout(Duration::from_secs(10)).unwrap_err();
            assert!(e.to_string().contains(expect), "{e}");
            let e = b.recv().unwrap_err();
            assert!(
                e.to_string().contains("unreadable after an earlier error"),
                "{e}"
            );
        }
        // Truncated: the writer closes in the middle of a frame.
        let (a, b) = Pipe::<u32>::new().unwrap();
        raw_write(&a, &[100, 0, 0, 0, 0, 0, 0, 0]);
        drop(a);
        let e = b.recv().unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // A forged length is not allocated.
        let (a, b) = Pipe::<u32>::new().unwrap();
        raw_write(&a, &(1u32 << 30).to_le_bytes());
        raw_write(&a, &[0; 8]);
        let e = b.recv_bytes_max(1000).unwrap_err();
        assert!(e.to_string().contains("bad message length"), "{e}");
        // A message that does not decode as `T` is consumed; the next one works.
        let (a, b) = Pipe::<u32>::new().unwrap();
        a.send_bytes(&[0xff; 3]).unwrap();
        a.send(7).unwrap();
        assert!(b.recv().is_err());
        assert_eq!(b.recv().unwrap(), 7);
    }
}
