//! Not public API: the entry points of the fuzz targets in `fuzz/`, one per decoder of
//! what other processes send. Built only with the `fuzzing` feature.
//!
//! Each function takes the fuzzer's bytes, feeds them to a decoder as a hostile peer
//! would, and panics if the decoder misbehaves: a panic inside it, an allocation
//! beyond what the input holds (the fuzzer's memory limit catches those), a result
//! that contradicts a simple model of the format, or a decoded value that does not
//! re-encode to itself. A decoder that refuses its input with an error is behaving.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ipc::ring::{self, Ring, RingControl, Word};
use crate::os::shm::SharedRegion;
use crate::process::bootstrap::Bootstrap;
use crate::process::child::Report;
use crate::wire::codec::{self, HEADER_LEN, PortableFd};
use crate::wire::courier::{Courier, Taken};
use crate::wire::frames::{Frame, FrameReader};

/// The fuzzer's bytes, taken from the front.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        u64::from_le_bytes(bytes)
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `n` descriptors to send (of `/dev/null`: any open file will do).
fn descriptors(n: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|_| {
            std::fs::File::open("/dev/null")
                .map(OwnedFd::from)
                .expect("/dev/null opens")
        })
        .collect()
}

/// How many descriptors this process has open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// One `sendmsg` as the reader's kernel would deliver it: bytes, and the descriptors
/// sent with them.
struct Segment {
    bytes: Vec<u8>,
    fds: usize,
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
            let with_fds = off == 0 && s.fds > 0;
            if with_fds {
                fds = Some((chunk.len(), descriptors(s.fds)));
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
/// segment, descriptors with its first bytes): every frame must arrive, whole, with
/// its descriptors, whatever the sizes of the reads. A hostile stream is raw bytes in
/// segments of any size with descriptors anywhere: the frames that arrive before an
/// error must be those the bytes spell, and every descriptor must be closed or
/// delivered.
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
            let fds = usize::from(input.byte() % 4);
            let body = input.bytes(len).to_vec();
            let header = codec::frame_header(body.len()).expect("a small frame");
            segments.push(Segment {
                bytes: [&header[..], &body].concat(),
                fds,
            });
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
            });
        }
    }
    let (frames, error) = deliver(&mut reader, &segments, &mut reads);
    if genuine {
        assert_eq!(error, None);
        let got: Vec<_> = frames
            .iter()
            .map(|f| (f.bytes.clone(), f.fds.len()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(reader.pending(), 0);
    } else {
        // The frames the stream spells, header by header.
        let stream: Vec<u8> = segments.iter().flat_map(|s| s.bytes.clone()).collect();
        let mut spelled = Vec::new();
        let mut at = 0;
        while let Some(header) = stream.get(at..at + HEADER_LEN) {
            let len = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
            match stream.get(at + HEADER_LEN..at + HEADER_LEN + len) {
                Some(body) => spelled.push(body.to_vec()),
                None => break,
            }
            at += HEADER_LEN + len;
        }
        assert!(frames.len() <= spelled.len());
        for (frame, body) in frames.iter().zip(&spelled) {
            assert_eq!(&frame.bytes, body);
        }
        if error.is_none() {
            assert_eq!(frames.len(), spelled.len());
        }
    }
    drop(frames);
    drop(reader);
    assert_eq!(open_descriptors(), before, "descriptors leaked");
}

/// A byte buffer that asks for `deserialize_byte_buf`, as `serde_bytes` does.
#[derive(Debug, PartialEq)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A value with one of everything serde's data model has.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Everything {
    Unit,
    Newtype(Box<str>),
    Tuple(u128, i64, char, bool, i8),
    Struct {
        name: String,
        bytes: Bytes,
        list: Vec<u64>,
        nested: Vec<Vec<Option<u16>>>,
        map: BTreeMap<String, (u32, i128)>,
        deque: VecDeque<Everything>,
    },
    Unsized(std::path::PathBuf, std::ffi::OsString),
}

/// Floats: compared through their encoding (NaN is not equal to itself).
#[derive(Debug, Serialize, Deserialize)]
struct Floats(f32, Vec<f64>, Option<(f64, f32)>);

