//! Targets of the decoders that read a stream socket: frames (`FrameReader`) and a
//! `Connection`'s messages.

use std::os::fd::OwnedFd;

use super::{Input, descriptors, open_descriptors};
use crate::os::sealed;
use crate::wire::codec::{self, HEADER_LEN};
use crate::wire::frames::{Frame, FrameReader};

/// One `sendmsg` as the reader's kernel would deliver it: bytes, and the descriptors
/// sent with them (`fds` of them, then `memfd` if there is one: a sealed frame's).
struct Segment {
    bytes: Vec<u8>,
    fds: usize,
    memfd: Option<OwnedFd>,
}

impl Segment {
    fn has_fds(&self) -> bool {
        self.fds > 0 || self.memfd.is_some()
    }

    /// The descriptors as the kernel would install them: fresh ones.
    fn descriptors(&self) -> Vec<OwnedFd> {
        let mut fds = descriptors(self.fds);
        fds.extend(
            self.memfd
                .as_ref()
                .map(|m| m.try_clone().expect("the memfd duplicates")),
        );
        fds
    }
}

/// Delivers `segments` to `reader` as a Unix stream socket would, in reads of the
/// sizes `reads` picks (each read at most what the reader asks for): the descriptors of
/// a segment come with the read that takes its first byte, and a read never goes past
/// a segment that carried descriptors. Returns the frames taken, in order, and the
/// first error.
fn deliver(
    reader: &mut FrameReader,
    segments: &[Segment],
    reads: &mut Input<'_>,
) -> (Vec<Frame>, Option<String>) {
    let mut frames = Vec::new();
    let (mut seg, mut off) = (0, 0);
    let mut fed = 0usize;
    while seg < segments.len() {
        // The bytes of one read: from the current place, across segments, stopping
        // after the first segment with descriptors whose start it takes.
        let limit = 1 + reads.byte() as usize * 97;
        let mut chunk = Vec::new();
        // The descriptors, and where in `chunk` the bytes they came with start.
        let mut fds = None;
        while seg < segments.len() && chunk.len() < limit {
            let s = &segments[seg];
            let with_fds = off == 0 && s.has_fds();
            if with_fds {
                fds = Some((chunk.len(), s.descriptors()));
            }
            let n = (s.bytes.len() - off).min(limit - chunk.len());
            chunk.extend_from_slice(&s.bytes[off..off + n]);
            off += n;
            if off == s.bytes.len() {
                seg += 1;
                off = 0;
            }
            if with_fds {
                break;
            }
        }
        // The reader may ask for fewer bytes than the kernel has: the rest stays
        // queued, and the descriptors come with the read that takes their first byte.
        let mut taken = 0;
        while taken < chunk.len() {
            let n = reader.wanted().min(chunk.len() - taken);
            let with = match fds.take() {
                Some((at, fds)) if at < taken + n => fds,
                other => {
                    fds = other;
                    Vec::new()
                }
            };
            match reader.feed(&chunk[taken..], with) {
                Ok(got) => {
                    assert_eq!(got, n);
                    taken += n;
                    fed += n;
                }
                Err(e) => return (frames, Some(e.to_string())),
            }
            // The buffer grows with what arrived, not with what headers claim.
            assert!(
                reader.buffer_len() <= 2 * fed + (64 << 10),
                "the reader holds {} bytes after {fed} arrived",
                reader.buffer_len()
            );
            loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e.to_string())),
                }
            }
        }
    }
    (frames, None)
}

