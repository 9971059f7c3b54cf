//! The seed corpus of the fuzz targets.

use std::collections::HashMap;

use super::descriptors;
use super::records::{Bulk, Bytes, Everything, Floats};
use crate::ipc::ring::Word;
use crate::os::shm::SharedRegion;
use crate::process::bootstrap::{Bootstrap, Parent};
use crate::wire::codec::{self, PortableFd};

/// A small seed corpus: `(target, name, input)`, valid inputs of each target that
/// reach its decoder's successful paths (written to `fuzz/corpus/` by
/// `fuzz/examples/seeds.rs`).
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut seeds = Vec::new();

    // Frames: genuine streams (frames of 0, 5 and 300 bytes, with 0, 2 and 1
    // descriptors, and a sealed one of 40 bytes with 1), read in small and large
    // reads, by both readers; a hostile stream whose descriptors arrive in the middle
    // of a frame, and one with a frame flagged as sealed whose descriptor is not a
    // memfd.
    let mut genuine = Vec::new();
    for (len, fds) in [(0usize, 0u8), (5, 2), (300, 1), (40, 4 | 1)] {
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
    let mut forged = vec![2u8, 1, 255, 12, 1];
    forged.extend(codec::sealed_header());
    forged.extend(40u64.to_le_bytes());
    forged.extend([4, 0, b'n', b'e', b'x', b't']);
    seeds.push(("frames", "hostile-sealed-without-memfd", forged));

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
        (
            "codec_record",
            "bulk",
            record(
                8,
                encode(&Bulk {
                    bytes: (0..=255).collect(),
                    floats: vec![0.5, f64::NAN, -1e300],
                    singles: vec![2.5; 3],
                    signed: vec![-128, 0, 127],
                    flags: vec![true, false],
                    boxed: Box::from(&b"box"[..]),
                    maybe: Some(vec![9; 300]),
                    nested: vec![(vec![1], vec![1.0]), (vec![], vec![])],
                    map: [(vec![7u8], vec![0.25f32])].into_iter().collect(),
                }),
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
    let mut boot = Bootstrap::new(
        "fuzz::worker",
        "Process-1",
        &[1, 2],
        false,
        Parent {
            name: "MainProcess".into(),
            log_level: None,
        },
    );
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
