//! Sending: through the ring when the message fits and carries no descriptors,
//! through the socket as a frame otherwise.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::poll::PollFlags;

use super::inner::{Held, Inner, SendFail, is_hangup, lock};
use super::layout::{MSG, SEQ_LEN};
use crate::ipc::error::{ChannelError, Corruption};
use crate::ipc::ring::{self, Word};
use crate::os::sealed;
use crate::os::sys;
use crate::wire::codec::{Encoded, MAX_MESSAGE_LEN, Sealed};
use crate::wire::error::{CodecError, CodecErrorKind};
use crate::wire::frames::{self, FrameError};

impl Inner {
    // --- sending ---

    pub(super) fn send_raw(
        &self,
        bytes: &[u8],
        fds: Vec<OwnedFd>,
    ) -> std::result::Result<(), SendFail> {
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
        let (_held, tail) = self.begin_send(dir)?;
        let seq = tail.count();
        let need = ring::record_bytes(bytes.len()).filter(|n| *n as usize <= self.ring_size / 2);
        let half = (self.ring_size / 2) as u32;
        let free = match need {
            // Asking for half the ring more than needed makes `free` read the
            // receiver's word whenever the last one seen says the ring is half full,
            // so that the check below sees the real state.
            Some(need) if fds.is_empty() => ring
                .free(tail, need + half)
                .map_err(|c| SendFail::from(ChannelError::Corrupt(Corruption::new(c.0))))?,
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
                sent(frames::send_frame(
                    self.socket.as_fd(),
                    &[&seq_bytes, bytes],
                    &fds,
                ))?;
                ring.publish(Word::new(seq.wrapping_add(1), tail.pos()));
            }
        }
        Ok(())
    }

    /// Sends a message encoded into the unsealed `memfd` `file` of `len` bytes whose
    /// first [`SEQ_LEN`] are left for the sequence number (`codec::encode_message_into`):
    /// writes the number, seals the `memfd` and sends it as a sealed frame (read back
    /// into the stream only if the socket cannot carry it), without another copy.
    pub(super) fn send_memfd(
        &self,
        file: File,
        len: usize,
        fds: Vec<OwnedFd>,
    ) -> std::result::Result<(), SendFail> {
        let dir = self.send_dir().ok_or(ChannelError::ReadOnly)?;
        let (_held, tail) = self.begin_send(dir)?;
        let seq = tail.count();
        file.write_all_at(&u64::from(seq).to_le_bytes(), 0)
            .map_err(|e| SendFail::Failed(e.into()))?;
        let fd = sealed::seal(file).map_err(|e| SendFail::Failed(e.into()))?;
        let message = Encoded {
            bytes: Vec::new(),
            fds,
            sealed: Some(Sealed { fd, len }),
        };
        sent(frames::send_encoded(self.socket.as_fd(), &message))?;
        self.ring(dir)
            .publish(Word::new(seq.wrapping_add(1), tail.pos()));
        Ok(())
    }

    /// Takes the send lock of direction `dir` (held until the message is published)
    /// and reads its tail word, once the peer is known to still hold its end.
    fn begin_send(&self, dir: usize) -> std::result::Result<(Option<Held<'_>>, Word), SendFail> {
        let ctl = &self.header().dirs[dir].ring;
        let held = lock(&ctl.tx.lock, None);
        if self.info().holders[1 - self.end].load(Ordering::Relaxed) == 0 {
            return Err(SendFail::Disconnected);
        }
        Ok((held, Word(ctl.tail.word.load(Ordering::Relaxed))))
    }

    /// Whether the other end of the socket is closed (without waiting).
    fn peer_hung_up(&self) -> bool {
        sys::poll_until(
            &[(self.socket.as_fd(), PollFlags::empty())],
            Some(Instant::now()),
        )
        .is_ok_and(|r| r[0].intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
    }
}

/// What a frame sent on the socket means for the sender: a closed peer is
/// `Disconnected`, any other failure is the error.
fn sent(result: std::result::Result<(), FrameError>) -> std::result::Result<(), SendFail> {
    match result {
        Ok(()) => Ok(()),
        Err(FrameError::Io(e)) if is_hangup(&e) => Err(SendFail::Disconnected),
        Err(e) => Err(SendFail::Failed(e.into())),
    }
}
