//! Not public API: the entry points of the fuzz targets in `fuzz/`, one per decoder of
//! what other processes send. Built only with the `fuzzing` feature.
//!
//! Each function takes the fuzzer's bytes, feeds them to a decoder as a hostile peer
//! would, and panics if the decoder misbehaves: a panic inside it, an allocation
//! beyond what the input holds (the fuzzer's memory limit catches those), a result
//! that contradicts a simple model of the format, or a decoded value that does not
//! re-encode to itself. A decoder that refuses its input with an error is behaving.

mod queues;
mod records;
mod seeds;
mod streams;

pub use self::queues::{courier, ring};
pub use self::records::{bootstrap, codec_fds, codec_record, report};
pub use self::seeds::seeds;
pub use self::streams::{connection, frames};

use std::os::fd::OwnedFd;

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