/// Decodes `bytes` as a `T`; a decoded value must encode, and decode again to the same
/// value and the same bytes.
/// (`same` compares values; `None` compares their encodings instead.)
fn round_trip<T: Serialize + DeserializeOwned + Debug>(
    bytes: &[u8],
    same: Option<fn(&T, &T) -> bool>,
) {
    let Ok(value) = codec::decode_record::<T>(bytes) else {
        return;
    };
    let encoded = codec::encode_record(&value).expect("a decoded value encodes");
    let again: T = codec::decode_record(&encoded).expect("an encoded value decodes");
    match same {
        Some(same) => assert!(same(&value, &again), "{value:?} came back as {again:?}"),
        None => assert_eq!(codec::encode_record(&again).ok(), Some(encoded)),
    }
}

/// The codec's records (`codec::decode_record`): the first byte picks a type.
pub fn codec_record(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => round_trip::<String>(bytes, Some(PartialEq::eq)),
        1 => round_trip::<Bytes>(bytes, Some(PartialEq::eq)),
        2 => round_trip::<Vec<u64>>(bytes, Some(PartialEq::eq)),
        // A HashMap's order, and so its encoding, differs from one map to the next.
        3 => round_trip::<HashMap<String, Vec<u32>>>(bytes, Some(PartialEq::eq)),
        4 => round_trip::<Everything>(bytes, Some(PartialEq::eq)),
        5 => round_trip::<Vec<Everything>>(bytes, Some(PartialEq::eq)),
        6 => round_trip::<Option<(Box<[u8]>, char, i16)>>(bytes, Some(PartialEq::eq)),
        // NaN differs from itself: floats are compared by their encoding.
        _ => round_trip::<Floats>(bytes, None),
    }
}

/// Values with descriptors (`codec::decode`): the first byte's low bits give how
/// many descriptors come with the bytes; one of them is a 4096-byte shared memory
/// region. Every descriptor must end up in the value or closed.
pub fn codec_fds(data: &[u8]) {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let before = open_descriptors();
    let mut fds = descriptors(usize::from(first % 4));
    if first & 4 != 0 {
        let region = SharedRegion::new("fuzz", 4096).expect("a memfd");
        fds.push(
            region
                .fd()
                .try_clone_owned()
                .expect("the memfd's descriptor duplicates"),
        );
    }
    if first & 8 == 0 {
        let _ = codec::decode::<(Vec<PortableFd>, String, Option<PortableFd>)>(bytes, fds);
    } else {
        let _ = codec::decode::<(u8, SharedRegion, Vec<u16>)>(bytes, fds);
    }
    assert_eq!(open_descriptors(), before, "descriptors leaked");
}

/// The child's bootstrap record, as the child reads it: a frame, then the record.
pub fn bootstrap(data: &[u8]) {
    let mut reader = FrameReader::default();
    let mut input = Input(data);
    let mut frame = None;
    while !input.is_empty() && frame.is_none() {
        let want = 1 + usize::from(input.byte()) * 11;
        let chunk = input.bytes(want);
        if reader.feed(chunk, Vec::new()).is_err() {
            return;
        }
        match reader.next_frame() {
            Ok(next) => frame = next,
            Err(_) => return,
        }
    }
    let Some(frame) = frame else {
        return;
    };
    let Ok(boot) = codec::decode_record::<Bootstrap>(&frame.bytes) else {
        return;
    };
    let encoded = codec::encode_record(&boot).expect("a decoded record encodes");
    let again: Bootstrap = codec::decode_record(&encoded).expect("an encoded record decodes");
    assert_eq!(codec::encode_record(&again).ok(), Some(encoded));
}

/// The report a child sends its parent (`Report::parse`).
pub fn report(data: &[u8]) {
    let parsed = Report::parse(Frame {
        bytes: data.to_vec(),
        fds: Vec::new(),
    });
    match parsed {
        Ok(Report::Value(value)) => assert_eq!(value.bytes, data[1..]),
        Ok(Report::Panic {
            message, location, ..
        }) => {
            let body = codec::encode_record(&(&message, &location)).expect("encodes");
            let (m, l): (String, Option<String>) =
                codec::decode_record(&body).expect("an encoded report decodes");
            assert_eq!((m, l), (message, location));
        }
        Ok(Report::Failed(message)) => {
            let body = codec::encode_record(&message).expect("encodes");
            assert_eq!(codec::decode_record::<String>(&body).ok(), Some(message));
        }
        Err(_) => {}
    }
}

