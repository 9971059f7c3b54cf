//! The descriptor courier of a queue: shared memory cannot carry file descriptors, so
//! the descriptors inside a queued item travel beside it through a Unix socket.
//!
//! A courier is a `SOCK_SEQPACKET` socket pair whose two ends every holder of the queue
//! shares: producers send on one end, consumers receive on the other. Each batch is one
//! packet: an 8-byte sequence number and the descriptors as `SCM_RIGHTS`. A producer
//! sends the batch while it holds the queue's producer lock, just before it publishes
//! the record that names the batch's number, so batches are in the courier in the same
//! order as their records in the ring. A consumer takes the batch named by the record
//! it dequeues, under the consumer lock, and discards older batches on the way: those
//! of producers that died between sending a batch and publishing its record. A batch
//! newer than the one wanted means the wanted one was taken by a consumer that died
//! before it could free the record; that item is lost, and the newer batch is left for
//! its own record.
//!
//! Items without descriptors never touch the courier.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};

use crate::os::fd;
use crate::wire::codec::{MAX_FDS, PortableFd};

/// The two ends of a courier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Courier {
    /// Producers send here.
    tx: PortableFd,
    /// Consumers receive here.
    rx: PortableFd,
}

/// How far ahead of the wanted batch a batch may be and still be a real one (numbers
/// skipped by producers that died or found the courier full); a batch further ahead
/// was not sent by a multiproc process.
const MAX_AHEAD: i64 = 1 << 32;

/// The front of the courier.
enum Peek {
    Empty,
    Batch(u64),
    /// A packet of the wrong size.
    Garbage,
}

/// What [`Courier::take`] found for the batch it was asked for.
#[derive(Debug)]
pub(crate) enum Taken {
    /// The batch's descriptors.
    Batch(Vec<OwnedFd>),
    /// The batch is not there: a consumer that died took it.
    Lost,
}

impl Courier {
    /// A new courier; both ends non-blocking and close-on-exec.
    pub(crate) fn new() -> io::Result<Courier> {
        let (tx, rx) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        Ok(Courier {
            tx: PortableFd::new(tx),
            rx: PortableFd::new(rx),
        })
    }

