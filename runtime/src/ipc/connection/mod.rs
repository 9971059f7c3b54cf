//! [`Pipe`] and [`Connection`]: Python's `multiprocessing.Pipe`, with a shared-memory
//! fast path beside a Unix socket.
//!
//! # Transport
//!
//! A pipe is a Unix stream socket pair plus a shared region holding one ring per
//! direction (64 KiB each; see `ring.rs`). A message without descriptors that fits in
//! half a ring is written into the ring: no system call, and a receiver that is
//! spinning sees it within a fraction of a microsecond. Everything else goes through
//! the socket as a frame (`transport.rs`): messages that carry handles (descriptors
//! travel only through a socket), large messages (the socket copies them at memory
//! speed and blocks the sender when full, which is the back-pressure a pipe has), and
//! messages sent while the ring is full. The socket also tells what shared memory
//! cannot: that the other end was closed in every process (end of file, `EPIPE`).
//!
//! Every message has a sequence number, counted in the sender's ring word (whether
//! the message went through the ring or the socket) and carried by the record or the
//! frame, so the receiver delivers messages in the order they were sent whichever way
//! each went.
//!
//! # Waking a receiver
//!
//! A receiver that finds nothing spins on the sender's ring word for a while (see
//! `spin.rs`), then counts itself in `sleepers`, clears `rung`, looks once more and
//! sleeps in `poll` on its socket. A sender that publishes into the ring and sees a
//! sleeper and `rung` clear sends a doorbell (an empty frame) on the socket and sets
//! `rung`. So a receiver that keeps up costs the sender nothing, and a sleeping one is
//! woken the way a plain socket would wake it.
//!
//! # Frames on the socket
//!
//! A frame is a 4-byte little-endian length and that many bytes: empty for a doorbell,
//! otherwise the message's 8-byte little-endian sequence number followed by the
//! message. The receiver reads a frame's header and then exactly its bytes, so frames
//! not yet received stay in the socket: a connection handed to another process loses
//! nothing.

mod error;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, socketpair};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{RecvError, RecvIntoError, RecvTimeoutError, SendError};

use crate::error::{Error, Result};
use crate::ipc::error::ChannelError;
use crate::ipc::ring::{self, Line, Ring, RingControl, Word};
use crate::ipc::scratch::{GET_SCRATCH, PUT_SCRATCH, with_scratch};
use crate::ipc::spin::Spinner;
use crate::ipc::wait::{Waitable, Watch};
use crate::os::futex::{Acquired, RawLock};
use crate::os::shm::SharedRegion;
use crate::os::sys;
use crate::wire::codec::{self, MAX_MESSAGE_LEN, PortableFd};
use crate::wire::error::{CodecError, CodecErrorKind};
use crate::wire::frames::{self, FrameError, FrameReader};

const MAGIC: u64 = u64::from_le_bytes(*b"mppipe01");
const DATA_OFFSET: usize = 4096;
/// The ring of each direction.
const RING: usize = 64 << 10;
/// The only kind of ring record.
const MSG: u32 = 1;
/// Bytes of the sequence number at the start of a message frame.
const SEQ_LEN: usize = 8;
/// The longest a blocked receive sleeps before it looks at the ring again: a sender
/// may have died between publishing a message and ringing the doorbell.
const RECHECK: Duration = Duration::from_secs(1);

#[repr(C)]
#[derive(Debug, Default)]
struct Info {
    magic: AtomicU64,
    ring_size: AtomicU64,
    type_hash: AtomicU64,
    duplex: AtomicU32,
    /// Handles of each end that exist, in every process (see [`Inner::counted`]).
    holders: [AtomicU32; 2],
}

#[repr(C)]
#[derive(Debug, Default)]
struct DirWake {
    /// Receivers asleep (or in `wait`) on this direction.
    sleepers: AtomicU32,
    /// A doorbell was sent since the last sleeper went to sleep.
    rung: AtomicU32,
}

/// One direction: end `d` sends on direction `d`.
#[repr(C)]
#[derive(Debug, Default)]
struct Dir {
    ring: RingControl,
    wake: Line<DirWake>,
}

#[repr(C)]
#[derive(Debug, Default)]
struct Header {
    info: Line<Info>,
    dirs: [Dir; 2],
}

