//! Targets of the decoders of records: the codec's records and values with
//! descriptors, a child's bootstrap record and the report it sends back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Input, descriptors, open_descriptors};
use crate::os::shm::SharedRegion;
use crate::process::bootstrap::Bootstrap;
use crate::process::report::Report;
use crate::wire::codec::{self, PortableFd};
use crate::wire::frames::{Frame, FrameReader};
use crate::wire::small;

/// A byte buffer that asks for `deserialize_byte_buf`, as `serde_bytes` does.
#[derive(Debug, PartialEq)]
pub(super) struct Bytes(pub(super) Vec<u8>);

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
pub(super) enum Everything {
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
pub(super) struct Floats(
    pub(super) f32,
    pub(super) Vec<f64>,
    pub(super) Option<(f64, f32)>,
);

/// The vectors the codec copies in one piece (encoding) or decodes in one piece or
/// preallocated, at the top, as fields, in options, nested and as map keys.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Bulk {
    pub(super) bytes: Vec<u8>,
    pub(super) floats: Vec<f64>,
    pub(super) singles: Vec<f32>,
    pub(super) signed: Vec<i8>,
    pub(super) flags: Vec<bool>,
    pub(super) boxed: Box<[u8]>,
    pub(super) maybe: Option<Vec<u8>>,
    pub(super) nested: Vec<(Vec<u8>, Vec<f64>)>,
    pub(super) map: BTreeMap<Vec<u8>, Vec<f32>>,
}

/// Decodes `bytes` as a `T`; a decoded value must encode to what bincode's own
/// serializer writes (the codec's encoder copies some vectors in one piece, and must
/// write the very same bytes), and decode again to the same value and the same bytes.
/// (`same` compares values; `None` compares their encodings instead.)
fn round_trip<T: Serialize + DeserializeOwned + Debug>(
    bytes: &[u8],
    same: Option<fn(&T, &T) -> bool>,
) {
    let Ok(value) = codec::decode_record::<T>(bytes) else {
        return;
    };
    let encoded = codec::encode_record(&value).expect("a decoded value encodes");
    let by_bincode = bincode::serde::encode_to_vec(&value, bincode::config::standard())
        .expect("bincode encodes a decoded value");
    assert_eq!(
        encoded, by_bincode,
        "the codec's encoding differs from bincode's"
    );
    let again: T = codec::decode_record(&encoded).expect("an encoded value decodes");
    match same {
        Some(same) => assert!(same(&value, &again), "{value:?} came back as {again:?}"),
        None => assert_eq!(codec::encode_record(&again).ok(), Some(encoded)),
    }
}

/// The queue's fast path for primitives (`small::decode`, `small::encode_sealable`) against
/// the general codec: the same value or an error for the same bytes, and the same bytes
/// for the value (floats compared by their bits: NaN differs from itself).
fn small_agrees<T: Serialize + DeserializeOwned + Debug>(bytes: &[u8], same: fn(&T, &T) -> bool) {
    let fast = small::decode::<T>(bytes, Vec::new());
    let general = codec::decode::<T>(bytes, Vec::new());
    match (&fast, &general) {
        (Ok(a), Ok(b)) => assert!(same(a, b), "fast path {a:?}, general {b:?}"),
        (Err(_), Err(_)) => {}
        _ => panic!("fast path {fast:?}, general {general:?} for {bytes:?}"),
    }
    if let Ok(value) = fast {
        let mut quick = Vec::new();
        let (fds, sealed) =
            small::encode_sealable(&value, &mut quick).expect("a decoded value encodes");
        assert!(fds.is_empty() && sealed.is_none());
        assert_eq!(
            Some(quick),
            codec::encode(&value).ok().map(|e| e.bytes),
            "the fast path's encoding differs from the codec's"
        );
    }
}

