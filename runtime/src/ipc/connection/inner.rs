//! `Inner`: one end as this process holds it (its region, socket and receiving
//! state), how a pair is made and an arriving end checked, and the failure kinds
//! the engine reports.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

use super::layout::{DATA_OFFSET, Header, Info, MAGIC, RING};
use crate::error::{Error, Result};
use crate::ipc::error::ChannelError;
use crate::ipc::ring::{self, Ring, Word};
use crate::ipc::spin::Spinner;
use crate::os::futex::{Acquired, RawLock};
use crate::os::shm::SharedRegion;
use crate::wire::codec::PortableFd;
use crate::wire::frames::{FrameReader, Payload};

/// Why a raw send did not happen.
pub(super) enum SendFail {
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
pub(super) enum RecvFail {
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

/// A message received: its descriptors, and its bytes if they are not in the caller's
/// buffer.
#[derive(Debug)]
pub(super) struct Received {
    pub(super) fds: Vec<OwnedFd>,
    /// The bytes of a message that came in a sealed `memfd`, mapped (read where they
    /// are rather than copied into the buffer); `None` when they are in the buffer.
    pub(super) sealed: Option<Payload>,
}

impl Received {
    /// The message's bytes as a vector: `out` itself, or a copy of the mapped ones.
    pub(super) fn into_vec(self, out: Vec<u8>) -> Vec<u8> {
        match self.sealed {
            Some(payload) => payload.into_vec(),
            None => out,
        }
    }
}

/// What one receive attempt found.
pub(super) enum Attempt {
    Got(Received),
    /// Nothing yet; the sender's ring word as it was.
    Nothing(Word),
    /// Something changed (a doorbell, a message published as the socket closed): look
    /// again at once.
    Retry,
    Eof,
}

/// The receiving state of one end in this process.
#[derive(Debug)]
pub(super) struct RxState {
    pub(super) reader: FrameReader,
    /// The first error that lost the stream's place.
    pub(super) broken: Option<String>,
}

/// One end, as this process holds it.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) region: SharedRegion,
    pub(super) socket: PortableFd,
    pub(super) end: usize,
    pub(super) duplex: bool,
    pub(super) ring_size: usize,
    pub(super) rx: Mutex<RxState>,
    pub(super) spin: Spinner,
}

fn hash_of(type_name: &str) -> u64 {
    crate::ipc::type_hash::type_hash(type_name)
}

/// Holds a ring lock, and releases it when dropped.
pub(super) struct Held<'a>(&'a RawLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

pub(super) fn lock(lock: &RawLock, deadline: Option<Instant>) -> Option<Held<'_>> {
    if lock.lock(deadline)? == Acquired::OwnerDied {
        log::debug!("took over a connection's lock from a process that died");
    }
    Some(Held(lock))
}

impl Inner {
    /// A new pipe for messages of type `type_name`: `(end 0, end 1)`; end 0 is the
    /// writer of a one-way pipe.
    pub(super) fn pair(duplex: bool, type_name: &str) -> Result<(Inner, Inner)> {
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

    pub(super) fn from_parts(
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

    pub(super) fn header(&self) -> &Header {
        // SAFETY: as in `from_parts`, checked at creation or on arrival.
        unsafe { self.region.get::<Header>(0) }
    }

    pub(super) fn info(&self) -> &Info {
        &self.header().info
    }

    pub(super) fn ring(&self, dir: usize) -> Ring<'_> {
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

    pub(super) fn send_dir(&self) -> Option<usize> {
        match (self.duplex, self.end) {
            (true, end) => Some(end),
            (false, 0) => Some(0),
            (false, _) => None,
        }
    }

    pub(super) fn recv_dir(&self) -> Option<usize> {
        match (self.duplex, self.end) {
            (true, end) => Some(1 - end),
            (false, 1) => Some(0),
            (false, _) => None,
        }
    }

    pub(super) fn rx(&self) -> MutexGuard<'_, RxState> {
        self.rx.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let holders = &self.info().holders[self.end];
        let _ = holders.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

pub(super) fn is_hangup(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EPIPE | nix::libc::ECONNRESET | nix::libc::ENOTCONN)
    )
}