const _: () = assert!(std::mem::size_of::<Header>() <= DATA_OFFSET);

/// Makes a pair of connected [`Connection`]s: Python's `multiprocessing.Pipe`.
///
/// ```
/// use multiproc::{Connection, Pipe};
///
/// #[multiproc::worker]
/// fn shout(conn: Connection<String>) -> multiproc::Result<()> {
///     while let Ok(line) = conn.recv() {
///         conn.send(line.to_uppercase())?;
///     }
///     Ok(()) // the parent closed its end: end of file
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let (ours, theirs) = Pipe::new()?;
///     let child = shout::spawn(theirs)?; // our copy of the child's end is gone now
///     ours.send("hello".to_owned())?;
///     assert_eq!(ours.recv()?, "HELLO");
///     drop(ours);
///     assert_eq!(child.join()?, 0);
///     Ok(())
/// }
/// ```
pub struct Pipe<T> {
    _never: std::convert::Infallible,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Pipe<T> {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self._never {}
    }
}

impl<T> Pipe<T> {
    /// Two connected ends that both send and receive (Python's `Pipe()`).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection<T>, Connection<T>)> {
        let (a, b) = Inner::pair(true, std::any::type_name::<T>())?;
        Ok((Connection::from_inner(a), Connection::from_inner(b)))
    }

    /// A one-way pipe (Python's `Pipe(duplex=False)`): `(reader, writer)`, in Python's
    /// order. The reader only receives, the writer only sends.
    pub fn one_way() -> Result<(Connection<T>, Connection<T>)> {
        let (writer, reader) = Inner::pair(false, std::any::type_name::<T>())?;
        Ok((
            Connection::from_inner(reader),
            Connection::from_inner(writer),
        ))
    }
}