/// Frames from a stream socket (`FrameReader`).
///
/// The first byte chooses a genuine stream or a hostile one, and an exact reader or
/// not. A genuine stream is a list of frames, each sent as `send_frame` sends it (one
/// segment, descriptors with its first bytes), some of them sealed (the body in a real
/// sealed memfd, the frame only its length): every frame must arrive, whole, with its
/// descriptors, whatever the sizes of the reads. A hostile stream is raw bytes in
/// segments of any size with descriptors anywhere (never a memfd): the frames that
/// arrive before an error must be those the bytes spell, a frame flagged as sealed is
/// an error, and every descriptor must be closed or delivered.
pub fn frames(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let mut reader = if mode & 1 == 0 {
        FrameReader::default()
    } else {
        FrameReader::exact()
    };
    let genuine = mode & 2 == 0;
    let before = open_descriptors();
    let reads_len = usize::from(input.byte());
    let mut reads = Input(input.bytes(reads_len));
    let mut segments = Vec::new();
    let mut expected = Vec::new();
    while !input.is_empty() {
        if genuine {
            let len = usize::from(input.byte()) * 13 + usize::from(input.byte());
            let flags = input.byte();
            let fds = usize::from(flags % 4);
            let body = input.bytes(len).to_vec();
            if flags & 4 != 0 && !body.is_empty() {
                // As `send_frame` sends a large message on a Unix socket.
                let memfd = sealed::seal_parts("fuzz", &[&body]).expect("a sealed memfd");
                let length = (body.len() as u64).to_le_bytes();
                segments.push(Segment {
                    bytes: [&codec::sealed_header()[..], &length].concat(),
                    fds,
                    memfd: Some(memfd),
                });
            } else {
                let header = codec::frame_header(body.len()).expect("a small frame");
                segments.push(Segment {
                    bytes: [&header[..], &body].concat(),
                    fds,
                    memfd: None,
                });
            }
            expected.push((body, fds));
        } else {
            let len = usize::from(input.byte());
            // A stream socket sends no descriptors without bytes.
            let fds = if len == 0 {
                0
            } else {
                usize::from(input.byte() % 3)
            };
            segments.push(Segment {
                bytes: input.bytes(len).to_vec(),
                fds,
                memfd: None,
            });
        }
    }
    let (frames, error) = deliver(&mut reader, &segments, &mut reads);
    if genuine {
        assert_eq!(error, None);
        let got: Vec<_> = frames
            .iter()
            .map(|f| (f.bytes.to_vec(), f.fds.len()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(reader.pending(), 0);
    } else {
        // The frames the stream spells, header by header, up to the first flagged as
        // sealed: without a memfd, that one is an error (or never completes).
        let stream: Vec<u8> = segments.iter().flat_map(|s| s.bytes.clone()).collect();
        let mut spelled = Vec::new();
        let mut at = 0;
        while let Some(header) = stream.get(at..at + HEADER_LEN) {
            let len = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
            if len & (1 << 31) != 0 {
                break;
            }
            match stream.get(at + HEADER_LEN..at + HEADER_LEN + len) {
                Some(body) => spelled.push(body.to_vec()),
                None => break,
            }
            at += HEADER_LEN + len;
        }
        assert!(frames.len() <= spelled.len());
        for (frame, body) in frames.iter().zip(&spelled) {
            assert_eq!(frame.bytes, body);
        }
        if error.is_none() {
            assert_eq!(frames.len(), spelled.len());
        }
    }
    drop(frames);
    drop(reader);
    drop(segments);
    assert_eq!(open_descriptors(), before, "descriptors leaked");
}

/// Messages of a `Connection` (frames on its socket: a sequence
/// number, then the encoded value), written by a peer that writes anything into the
/// socket and closes its end, received through the public API. The first byte picks
/// typed or byte receives. Receiving must end, after the messages the bytes hold, in
/// an error or the end of the stream, never in a panic or a hang.
pub fn connection(data: &[u8]) {
    use std::io::Write;
    use std::os::fd::AsFd;

    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let (ours, theirs) = crate::Pipe::<Vec<Option<String>>>::new().expect("a pipe");
    let mut sock = std::os::unix::net::UnixStream::from(
        ours.as_fd()
            .try_clone_to_owned()
            .expect("the socket duplicates"),
    );
    // A small input fits the socket's buffer: written whole, without waiting.
    sock.write_all(bytes).expect("the socket takes the input");
    drop((sock, ours));
    // Every message takes at least a header and a sequence number: 12 bytes.
    for _ in 0..=bytes.len() / 12 {
        let got = if mode & 1 == 0 {
            theirs.recv().is_ok()
        } else {
            theirs.recv_bytes().is_ok()
        };
        if !got {
            return;
        }
    }
    panic!("more messages received than the bytes can hold");
}
