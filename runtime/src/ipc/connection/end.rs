//! [`Connection`]: one end of a pipe, its typed and raw-bytes API, and how it
//! crosses to another process.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::ipc::error::ChannelError;
use crate::ipc::scratch::{GET_SCRATCH, PUT_SCRATCH, with_scratch};
use crate::ipc::wait::{Waitable, Watch};
use crate::os::shm::SharedRegion;
use crate::os::sys;
use crate::wire::codec::{self, MAX_MESSAGE_LEN, PortableFd};

use super::inner::{Inner, Received, RecvFail, SendFail};
use super::layout::SEQ_LEN;
use super::{RecvError, RecvIntoError, RecvTimeoutError, SendError};

/// One end of a [`Pipe`](crate::Pipe): sends and receives messages of type `T` (and raw byte
/// messages), to and from the other end, in whatever process each end is.
///
/// An end crosses to another process as a worker argument, a field of a `#[process]`
/// struct, or inside a message on a queue or on another connection.
/// Messages keep their boundaries and their order; `send` returns once the message is
/// in the pipe (in shared memory, or in the socket's buffer).
///
/// # Which transport, and why
///
/// Small messages without handles go through shared memory, with a receiver that
/// spins briefly before it sleeps: a round trip between two busy processes on
/// different CPUs takes about a microsecond or less (0.5 to 1.7 µs on the project's
/// 2-CPU VM, where a socket pair takes 60 to 90 µs, two kernel wake-ups), and one
/// between two processes sharing a CPU about two context switches (5 µs there, a
/// socket pair 12 µs). Messages that hold handles
/// (descriptors can only cross through a socket), large ones (over 32 KiB) and those
/// sent while the shared buffer is full go through a Unix socket, which also tells a
/// receiver that the other end is gone. The order of messages is kept across both. An
/// idle receiver sleeps in the kernel, woken through the socket.
///
/// # End of file
///
/// Once the other end is closed in every process that held it (dropped, or its process
/// ended), messages already sent are still received, then `recv` fails with
/// `Disconnected` (Python's `EOFError`) and [`poll`](Self::poll) reports `true`; `send`
/// fails with `Disconnected` (Python's `BrokenPipeError`). As in Python, a process that
/// still holds a copy of the other end keeps it open: a handle given to a worker as an
/// argument is moved there, so the parent's copy is gone once the child has it.
///
/// # Bad input
///
/// Nothing read from the socket or the shared memory is trusted. A garbled, truncated
/// or oversized frame (a length above [`MAX_MESSAGE_LEN`](crate::MAX_MESSAGE_LEN), or
/// above the limit given to [`recv_bytes_max`](Self::recv_bytes_max)) is reported as an
/// error naming the problem, without reading or allocating the announced length.
/// After such an error the connection has lost its place in the stream: every later
/// receive fails with [`ChannelError::Broken`] (holding the first error), while sending
/// still works. A message that decodes badly as `T` is a mere error: it is consumed
/// and the next `recv` takes the next message.
///
/// # Caveats
///
/// - Each end is meant to be used by one process at a time, as in Python: two
///   processes receiving on the same end at once each get some of the messages, and a
///   process killed in the middle of receiving a large message on an end that another
///   process keeps using leaves that end unreadable (an error, not a hang).
/// - A copy of an end that was encoded but never received (a message dropped unread, a
///   process that was never started) still counts as open in shared memory, so the
///   other end's `send` notices the close only through the socket, as after a kill.
/// - A peer killed without closing its end is noticed by `recv` at once (the socket
///   closes), but `send` may succeed while the shared buffer has room (the count of
///   live handles in shared memory cannot see a kill); it fails once the buffer is half
///   full.
/// - A connection whose `recv_timeout` timed out in the middle of a large message
///   keeps the part it read; it cannot be sent to another process until the message
///   has been received.
pub struct Connection<T> {
    inner: Inner,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Connection<T> {
    pub(super) fn from_inner(inner: Inner) -> Self {
        Connection {
            inner,
            _item: PhantomData,
        }
    }

    /// Whether this end can receive (not the writer of a one-way pipe).
    pub fn is_readable(&self) -> bool {
        self.inner.recv_dir().is_some()
    }

    /// Whether this end can send (not the reader of a one-way pipe).
    pub fn is_writable(&self) -> bool {
        self.inner.send_dir().is_some()
    }

    /// Closes this handle (the same as dropping it). The other end sees end of file
    /// once every handle of this end, in every process, is closed.
    pub fn close(self) {}

    /// Sends `buf` as one message of raw bytes (Python's `send_bytes`); the other end
    /// reads it with [`recv_bytes`](Self::recv_bytes).
    ///
    /// Fails with [`ChannelError::Disconnected`] if the other end is closed, and
    /// [`ChannelError::ReadOnly`] on the reading end of a one-way pipe.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        match self.inner.send_raw(buf, Vec::new()) {
            Ok(()) => Ok(()),
            Err(SendFail::Disconnected) => Err(ChannelError::Disconnected.into()),
            Err(SendFail::Failed(e)) => Err(e),
        }
    }

    /// Sends `buf[offset..offset + size]` (to the end if `size` is `None`) as one
    /// message, with Python's checks: `"buffer length < offset"`, `"buffer length <
    /// offset + size"` ([`ChannelError::InvalidArgument`]).
    pub fn send_bytes_range(&self, buf: &[u8], offset: usize, size: Option<usize>) -> Result<()> {
        if offset > buf.len() {
            return Err(ChannelError::InvalidArgument("buffer length < offset").into());
        }
        let end = match size {
            None => buf.len(),
            Some(size) => match offset.checked_add(size) {
                Some(end) if end <= buf.len() => end,
                _ => {
                    return Err(
                        ChannelError::InvalidArgument("buffer length < offset + size").into(),
                    );
                }
            },
        };
        self.send_bytes(&buf[offset..end])
    }

    /// Receives one message as raw bytes (Python's `recv_bytes`), waiting for it.
    pub fn recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.recv_bytes_max(MAX_MESSAGE_LEN)
    }

    /// As [`recv_bytes`](Self::recv_bytes), but a message longer than `maxlength` is
    /// an error ([`ChannelError::BadMessageLength`]) found before it is read, after
    /// which this end cannot receive any more (Python's `recv_bytes(maxlength)`).
    pub fn recv_bytes_max(&self, maxlength: usize) -> std::result::Result<Vec<u8>, RecvError> {
        let mut out = Vec::new();
        let received = self.recv_message(&mut out, maxlength)?;
        Ok(received.into_vec(out))
    }

    /// One message, into `out` or mapped (see `Inner::recv_raw`).
    fn recv_message(
        &self,
        out: &mut Vec<u8>,
        maxlength: usize,
    ) -> std::result::Result<Received, RecvError> {
        match self.inner.recv_raw(out, None, maxlength) {
            Ok(received) => Ok(received),
            Err(RecvFail::Disconnected) => Err(RecvError::Disconnected),
            Err(RecvFail::Failed(e)) => Err(RecvError::Failed(e)),
            Err(RecvFail::Timeout) => Err(RecvError::Failed(ChannelError::Timeout.into())),
        }
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into`; for an offset, pass `&mut buf[offset..]`). A message longer
    /// than `buf` is returned whole in [`RecvIntoError::BufferTooShort`].
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> std::result::Result<usize, RecvIntoError> {
        let mut out = Vec::new();
        let received = self.recv_message(&mut out, MAX_MESSAGE_LEN)?;
        // A message that came sealed is copied once, from where it is mapped.
        let message = received.sealed.as_deref().unwrap_or(&out);
        match buf.get_mut(..message.len()) {
            Some(dst) => {
                dst.copy_from_slice(message);
                Ok(message.len())
            }
            None => Err(RecvIntoError::BufferTooShort(received.into_vec(out))),
        }
    }

    /// Whether a message (or the end of file) is there to receive, waiting up to
    /// `timeout` for one (`None`: as long as it takes; `Some(Duration::ZERO)`: not at
    /// all, Python's `poll()`). A message stays until received.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.inner.poll(timeout.map(sys::deadline_after))
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Sends `value` to the other end.
    ///
    /// Fails, giving the value back, if the other end is closed
    /// ([`SendError::Disconnected`]), if the value cannot be encoded, or on the reading
    /// end of a one-way pipe. Waits only while the socket is full (a large message, or
    /// a receiver that does not keep up).
    pub fn send(&self, value: T) -> std::result::Result<(), SendError<T>> {
        let sent = with_scratch(&PUT_SCRATCH, |buf| {
            // Room for the sequence number first: a large message is encoded straight
            // into a `memfd` that `send_memfd` completes with it and seals.
            buf.extend_from_slice(&[0; SEQ_LEN]);
            let (fds, memfd) =
                codec::encode_message_into(&value, buf).map_err(|e| SendFail::Failed(e.into()))?;
            match memfd {
                None => self.inner.send_raw(&buf[SEQ_LEN..], fds),
                Some((file, len)) => self.inner.send_memfd(file, len, fds),
            }
        });
        match sent {
            Ok(()) => Ok(()),
            Err(SendFail::Disconnected) => Err(SendError::Disconnected(value)),
            Err(SendFail::Failed(e)) => Err(SendError::Failed(value, e)),
        }
    }

    /// Receives the next message, waiting for it.
    pub fn recv(&self) -> std::result::Result<T, RecvError> {
        match self.recv_with(None) {
            Ok(value) => Ok(value),
            Err(RecvFail::Disconnected) => Err(RecvError::Disconnected),
            Err(RecvFail::Failed(e)) => Err(RecvError::Failed(e)),
            Err(RecvFail::Timeout) => Err(RecvError::Failed(ChannelError::Timeout.into())),
        }
    }

    /// Receives the next message, waiting at most `timeout` for it.
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvTimeoutError> {
        match self.recv_with(Some(sys::deadline_after(timeout))) {
            Ok(value) => Ok(value),
            Err(RecvFail::Timeout) => Err(RecvTimeoutError::Timeout),
            Err(RecvFail::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(RecvFail::Failed(e)) => Err(RecvTimeoutError::Failed(e)),
        }
    }

    fn recv_with(&self, deadline: Option<Instant>) -> std::result::Result<T, RecvFail> {
        with_scratch(&GET_SCRATCH, |buf| {
            let received = self.inner.recv_raw(buf, deadline, MAX_MESSAGE_LEN)?;
            // A message that came sealed is decoded where it is mapped.
            let bytes = received.sealed.as_deref().unwrap_or(buf);
            codec::decode(bytes, received.fds).map_err(|e| RecvFail::Failed(e.into()))
        })
    }
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.is_readable())
            .field("writable", &self.is_writable())
            .finish_non_exhaustive()
    }
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        if self.inner.rx().reader.pending() > 0 {
            return Err(S::Error::custom(
                "a connection in the middle of receiving a message cannot be sent to another \
                 process",
            ));
        }
        let ok =
            (&self.inner.region, &self.inner.socket, self.inner.end as u8).serialize(serializer)?;
        // The copy in flight counts as a handle of this end until it is received, so
        // that dropping this one does not look like closing the end.
        self.inner.info().holders[self.inner.end].fetch_add(1, Ordering::SeqCst);
        Ok(ok)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (region, socket, end): (SharedRegion, PortableFd, u8) =
            Deserialize::deserialize(deserializer)?;
        let inner = Inner::from_parts(region, socket, end, std::any::type_name::<T>())
            .map_err(D::Error::custom)?;
        Ok(Connection::from_inner(inner))
    }
}

/// Ready when a message (or the end of file) can be received.
impl<T> Waitable for Connection<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.inner.socket.as_fd()
    }

    fn __watch(&self) -> Option<&dyn Watch> {
        Some(&self.inner)
    }
}

impl<T> AsFd for Connection<T> {
    /// The end's socket (Python's `fileno()`). Writing to it directly bypasses the
    /// protocol: the other end reports garbled frames.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.socket.as_fd()
    }
}

#[cfg(test)]
impl<T> Connection<T> {
    /// Receivers asleep on what this end sends (see `Inner::sleeping_receivers`).
    pub(super) fn sleeping_receivers(&self) -> u32 {
        self.inner.sleeping_receivers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::connection::Pipe;

    #[test]
    fn messages_keep_boundaries_and_order_across_both_paths() {
        let (a, b) = Pipe::<Vec<u8>>::new().unwrap();
        let sender = std::thread::spawn(move || {
            for i in 0..200u32 {
                let len = if i % 10 == 0 {
                    (300 << 10) - i as usize
                } else {
                    i as usize
                };
                a.send(vec![i as u8; len]).unwrap();
            }
            a.send_bytes(b"a").unwrap();
            a.send_bytes(b"").unwrap();
            a.send_bytes(b"cd").unwrap();
            a
        });
        for i in 0..200u32 {
            let len = if i % 10 == 0 {
                (300 << 10) - i as usize
            } else {
                i as usize
            };
            let got = b.recv().unwrap();
            assert_eq!(got.len(), len, "message {i}");
            assert!(got.iter().all(|x| *x == i as u8));
        }
        assert_eq!(b.recv_bytes().unwrap(), b"a");
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), b"");
        assert_eq!(b.recv_bytes().unwrap(), b"cd");
        let a = sender.join().unwrap();
        // Both directions.
        b.send(vec![1]).unwrap();
        assert_eq!(a.recv().unwrap(), [1]);
    }

    #[test]
    fn end_of_file_after_the_last_message() {
        let (a, b) = Pipe::<u32>::new().unwrap();
        a.send(1).unwrap();
        a.send(2).unwrap();
        drop(a);
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(b.recv().unwrap(), 1);
        assert_eq!(b.recv().unwrap(), 2);
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert!(b.recv().unwrap_err().is_disconnected());
        assert!(
            b.recv_timeout(Duration::from_secs(5))
                .unwrap_err()
                .is_disconnected()
        );
        let e = b.send(3).unwrap_err();
        assert!(e.is_disconnected());
        assert_eq!(e.into_inner(), 3);
    }

    #[test]
    fn poll_and_timeouts() {
        let (a, b) = Pipe::<u32>::new().unwrap();
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
        let start = Instant::now();
        assert!(!b.poll(Some(Duration::from_millis(200))).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(190));
        assert!(
            b.recv_timeout(Duration::from_millis(50))
                .unwrap_err()
                .is_timeout()
        );
        // Send only once `poll(None)` is asleep, so that it is the send that ends it.
        let sender = std::thread::spawn(move || {
            super::super::wake::wait_until(|| a.sleeping_receivers() > 0);
            a.send(5).unwrap();
            a
        });
        assert!(b.poll(None).unwrap());
        assert!(b.poll(None).unwrap()); // stays true until received
        assert_eq!(b.recv().unwrap(), 5);
        drop(sender.join().unwrap());
    }

    #[test]
    fn one_way() {
        let (r, w) = Pipe::<u32>::one_way().unwrap();
        assert!(r.is_readable() && !r.is_writable());
        assert!(w.is_writable() && !w.is_readable());
        let e = r.send(1).unwrap_err();
        assert_eq!(e.to_string(), "connection is read-only");
        let e = w.recv().unwrap_err();
        assert_eq!(e.to_string(), "connection is write-only");
        assert!(w.poll(Some(Duration::ZERO)).is_err());
        w.send(9).unwrap();
        assert_eq!(r.recv().unwrap(), 9);
    }

    #[test]
    fn python_argument_checks() {
        let (a, b) = Pipe::<u32>::new().unwrap();
        let abc: Vec<u8> = (b'a'..=b'z').collect();
        a.send_bytes_range(&abc, 5, None).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), &abc[5..]);
        a.send_bytes_range(&abc, 7, Some(8)).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"hijklmno");
        a.send_bytes_range(&abc, 26, None).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"");
        a.send_bytes_range(&abc, 26, Some(0)).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"");
        let err = |r: Result<()>| r.unwrap_err().to_string();
        assert_eq!(
            err(a.send_bytes_range(&abc, 27, None)),
            "buffer length < offset"
        );
        assert_eq!(
            err(a.send_bytes_range(&abc, 22, Some(5))),
            "buffer length < offset + size"
        );
        assert_eq!(
            err(a.send_bytes_range(&abc, 26, Some(1))),
            "buffer length < offset + size"
        );
        // recv_bytes_into: at an offset, and too short.
        a.send_bytes(b"hi").unwrap();
        let mut buf = *b"......";
        assert_eq!(b.recv_bytes_into(&mut buf[2..]).unwrap(), 2);
        assert_eq!(&buf, b"..hi..");
        a.send_bytes(b"too long for it").unwrap();
        match b.recv_bytes_into(&mut buf) {
            Err(RecvIntoError::BufferTooShort(m)) => assert_eq!(m, b"too long for it"),
            other => panic!("{other:?}"),
        }
        // A message above maxlength: an error, then the end is unreadable.
        a.send_bytes(&[0; 10]).unwrap();
        let e = b.recv_bytes_max(5).unwrap_err();
        assert!(e.to_string().contains("bad message length"), "{e}");
        let e = b.recv_bytes().unwrap_err();
        assert!(
            e.to_string().contains("unreadable after an earlier error"),
            "{e}"
        );
        // Sending still works.
        b.send(1).unwrap();
        assert_eq!(a.recv().unwrap(), 1);
    }

    #[test]
    fn connections_travel_through_connections() {
        let (a, b) = Pipe::<Connection<String>>::new().unwrap();
        let (x, y) = Pipe::<String>::new().unwrap();
        a.send(y).unwrap();
        let y = b.recv().unwrap();
        x.send("hello".into()).unwrap();
        assert_eq!(y.recv().unwrap(), "hello");
        y.send("back".into()).unwrap();
        assert_eq!(x.recv().unwrap(), "back");
        // The copy in flight kept the end open; once received and dropped, it is gone.
        drop(y);
        assert!(x.recv().unwrap_err().is_disconnected());
        // The wrong type is refused on arrival.
        let (p, q) = Pipe::<u8>::new().unwrap();
        let encoded = codec::encode(&p).unwrap();
        let e = codec::decode::<Connection<String>>(&encoded.bytes, encoded.fds).unwrap_err();
        assert!(e.to_string().contains("another message type"), "{e}");
        drop(q);
    }
}