/// One end of a [`Pipe`]: sends and receives messages of type `T` (and raw byte
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
    fn from_inner(inner: Inner) -> Self {
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
        match self.inner.recv_raw(&mut out, None, maxlength) {
            Ok(_fds) => Ok(out),
            Err(RecvFail::Disconnected) => Err(RecvError::Disconnected),
            Err(RecvFail::Failed(e)) => Err(RecvError::Failed(e)),
            Err(RecvFail::Timeout) => Err(RecvError::Failed(ChannelError::Timeout.into())),
        }
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into`; for an offset, pass `&mut buf[offset..]`). A message longer
    /// than `buf` is returned whole in [`RecvIntoError::BufferTooShort`].
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> std::result::Result<usize, RecvIntoError> {
        let message = self.recv_bytes()?;
        match buf.get_mut(..message.len()) {
            Some(dst) => {
                dst.copy_from_slice(&message);
                Ok(message.len())
            }
            None => Err(RecvIntoError::BufferTooShort(message)),
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
            let fds = codec::encode_into(&value, buf).map_err(|e| SendFail::Failed(e.into()))?;
            self.inner.send_raw(buf, fds)
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
            let fds = self.inner.recv_raw(buf, deadline, MAX_MESSAGE_LEN)?;
            codec::decode(buf, fds).map_err(|e| RecvFail::Failed(e.into()))
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

/// Why a raw send did not happen.
enum SendFail {
    Disconnected,
    Failed(Error),
}

impl From<ChannelError> for SendFail {
    fn from(e: ChannelError) -> Self {
        SendFail::Failed(e.into())
    }
}

/// Why a raw receive returned nothing.
#[derive(Debug)]
enum RecvFail {
    Timeout,
    Disconnected,
    Failed(Error),
}

impl From<ChannelError> for RecvFail {
    fn from(e: ChannelError) -> Self {
        RecvFail::Failed(e.into())
    }
}

impl From<io::Error> for RecvFail {
    fn from(e: io::Error) -> Self {
        RecvFail::Failed(e.into())
    }
}

/// What one receive attempt found.
enum Attempt {
    Got(Vec<OwnedFd>),
    /// Nothing yet; the sender's ring word as it was.
    Nothing(Word),
    /// Something changed (a doorbell, a message published as the socket closed): look
    /// again at once.
    Retry,
    Eof,
}

/// The receiving state of one end in this process.
#[derive(Debug)]
struct RxState {
    reader: FrameReader,
    /// The first error that lost the stream's place.
    broken: Option<String>,
}

/// One end, as this process holds it.
#[derive(Debug)]
struct Inner {
    region: SharedRegion,
    socket: PortableFd,
    end: usize,
    duplex: bool,
    ring_size: usize,
    rx: Mutex<RxState>,
    spin: Spinner,
}

fn hash_of(type_name: &str) -> u64 {
    crate::ipc::type_hash::type_hash(type_name)
}

/// Holds a ring lock, and releases it when dropped.
struct Held<'a>(&'a RawLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

fn lock(lock: &RawLock, deadline: Option<Instant>) -> Option<Held<'_>> {
    if lock.lock(deadline)? == Acquired::OwnerDied {
        log::debug!("took over a connection's lock from a process that died");
    }
    Some(Held(lock))
}

impl Inner {
    /// A new pipe for messages of type `type_name`: `(end 0, end 1)`; end 0 is the
    /// writer of a one-way pipe.
    fn pair(duplex: bool, type_name: &str) -> Result<(Inner, Inner)> {
        let rings = if duplex { 2 } else { 1 };
        let region = SharedRegion::new(
            if duplex { "pipe" } else { "one-way-pipe" },
            DATA_OFFSET + rings * RING,
        )?;
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        // Each end maps the region for itself, as it would in another process.
        let region_b = SharedRegion::from_fd(region.dup_fd()?, region.len())?;
        let a = Inner::new_end(region, PortableFd::new(a), 0, duplex, RING);
        let info = a.info();
        info.ring_size.store(RING as u64, Ordering::Relaxed);
        info.type_hash.store(hash_of(type_name), Ordering::Relaxed);
        info.duplex.store(u32::from(duplex), Ordering::Relaxed);
        info.holders[0].store(1, Ordering::Relaxed);
        info.holders[1].store(1, Ordering::Relaxed);
        info.magic.store(MAGIC, Ordering::Release);
        let b = Inner::new_end(region_b, PortableFd::new(b), 1, duplex, RING);
        Ok((a, b))
    }

    fn new_end(
        region: SharedRegion,
        socket: PortableFd,
        end: usize,
        duplex: bool,
        ring_size: usize,
    ) -> Inner {
        Inner {
            region,
            socket,
            end,
            duplex,
            ring_size,
            rx: Mutex::new(RxState {
                reader: FrameReader::exact(),
                broken: None,
            }),
            spin: Spinner::default(),
        }
    }

    fn from_parts(
        region: SharedRegion,
        socket: PortableFd,
        end: u8,
        type_name: &str,
    ) -> io::Result<Inner> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        if region.len() < DATA_OFFSET + ring::MIN_RING {
            return Err(invalid("a connection's shared memory is too small".into()));
        }
        // SAFETY: offset 0 is aligned and the header fits before DATA_OFFSET; it is
        // made of atomics.
        let info = &unsafe { region.get::<Header>(0) }.info;
        if info.magic.load(Ordering::Acquire) != MAGIC {
            return Err(invalid("not a multiproc connection".into()));
        }
        let duplex = info.duplex.load(Ordering::Relaxed) != 0;
        let rings = if duplex { 2 } else { 1 };
        let ring_size = usize::try_from(info.ring_size.load(Ordering::Relaxed)).unwrap_or(0);
        if !ring_size.is_power_of_two()
            || !(ring::MIN_RING..=ring::MAX_RING).contains(&ring_size)
            || region.len() < DATA_OFFSET + rings * ring_size
        {
            return Err(invalid(
                "a connection whose rings do not fit its memory".into(),
            ));
        }
        if info.type_hash.load(Ordering::Relaxed) != hash_of(type_name) {
            return Err(invalid(format!(
                "a connection of another message type received as a `Connection<{type_name}>`"
            )));
        }
        if end > 1 {
            return Err(invalid(format!("a connection end numbered {end}")));
        }
        Ok(Inner::new_end(
            region,
            socket,
            usize::from(end),
            duplex,
            ring_size,
        ))
    }

    fn header(&self) -> &Header {
        // SAFETY: as in `from_parts`, checked at creation or on arrival.
        unsafe { self.region.get::<Header>(0) }
    }

    fn info(&self) -> &Info {
        &self.header().info
    }

    fn ring(&self, dir: usize) -> Ring<'_> {
        // SAFETY: the data area of direction `dir` is the `ring_size` bytes at
        // DATA_OFFSET + dir * ring_size, inside the region (checked), for as long as
        // `self`; `dir` is 1 only for a duplex pipe, which has two rings.
        unsafe {
            Ring::new(
                &self.header().dirs[dir].ring,
                self.region.as_ptr().add(DATA_OFFSET + dir * self.ring_size),
                self.ring_size,
            )
        }
    }

    fn send_dir(&self) -> Option<usize> {
        match (self.duplex, self.end) {
            (true, end) => Some(end),
            (false, 0) => Some(0),
            (false, _) => None,
        }
    }

    fn recv_dir(&self) -> Option<usize> {
        match (self.duplex, self.end) {
            (true, end) => Some(1 - end),
            (false, 1) => Some(0),
            (false, _) => None,
        }
    }

    fn rx(&self) -> MutexGuard<'_, RxState> {
        self.rx.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // --- sending ---

    fn send_raw(&self, bytes: &[u8], fds: Vec<OwnedFd>) -> std::result::Result<(), SendFail> {
        let dir = self.send_dir().ok_or(ChannelError::ReadOnly)?;
        if bytes.len() > MAX_MESSAGE_LEN - SEQ_LEN {
            return Err(SendFail::Failed(
                CodecError::new(
                    CodecErrorKind::Oversized,
                    format!(
                        "{} bytes, above the limit of {}",
                        bytes.len(),
                        MAX_MESSAGE_LEN - SEQ_LEN
                    ),
                )
                .into(),
            ));
        }
        let ring = self.ring(dir);
        let ctl = &self.header().dirs[dir].ring;
        let _held = lock(&ctl.tx.lock, None);
        let peer = 1 - self.end;
        if self.info().holders[peer].load(Ordering::Relaxed) == 0 {
            return Err(SendFail::Disconnected);
        }
        let tail = Word(ctl.tail.word.load(Ordering::Relaxed));
        let seq = tail.count();
        let need = ring::record_bytes(bytes.len()).filter(|n| *n as usize <= self.ring_size / 2);
        let half = (self.ring_size / 2) as u32;
        let free = match need {
            // Asking for half the ring more than needed makes `free` read the
            // receiver's word whenever the last one seen says the ring is half full,
            // so that the check below sees the real state.
            Some(need) if fds.is_empty() => ring
                .free(tail, need + half)
                .map_err(|c| SendFail::from(ChannelError::Corrupt(c.0)))?,
            _ => 0,
        };
        match need {
            Some(need) if fds.is_empty() && free >= need => {
                let next = ring.write(tail, MSG, u64::from(seq), bytes);
                ring.publish(next);
                // A peer killed without closing its handles is invisible to the count:
                // ask the socket once the buffer fills up.
                if free - need <= half && self.peer_hung_up() {
                    return Err(SendFail::Disconnected);
                }
                self.ring_doorbell(dir);
            }
            _ => {
                let seq_bytes = u64::from(seq).to_le_bytes();
                match frames::send_frame(self.socket.as_fd(), &[&seq_bytes, bytes], &fds) {
                    Ok(()) => {}
                    Err(FrameError::Io(e)) if is_hangup(&e) => return Err(SendFail::Disconnected),
                    Err(e) => return Err(SendFail::Failed(e.into())),
                }
                ring.publish(Word::new(seq.wrapping_add(1), tail.pos()));
            }
        }
        Ok(())
    }

    /// Whether the other end of the socket is closed (without waiting).
    fn peer_hung_up(&self) -> bool {
        sys::poll_until(
            &[(self.socket.as_fd(), PollFlags::empty())],
            Some(Instant::now()),
        )
        .is_ok_and(|r| r[0].intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
    }

    /// With the sending lock held: wakes a receiver that sleeps on direction `dir`.
    fn ring_doorbell(&self, dir: usize) {
        let wake = &self.header().dirs[dir].wake;
        // Ordered after the publishing swap, which is a full barrier.
        if wake.sleepers.load(Ordering::SeqCst) == 0 || wake.rung.load(Ordering::SeqCst) != 0 {
            return;
        }
        // Send first, then mark: a sender that dies in between leaves the mark clear,
        // which costs at most a spare doorbell later.
        let doorbell = [0u8; codec::HEADER_LEN];
        match nix::sys::socket::send(
            self.socket.as_raw_fd(),
            &doorbell,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(n) if n == doorbell.len() => {}
            Ok(n) => {
                // Never seen for 4 bytes; finish the frame so the stream stays whole.
                let _ = write_all(self.socket.as_fd(), &doorbell[n..]);
            }
            // A full socket has data the receiver will wake for; a closed one has no
            // receiver.
            Err(_) => return,
        }
        wake.rung.store(1, Ordering::SeqCst);
    }

    // --- receiving ---

    fn recv_raw(
        &self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
        max: usize,
    ) -> std::result::Result<Vec<OwnedFd>, RecvFail> {
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
                Attempt::Got(fds) => return Ok(fds),
                Attempt::Eof => return Err(RecvFail::Disconnected),
                Attempt::Retry => socket_ready = false,
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
                        ChannelError::Corrupt(corrupt.0).into(),
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
                    return Ok(Attempt::Got(Vec::new()));
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
                out.extend_from_slice(&frame.bytes[SEQ_LEN..]);
                ring.release(Word::new(next.wrapping_add(1), head.pos()));
                return Ok(Attempt::Got(frame.fds));
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
    fn at_end_of_file(
        &self,
        dir: usize,
        head: Word,
        rx: &mut RxState,
    ) -> std::result::Result<Attempt, RecvFail> {
        let tail = self.ring(dir).fresh_tail();
        if tail.pos() != head.pos() {
            return Ok(Attempt::Retry);
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

    /// Waits until the sender's word moves from `seen` (`Ok(false)`) or the socket is
    /// readable (`Ok(true)`).
    fn wait_readable(
        &self,
        dir: usize,
        seen: Word,
        deadline: Option<Instant>,
    ) -> std::result::Result<bool, RecvFail> {
        let ctl = &self.header().dirs[dir].ring;
        let moved = || Word(ctl.tail.word.load(Ordering::Acquire)) != seen;
        let sender_cpu = ctl.tail.cpu.load(Ordering::Relaxed);
        if self.spin.spin(deadline, sender_cpu, moved) {
            return Ok(false);
        }
        let wake = &self.header().dirs[dir].wake;
        wake.sleepers.fetch_add(1, Ordering::SeqCst);
        wake.rung.store(0, Ordering::SeqCst);
        let polled = if moved() {
            Ok(vec![PollFlags::empty()])
        } else {
            let nap = Instant::now() + RECHECK;
            let until = Some(deadline.map_or(nap, |d| d.min(nap)));
            sys::poll_until(&[(self.socket.as_fd(), PollFlags::POLLIN)], until)
        };
        wake.sleepers.fetch_sub(1, Ordering::SeqCst);
        let readable = !polled?[0].is_empty();
        if !readable && !moved() && deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(RecvFail::Timeout);
        }
        Ok(readable)
    }

    // --- poll and wait ---

    fn poll(&self, deadline: Option<Instant>) -> Result<bool> {
        let dir = self.recv_dir().ok_or(ChannelError::WriteOnly)?;
        loop {
            let (ready, seen) = self.ready_now(dir)?;
            if ready {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            match self.wait_readable(dir, seen, deadline) {
                Ok(_) => {}
                Err(RecvFail::Timeout) => return Ok(false),
                Err(RecvFail::Failed(e)) => return Err(e),
                Err(RecvFail::Disconnected) => return Ok(true),
            }
        }
    }

    /// Whether a receive would not wait, and the sender's word; consumes doorbells
    /// found at the front of the socket.
    fn ready_now(&self, dir: usize) -> io::Result<(bool, Word)> {
        let rx = self.rx();
        let ring = self.ring(dir);
        let ctl = &self.header().dirs[dir].ring;
        let head = Word(ctl.head.word.load(Ordering::Acquire));
        let tail = ring.fresh_tail();
        if rx.broken.is_some() || rx.reader.pending() > 0 || tail != head {
            return Ok((true, tail));
        }
        let mut peek = [0u8; codec::HEADER_LEN];
        loop {
            match nix::sys::socket::recv(
                self.socket.as_raw_fd(),
                &mut peek,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) if n == peek.len() && peek == [0; codec::HEADER_LEN] => {
                    // A doorbell: drop it and look at the ring again.
                    let mut sink = [0u8; codec::HEADER_LEN];
                    nix::sys::socket::recv(
                        self.socket.as_raw_fd(),
                        &mut sink,
                        MsgFlags::MSG_DONTWAIT,
                    )?;
                    let tail = ring.fresh_tail();
                    if tail != head {
                        return Ok((true, tail));
                    }
                }
                // Data, or the end of file.
                Ok(_) => return Ok((true, tail)),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Ok((false, tail)),
                Err(Errno::ECONNRESET) => return Ok((true, tail)),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Watch for Inner {
    fn arm(&self) -> io::Result<bool> {
        let Some(dir) = self.recv_dir() else {
            return Ok(false);
        };
        let wake = &self.header().dirs[dir].wake;
        wake.sleepers.fetch_add(1, Ordering::SeqCst);
        wake.rung.store(0, Ordering::SeqCst);
        Ok(self.ready_now(dir)?.0)
    }

    fn disarm(&self) {
        if let Some(dir) = self.recv_dir() {
            self.header().dirs[dir]
                .wake
                .sleepers
                .fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn is_ready(&self) -> io::Result<bool> {
        match self.recv_dir() {
            Some(dir) => Ok(self.ready_now(dir)?.0),
            None => Ok(false),
        }
    }

    fn confirm(&self) -> io::Result<bool> {
        match self.recv_dir() {
            Some(dir) => Ok(self.ready_now(dir)?.0),
            // The writer of a one-way pipe: readable means the reader is gone.
            None => Ok(true),
        }
    }

    fn recheck_after(&self) -> Option<Duration> {
        Some(RECHECK)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let holders = &self.info().holders[self.end];
        let _ = holders.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

fn is_hangup(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EPIPE | nix::libc::ECONNRESET | nix::libc::ENOTCONN)
    )
}

/// Writes all of `bytes` to a non-blocking socket, waiting for room.
fn write_all(sock: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match nix::sys::socket::send(sock.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                sys::poll_until(&[(sock, PollFlags::POLLOUT)], None)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl<T> AsFd for Connection<T> {
    /// The end's socket (Python's `fileno()`). Writing to it directly bypasses the
    /// protocol: the other end reports garbled frames.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn raw_write(conn: &Connection<u32>, bytes: &[u8]) {
        let mut s =
            std::os::unix::net::UnixStream::from(conn.as_fd().try_clone_to_owned().unwrap());
        s.set_nonblocking(false).unwrap();
        s.write_all(bytes).unwrap();
        s.set_nonblocking(true).unwrap();
    }

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
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
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
        assert_eq!(e.to_string(), "cannot send: connection is read-only");
        let e = w.recv().unwrap_err();
        assert_eq!(e.to_string(), "cannot receive: connection is write-only");
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

    #[test]
    fn wait_over_connections() {
        let (a, b) = Pipe::<u32>::new().unwrap();
        let (c, d) = Pipe::<u32>::new().unwrap();
        assert!(
            crate::ipc::wait::wait(&[&b, &d], Some(Duration::from_millis(20)))
                .unwrap()
                .is_empty()
        );
        c.send(1).unwrap();
        assert_eq!(crate::ipc::wait::wait(&[&b, &d], None).unwrap(), [1]);
        assert_eq!(d.recv().unwrap(), 1);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            a.send(2).unwrap();
            a
        });
        assert_eq!(
            crate::ipc::wait::wait(&[&b, &d], Some(Duration::from_secs(10))).unwrap(),
            [0]
        );
        assert_eq!(b.recv().unwrap(), 2);
        drop(sender.join().unwrap());
        // The peer is gone: ready (a receive will not block).
        assert_eq!(
            crate::ipc::wait::wait(&[&b, &d], Some(Duration::from_secs(10))).unwrap(),
            [0]
        );
    }
}