/// The descriptor courier of a queue (`Courier::take`), against a model of what it
/// promises: batches come out in order; a batch older than the one wanted, or a packet
/// no multiproc process sent, is dropped on the way; a batch ahead (by at most 2^32)
/// stays for its own record and the wanted one is lost.
///
/// The input is a script: packets sent by producers (genuine batches, or any bytes,
/// with or without descriptors), and takes.
pub fn courier(data: &[u8]) {
    /// The model's packet: a batch's number, or garbage; and its descriptor count.
    enum Packet {
        Batch(u64),
        Garbage,
    }
    let before = open_descriptors();
    {
        let courier = Courier::new().expect("a socket pair");
        let mut model: VecDeque<(Packet, usize)> = VecDeque::new();
        let mut input = Input(data);
        let base = input.u64();
        while !input.is_empty() {
            let op = input.byte();
            match op % 4 {
                // A genuine batch.
                0 | 1 => {
                    let seq = base.wrapping_add(u64::from(input.byte()));
                    let fds = descriptors(1 + usize::from(op >> 2) % 3);
                    match courier.send(seq, &fds) {
                        Ok(()) => model.push_back((Packet::Batch(seq), fds.len())),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("cannot send a batch: {e}"),
                    }
                }
                // Anything at all.
                2 => {
                    let len = usize::from(input.byte() % 20);
                    let bytes = input.bytes(len);
                    let fds = descriptors(usize::from(op >> 2) % 3);
                    match courier.inject(bytes, &fds) {
                        Ok(()) => {
                            let packet = match <[u8; 8]>::try_from(bytes) {
                                Ok(b) => Packet::Batch(u64::from_le_bytes(b)),
                                Err(_) => Packet::Garbage,
                            };
                            model.push_back((packet, fds.len()));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("cannot send a packet: {e}"),
                    }
                }
                // A consumer takes a batch.
                _ => {
                    let seq = if op & 4 == 0 {
                        base.wrapping_add(u64::from(input.byte()))
                    } else {
                        input.u64()
                    };
                    let expected = loop {
                        let ahead = match model.front() {
                            None => break None,
                            Some((Packet::Batch(next), _)) => next.wrapping_sub(seq) as i64,
                            Some((Packet::Garbage, _)) => i64::MIN,
                        };
                        if (1..=1i64 << 32).contains(&ahead) {
                            break None;
                        }
                        let (_, fds) = model.pop_front().expect("a front");
                        if ahead == 0 {
                            break Some(fds);
                        }
                    };
                    match courier
                        .take(seq)
                        .expect("take never fails on a live courier")
                    {
                        Taken::Batch(fds) => assert_eq!(Some(fds.len()), expected),
                        Taken::Lost => assert_eq!(None, expected),
                    }
                }
            }
        }
    }
    assert_eq!(open_descriptors(), before, "descriptors leaked");
}

/// Records of a shared-memory ring (`Ring::header`, `Ring::read_payload`), the
/// data path of queues and connections, whose memory every holder can write.
///
/// The first byte picks a genuine ring or a hostile one. A genuine ring is written
/// by `Ring::write` with payloads from the input and read back: every record must
/// come back whole and in order. A hostile ring has its words and data area taken
/// from the input: reading it must stop at an error or the end, never reading out of
/// bounds (AddressSanitizer watches the copies) nor returning a payload longer than
/// the ring.
pub fn ring(data: &[u8]) {
    const SIZE: usize = 4096;
    let mut input = Input(data);
    let genuine = input.byte() & 1 == 0;
    let ctl = RingControl::default();
    let mut area = vec![0u8; SIZE];
    if !genuine {
        ctl.head.word.store(input.u64(), Ordering::Relaxed);
        ctl.tail.word.store(input.u64(), Ordering::Relaxed);
        let bytes = input.bytes(SIZE);
        area[..bytes.len()].copy_from_slice(bytes);
    }
    // SAFETY: `area` is SIZE bytes, a power of two within the bounds, and outlives
    // `ring`; this thread alone uses it.
    let ring = unsafe { Ring::new(&ctl, area.as_mut_ptr(), SIZE) };
    let mut expected = VecDeque::new();
    let mut out = Vec::new();
    let mut head = Word(ctl.head.word.load(Ordering::Relaxed));
    // Each round writes what fits (genuine) and reads one record: enough rounds to
    // write every record of the input and read them all.
    for _ in 0..data.len() + SIZE / 16 + 2 {
        if genuine {
            while !input.is_empty() {
                let len = usize::from(input.byte()) * 7;
                let Some(need) = ring::record_bytes(len) else {
                    break;
                };
                let tail = Word(ctl.tail.word.load(Ordering::Relaxed));
                if ring.free(tail, need).expect("a genuine ring") < need {
                    break;
                }
                let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ input.0.len() as u8).collect();
                let seq = u64::from(tail.count());
                ring.publish(ring.write(tail, 1, seq, &payload));
                expected.push_back((seq, payload));
            }
        }
        let tail = ring.tail(head);
        match ring.header(head, tail, |k| k == 1) {
            Ok(Some(header)) => {
                out.clear();
                ring.read_payload(head, &header, &mut out);
                assert_eq!(out.len(), header.len as usize);
                assert!(out.len() <= SIZE);
                if genuine {
                    let (seq, payload) = expected.pop_front().expect("a record was written");
                    assert_eq!((header.seq, &out), (seq, &payload));
                }
                head = Ring::after(head, &header);
                ring.release(head);
            }
            Ok(None) if genuine && !input.is_empty() => {}
            Ok(None) => break,
            Err(corrupt) => {
                assert!(!genuine, "a genuine ring is corrupt: {}", corrupt.0);
                break;
            }
        }
    }
    if genuine && input.is_empty() {
        assert!(
            expected.is_empty(),
            "{} records never came back",
            expected.len()
        );
    }
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

/// A small seed corpus: `(target, name, input)`, valid inputs of each target that
/// reach its decoder's successful paths (written to `fuzz/corpus/` by
/// `fuzz/examples/seeds.rs`).
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut seeds = Vec::new();

    // Frames: genuine streams (frames of 0, 5 and 300 bytes, with 0, 2 and 1
    // descriptors), read in small and large reads, by both readers; and a hostile
    // stream whose descriptors arrive in the middle of a frame.
    let mut genuine = Vec::new();
    for (len, fds) in [(0usize, 0u8), (5, 2), (300, 1)] {
        genuine.extend([(len / 13) as u8, (len % 13) as u8, fds]);
        genuine.extend((0..len).map(|i| i as u8));
    }
    for (name, mode, reads) in [
        ("genuine-small-reads", 0u8, vec![0u8, 1, 0, 2]),
        ("genuine-exact", 1, vec![255]),
        ("genuine-large-reads", 0, vec![255, 255]),
    ] {
        let mut input = vec![mode, reads.len() as u8];
        input.extend(reads);
        input.extend(&genuine);
        seeds.push(("frames", name, input));
    }
    let mut hostile = vec![2u8, 1, 0];
    hostile.extend([6, 0, 8, 0, 0, 0, b'a', b'b', 4, 1, b'c', b'd', b'e', b'f']);
    seeds.push(("frames", "hostile-fds-mid-frame", hostile));

    // Codec records: one value of each type the target decodes.
    let everything = Everything::Struct {
        name: "ada".into(),
        bytes: Bytes(vec![1, 2, 3]),
        list: vec![0, 1, u64::MAX],
        nested: vec![vec![None, Some(7)], vec![]],
        map: [("k".to_owned(), (5, -9))].into_iter().collect(),
        deque: [
            Everything::Unit,
            Everything::Tuple(1 << 100, -3, 'ß', true, -1),
        ]
        .into_iter()
        .collect(),
    };
    let record = |which: u8, bytes: Vec<u8>| [vec![which], bytes].concat();
    let encode = |value: &dyn erased::Encode| value.encode();
    seeds.extend([
        (
            "codec_record",
            "string",
            record(0, encode(&"héllo".to_owned())),
        ),
        (
            "codec_record",
            "bytes",
            record(1, encode(&Bytes(vec![0, 255, 7]))),
        ),
        (
            "codec_record",
            "numbers",
            record(2, encode(&vec![0u64, 300, 1 << 40])),
        ),
        (
            "codec_record",
            "map",
            record(3, encode(&HashMap::from([("a".to_owned(), vec![1u32, 2])]))),
        ),
        ("codec_record", "everything", record(4, encode(&everything))),
        (
            "codec_record",
            "list",
            record(
                5,
                encode(&vec![
                    Everything::Newtype("x".into()),
                    Everything::Unsized("/tmp".into(), "os".into()),
                ]),
            ),
        ),
        (
            "codec_record",
            "option",
            record(
                6,
                encode(&Some((Box::<[u8]>::from(&b"ab"[..]), 'z', -2i16))),
            ),
        ),
        (
            "codec_record",
            "floats",
            record(
                7,
                encode(&Floats(1.5, vec![f64::NAN, -0.0], Some((2.0, 3.0)))),
            ),
        ),
    ]);

    // Values with descriptors: two descriptors and a missing one; a shared region.
    let a = PortableFd::new(descriptors(1).remove(0));
    let value = (vec![a.clone(), a], "fds".to_owned(), None::<PortableFd>);
    let encoded = codec::encode(&value).expect("encodes");
    seeds.push((
        "codec_fds",
        "descriptors",
        [vec![2], encoded.bytes].concat(),
    ));
    let region = SharedRegion::new("seed", 4096).expect("a memfd");
    let encoded = codec::encode(&(3u8, &region, vec![1u16, 2])).expect("encodes");
    seeds.push(("codec_fds", "region", [vec![8 | 4], encoded.bytes].concat()));

    // The bootstrap record, in one read and in reads of 12 bytes.
    let mut boot = Bootstrap::new("fuzz::worker", "Process-1", &[1, 2], false);
    // The same seed on every machine.
    (boot.parent_pid, boot.parent_name, boot.log_level) = (1, "MainProcess".into(), None);
    let record = codec::encode_record(&boot).expect("encodes");
    let header = codec::frame_header(record.len()).expect("a small frame");
    let framed = [&header[..], &record].concat();
    seeds.push((
        "bootstrap",
        "one-read",
        [vec![255], framed.clone()].concat(),
    ));
    let mut split = Vec::new();
    for chunk in framed.chunks(12) {
        split.push(1);
        split.extend(chunk);
    }
    seeds.push(("bootstrap", "small-reads", split));

    // Reports: a value, a panic, a failure.
    seeds.extend([
        ("report", "value", [vec![0], encode(&42u64)].concat()),
        (
            "report",
            "panic",
            [
                vec![1],
                encode(&("boom".to_owned(), Some("src/main.rs:3:5".to_owned()))),
            ]
            .concat(),
        ),
        (
            "report",
            "failed",
            [vec![2], encode(&"no".to_owned())].concat(),
        ),
    ]);

    // The courier: batches sent and taken in order, one lost, a stale one skipped,
    // garbage of several sizes (with and without descriptors) on the way.
    let mut script = 1000u64.to_le_bytes().to_vec();
    script.extend([0, 1, 4, 2, 3, 1]); // batches 1000+1 and +2, take +1
    script.extend([2, 3, b'x', b'y', b'z', 6, 1, b'q']); // garbage, one with a descriptor
    script.extend([0, 5, 3, 3, 3, 5]); // batch +5; take +3 (lost), then +5
    script.extend([2, 8]);
    script.extend((1000u64 + 9).to_le_bytes()); // a forged batch of 8 bytes, number +9
    script.extend([7]);
    script.extend((1000u64 + 9).to_le_bytes()); // taken by its full number
    seeds.push(("courier", "script", script));

    // A ring written genuinely (records of 0 to 1785 bytes, wrapping around); a
    // hostile ring holding one valid record of "hello" (kind 1, number 0).
    seeds.push((
        "ring",
        "genuine",
        vec![0, 3, 0, 40, 255, 100, 200, 7, 1, 30, 90],
    ));
    let mut hostile = vec![1];
    hostile.extend(0u64.to_le_bytes());
    hostile.extend(Word::new(1, 32).0.to_le_bytes());
    hostile.extend(5u32.to_le_bytes());
    hostile.extend(1u32.to_le_bytes());
    hostile.extend(0u64.to_le_bytes());
    hostile.extend(b"hello");
    seeds.push(("ring", "hostile", hostile));

    // A connection's frames: two typed messages (numbers 0 and 1), a doorbell; the
    // same as bytes.
    let mut frames = Vec::new();
    for (seq, value) in [(0u64, vec![Some("a".to_owned()), None]), (1, vec![])] {
        let body = [&seq.to_le_bytes()[..], &encode(&value)].concat();
        frames.extend(codec::frame_header(body.len()).expect("small"));
        frames.extend(body);
    }
    frames.extend(codec::frame_header(0).expect("small"));
    seeds.push(("connection", "typed", [vec![0], frames.clone()].concat()));
    seeds.push(("connection", "bytes", [vec![1], frames].concat()));
    seeds
}

/// Encoding through a trait object, for the seed table.
mod erased {
    pub(super) trait Encode {
        fn encode(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Vec<u8> {
            crate::wire::codec::encode_record(self).expect("a seed encodes")
        }
    }
}
