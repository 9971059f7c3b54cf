//! Wake-ups: the doorbell a sender rings, how a receiver spins then sleeps, `poll`,
//! and the `Watch` that `wait` uses.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::MsgFlags;

use super::inner::{Inner, RecvFail};
use super::layout::RECHECK;
use crate::error::Result;
use crate::ipc::error::ChannelError;
use crate::ipc::ring::Word;
use crate::ipc::wait::Watch;
use crate::os::sys;
use crate::wire::codec;

impl Inner {
    /// With the sending lock held: wakes a receiver that sleeps on direction `dir`.
    pub(super) fn ring_doorbell(&self, dir: usize) {
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

    /// Waits until the sender's word moves from `seen` (`Ok(false)`) or the socket is
    /// readable (`Ok(true)`).
    pub(super) fn wait_readable(
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

    pub(super) fn poll(&self, deadline: Option<Instant>) -> Result<bool> {
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

/// What tests wait for instead of sleeping and hoping.
#[cfg(test)]
impl Inner {
    /// Receivers asleep on what this end sends (in `recv`, `poll` or `wait`, past
    /// spinning); 0 for the reader of a one-way pipe.
    pub(super) fn sleeping_receivers(&self) -> u32 {
        self.send_dir().map_or(0, |dir| {
            self.header().dirs[dir].wake.sleepers.load(Ordering::SeqCst)
        })
    }
}

/// Waits, without a deadline, until `ready` holds: a test's way to wait for an observable
/// state (a sleeping receiver) rather than sleep and hope.
#[cfg(test)]
pub(super) fn wait_until(ready: impl Fn() -> bool) {
    while !ready() {
        std::thread::yield_now();
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::connection::Pipe;

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
        // Send only once the wait is armed on `b` (it counts as a sleeping receiver),
        // so the wait below is woken by the send rather than finding the item there.
        let sender = std::thread::spawn(move || {
            wait_until(|| a.sleeping_receivers() > 0);
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