    /// Sends batch `seq` without waiting: `WouldBlock` when the courier is full.
    pub(crate) fn send(&self, seq: u64, fds: &[OwnedFd]) -> io::Result<()> {
        if fds.len() > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} descriptors in one item, above the limit of {MAX_FDS}",
                    fds.len()
                ),
            ));
        }
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let bytes = seq.to_le_bytes();
        let iov = [IoSlice::new(&bytes)];
        let cmsg = [ControlMessage::ScmRights(&raw)];
        loop {
            match sendmsg::<()>(
                self.tx.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends `bytes` as one packet with `fds` attached, whatever they are: what a
    /// hostile holder of the courier can do. For fuzzing.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn inject(&self, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        loop {
            match sendmsg::<()>(
                self.tx.as_raw_fd(),
                &[IoSlice::new(bytes)],
                cmsgs,
                flags,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The descriptor to wait on (for `POLLOUT`) when [`send`](Self::send) would block.
    pub(crate) fn send_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.tx.as_fd()
    }

    /// Takes batch `seq`, discarding older ones. Never waits: the batch of a published
    /// record was sent before the record was.
    pub(crate) fn take(&self, seq: u64) -> io::Result<Taken> {
        loop {
            let ahead = match self.peek()? {
                Peek::Empty => return Ok(Taken::Lost),
                // Sequence numbers wrap in theory only; compare by distance.
                Peek::Batch(next) => next.wrapping_sub(seq) as i64,
                Peek::Garbage => i64::MIN,
            };
            if (1..=MAX_AHEAD).contains(&ahead) {
                return Ok(Taken::Lost);
            }
            let fds = self.receive(ahead == 0)?;
            if ahead == 0 {
                return Ok(Taken::Batch(fds));
            }
            // Older than the one wanted: from a producer that died before publishing
            // its record. Otherwise no multiproc process sent it: dropped too, so that
            // it cannot block the batches behind it.
            log::debug!("discarded descriptors of an item that was never queued");
        }
    }

    /// What is at the front of the courier.
    fn peek(&self) -> io::Result<Peek> {
        let mut bytes = [0u8; 8];
        let mut iov = [IoSliceMut::new(&mut bytes)];
        loop {
            // No room for control messages: a peek installs no descriptors.
            match recvmsg::<()>(
                self.rx.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
            ) {
                // A longer packet fills the 8 bytes too: the kernel says it cut it.
                Ok(msg) if msg.bytes == 8 && !msg.flags.contains(MsgFlags::MSG_TRUNC) => {
                    break;
                }
                // Not the end of the stream: this process holds a sending end itself.
                // An empty packet is garbage like any other of the wrong size; taken
                // for an empty courier, it would stop every batch behind it.
                Ok(_) => return Ok(Peek::Garbage),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(Peek::Empty),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Peek::Batch(u64::from_le_bytes(bytes)))
    }

    /// Receives the next batch; its descriptors if `keep`, else they are closed.
    fn receive(&self, keep: bool) -> io::Result<Vec<OwnedFd>> {
        let mut bytes = [0u8; 8];
        let mut iov = [IoSliceMut::new(&mut bytes)];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        loop {
            // Without room for control messages, the kernel closes a discarded batch's
            // descriptors without installing them here.
            let space = if keep { Some(&mut space[..]) } else { None };
            match recvmsg::<()>(
                self.rx.as_raw_fd(),
                &mut iov,
                space,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => return Ok(fd::received_fds(&msg)),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_fd() -> OwnedFd {
        nix::unistd::pipe().unwrap().0
    }

    #[test]
    fn batches_in_order_and_stale_ones_skipped() {
        let c = Courier::new().unwrap();
        c.send(1, &[pipe_fd()]).unwrap();
        c.send(2, &[pipe_fd(), pipe_fd()]).unwrap();
        c.send(4, &[pipe_fd()]).unwrap();
        // Batch 1 is stale when 2 is wanted.
        match c.take(2).unwrap() {
            Taken::Batch(fds) => assert_eq!(fds.len(), 2),
            other => panic!("{other:?}"),
        }
        // Batch 3 was lost; batch 4 stays.
        assert!(matches!(c.take(3).unwrap(), Taken::Lost));
        match c.take(4).unwrap() {
            Taken::Batch(fds) => assert_eq!(fds.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.take(5).unwrap(), Taken::Lost));
    }

    #[test]
    fn garbage_does_not_block_the_batches_behind_it() {
        let c = Courier::new().unwrap();
        // A packet of the wrong size, and one numbered far ahead.
        nix::sys::socket::send(c.tx.as_raw_fd(), b"abc", MsgFlags::empty()).unwrap();
        c.send(u64::MAX / 2, &[pipe_fd()]).unwrap();
        c.send(7, &[pipe_fd()]).unwrap();
        match c.take(7).unwrap() {
            Taken::Batch(fds) => assert_eq!(fds.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_packet_does_not_block_the_batches_behind_it() {
        // Found by the courier fuzz target: an empty packet was taken for an empty
        // courier, so every later batch was reported lost.
        let c = Courier::new().unwrap();
        let fd = pipe_fd();
        sendmsg::<()>(
            c.tx.as_raw_fd(),
            &[IoSlice::new(&[])],
            &[ControlMessage::ScmRights(&[fd.as_raw_fd()])],
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .unwrap();
        nix::sys::socket::send(c.tx.as_raw_fd(), &[], MsgFlags::MSG_DONTWAIT).unwrap();
        c.send(3, &[pipe_fd(), pipe_fd()]).unwrap();
        match c.take(3).unwrap() {
            Taken::Batch(fds) => assert_eq!(fds.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.take(4).unwrap(), Taken::Lost));
    }

    #[test]
    fn a_longer_packet_is_not_a_batch() {
        // Found by the courier fuzz target: the first 8 bytes of a longer packet were
        // read as a batch's number, so a forged packet could pose as a batch.
        let c = Courier::new().unwrap();
        let mut forged = 5u64.to_le_bytes().to_vec();
        forged.extend_from_slice(b"more");
        nix::sys::socket::send(c.tx.as_raw_fd(), &forged, MsgFlags::MSG_DONTWAIT).unwrap();
        assert!(matches!(c.take(5).unwrap(), Taken::Lost));
        c.send(5, &[pipe_fd()]).unwrap();
        match c.take(5).unwrap() {
            Taken::Batch(fds) => assert_eq!(fds.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_courier_would_block() {
        let c = Courier::new().unwrap();
        let fd = pipe_fd();
        let mut sent = 0u64;
        let err = loop {
            match c.send(sent, std::slice::from_ref(&fd)) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 1_000_000);
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(sent > 10);
    }
}