/// Runs [`small_agrees`] for the primitive type `which` picks.
fn small_primitives(which: u8, bytes: &[u8]) {
    fn eq<T: PartialEq>(a: &T, b: &T) -> bool {
        a == b
    }
    match which % 16 {
        0 => small_agrees::<u8>(bytes, eq),
        1 => small_agrees::<u16>(bytes, eq),
        2 => small_agrees::<u32>(bytes, eq),
        3 => small_agrees::<u64>(bytes, eq),
        4 => small_agrees::<usize>(bytes, eq),
        5 => small_agrees::<i8>(bytes, eq),
        6 => small_agrees::<i16>(bytes, eq),
        7 => small_agrees::<i32>(bytes, eq),
        8 => small_agrees::<i64>(bytes, eq),
        9 => small_agrees::<isize>(bytes, eq),
        10 => small_agrees::<bool>(bytes, eq),
        11 => small_agrees::<f32>(bytes, |a, b| a.to_bits() == b.to_bits()),
        12 => small_agrees::<f64>(bytes, |a, b| a.to_bits() == b.to_bits()),
        13 => small_agrees::<[u8; 1]>(bytes, eq),
        14 => small_agrees::<[u8; 8]>(bytes, eq),
        _ => small_agrees::<[u8; 32]>(bytes, eq),
    }
}

/// The codec's records (`codec::decode_record`): the first byte picks a type. The same
/// bytes also go through the queue's fast path for primitives, checked against the
/// general codec ([`small_agrees`]).
pub fn codec_record(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    small_primitives(which / 9, bytes);
    match which % 9 {
        0 => round_trip::<String>(bytes, Some(PartialEq::eq)),
        1 => round_trip::<Bytes>(bytes, Some(PartialEq::eq)),
        2 => round_trip::<Vec<u64>>(bytes, Some(PartialEq::eq)),
        // A HashMap's order, and so its encoding, differs from one map to the next.
        3 => round_trip::<HashMap<String, Vec<u32>>>(bytes, Some(PartialEq::eq)),
        4 => round_trip::<Everything>(bytes, Some(PartialEq::eq)),
        5 => round_trip::<Vec<Everything>>(bytes, Some(PartialEq::eq)),
        6 => round_trip::<Option<(Box<[u8]>, char, i16)>>(bytes, Some(PartialEq::eq)),
        // NaN differs from itself: floats are compared by their encoding.
        7 => round_trip::<Floats>(bytes, None),
        _ => round_trip::<Bulk>(bytes, None),
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
        bytes: data.to_vec().into(),
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
        Ok(Report::Returned(_)) => panic!("`parse` made the child's outgoing report"),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_for_primitives_agrees_with_the_codec() {
        // Canonical encodings, the varint markers at their edges, non-canonical and
        // truncated forms, and trailing bytes, for every primitive type.
        let inputs: [&[u8]; 12] = [
            &[],
            &[0],
            &[250],
            &[251, 0xff, 0xff],
            &[251, 7, 0],
            &[252, 1, 0, 0, 0],
            &[253, 1, 2, 3, 4, 5, 6, 7, 8],
            &[254, 1],
            &[255],
            &[1, 2],
            &[0x80; 8],
            &[9; 32],
        ];
        for which in 0..16 {
            for bytes in inputs {
                small_primitives(which, bytes);
            }
        }
    }

    #[test]
    fn the_codec_record_seeds_decode_and_pass_the_target() {
        let seeds: Vec<_> = crate::fuzzing::seeds()
            .into_iter()
            .filter(|(target, _, _)| *target == "codec_record")
            .collect();
        assert!(seeds.iter().any(|(_, name, _)| *name == "bulk"));
        for (_, name, input) in seeds {
            codec_record(&input);
            if name == "bulk" {
                let bulk = codec::decode_record::<Bulk>(&input[1..]).expect("the seed decodes");
                assert_eq!(bulk.bytes.len(), 256);
                assert_eq!(bulk.maybe.map(|m| m.len()), Some(300));
            }
        }
    }
}
