//! Where the encoder writes: a buffer of this process, which for a message allowed to
//! travel sealed moves into a `memfd` once it reaches [`SEAL_ABOVE`] bytes.
//!
//! A large message sent on a Unix socket travels as a sealed `memfd`
//! ([`crate::os::sealed`]). Encoding it into a heap buffer first and then `pwrite`-ing
//! that buffer costs a fresh 64 MiB buffer (its page faults) and one more copy of every
//! byte. A sink that may seal starts as a buffer; when the bytes reach the threshold it
//! creates the `memfd` and `pwrite`s what it holds, then keeps small pieces in a buffer
//! of [`CHUNK`] bytes written out as it fills, and writes a large slice (a `Vec<u8>`'s
//! memory, a `Vec<f64>`'s) straight from the caller's memory during the call that
//! hands it over (nothing of it is kept afterwards). At the end the `memfd` is sealed
//! with [`PAYLOAD_SEALS`](crate::os::sealed::PAYLOAD_SEALS).
//!
//! The `memfd` is never mapped here (the write seal needs no writable mapping to
//! exist), and is only ever written with `pwrite`: filling it through a writable
//! mapping was measured slower (`fallocate` zeroes every page first).
//!
//! The writes cannot fail in the middle of encoding (the serializer's methods do not
//! return system errors): the first error is kept, later bytes are dropped, and
//! [`Sink::finish`] returns it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::os::sealed;
use crate::wire::pages;

/// Messages of this many bytes or more travel in a sealed `memfd` on a Unix socket.
///
/// Measured on a 2-CPU VM (4 KiB pages for `memfd`s: transparent huge pages are off
/// for shared memory), one thread sending frames to another: the `memfd` costs a
/// fresh page per 4 KiB at the sender (`pwrite`, about 58 ms for 64 MiB), mapping
/// them at the receiver (19 ms) and freeing them (23 ms), while the stream's buffers
/// are reused from one message to the next as long as the allocator keeps them, which
/// glibc does below 32 MiB. Per message: 1 MiB 2.0 ms in the stream, 2.3 ms sealed;
/// 16 MiB 20 ms and 26 ms; 32 MiB 83 ms and 69 ms; 64 MiB 194 ms and 141 ms.
pub(crate) const SEAL_ABOVE: usize = 32 << 20;

/// Once in a `memfd`, small pieces are gathered into writes of this many bytes, and a
/// slice at least this long is written on its own.
const CHUNK: usize = 1 << 20;

/// The bytes of an encoded message.
#[derive(Debug)]
pub(crate) enum Body {
    /// In a buffer of this process.
    Heap(Vec<u8>),
    /// In a `memfd` of `len` bytes (at least [`SEAL_ABOVE`]), not yet sealed: the
    /// caller may still `pwrite` over bytes it holds (a sequence number put first)
    /// before sealing it with `sealed::seal`.
    Memfd { file: File, len: usize },
}

/// The encoder's output (module docs).
pub(crate) struct Sink {
    buf: Vec<u8>,
    /// The buffer's length at which [`Sink::overflow`] must run: [`SEAL_ABOVE`] for a
    /// sink that may seal and has not yet, [`CHUNK`] once in a `memfd`, never for a
    /// plain buffer.
    limit: usize,
    file: Option<File>,
    /// Bytes already written to `file`.
    written: usize,
    failed: Option<io::Error>,
}

impl Sink {
    /// A sink appending to `buf`, which stays a buffer however large it grows.
    pub(crate) fn heap(buf: Vec<u8>) -> Sink {
        Sink {
            buf,
            limit: usize::MAX,
            file: None,
            written: 0,
            failed: None,
        }
    }

    /// A sink that starts with the bytes of `buf` (fewer than [`SEAL_ABOVE`]), appends
    /// to it, and moves into a `memfd` at [`SEAL_ABOVE`] bytes (module docs).
    pub(crate) fn sealable(buf: Vec<u8>) -> Sink {
        debug_assert!(buf.len() < SEAL_ABOVE);
        Sink {
            limit: SEAL_ABOVE,
            ..Sink::heap(buf)
        }
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.written + self.buf.len()
    }

    /// Appends one byte.
    #[inline]
    pub(crate) fn push(&mut self, b: u8) {
        self.buf.push(b);
        if self.buf.len() >= self.limit {
            self.overflow(&[]);
        }
    }

    /// Appends `bytes`.
    #[inline]
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        if bytes.len() < self.limit.saturating_sub(self.buf.len()) {
            self.buf.extend_from_slice(bytes);
        } else {
            self.overflow(bytes);
        }
    }

    /// Makes room for `additional` bytes about to be appended, backed by huge pages
    /// when large, if they will stay in the buffer.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let held = self.buf.len();
        if additional < self.limit.saturating_sub(held) && self.buf.capacity() - held < additional {
            self.buf.reserve(additional);
            pages::prefer_huge_pages(&mut self.buf);
        }
    }

    /// The buffer reached `limit`, or `bytes` would take it there: moves into the
    /// `memfd` (creating it first), writing out what the buffer holds when it is full
    /// and `bytes` itself when it is large.
    #[cold]
    fn overflow(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            self.buf.clear();
            return;
        }
        if self.file.is_none() {
            match sealed::payload_file("message") {
                Ok(file) => self.file = Some(file),
                Err(e) => return self.fail(e),
            }
            self.limit = CHUNK;
        }
        if self.buf.len() + bytes.len() >= CHUNK && !self.buf.is_empty() {
            let held = std::mem::take(&mut self.buf);
            self.write_out(&held);
            self.buf = held;
            self.buf.clear();
            // A buffer left large by the bytes before the move is not kept.
            self.buf.shrink_to(CHUNK);
        }
        if bytes.len() >= CHUNK {
            self.write_out(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn write_out(&mut self, bytes: &[u8]) {
        let Some(file) = &self.file else { return };
        match file.write_all_at(bytes, self.written as u64) {
            Ok(()) => self.written += bytes.len(),
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: io::Error) {
        self.failed.get_or_insert(e);
        self.buf = Vec::new();
        self.limit = 0;
    }

    /// The bytes written: the buffer, or the `memfd` with what is left written out.
    /// The first write that failed, if one did.
    pub(crate) fn finish(mut self) -> io::Result<Body> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let Some(file) = self.file.take() else {
            return Ok(Body::Heap(self.buf));
        };
        let rest = std::mem::take(&mut self.buf);
        let at = self.written as u64;
        file.write_all_at(&rest, at)?;
        let len = self.written + rest.len();
        Ok(Body::Memfd { file, len })
    }

    /// The buffer of a sink made by [`Sink::heap`] (which never moves into a
    /// `memfd`).
    pub(crate) fn into_vec(self) -> Vec<u8> {
        debug_assert!(self.file.is_none() && self.failed.is_none());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::SEAL_ABOVE;
    use crate::os::sealed::SealedMap;
    use crate::wire::codec::{self, Encoded};

    /// Large slices between small fields, and small pieces after the move into the
    /// `memfd`.
    #[derive(Serialize)]
    struct Mixed {
        a: u32,
        b: Vec<u8>,
        c: String,
        d: Vec<f64>,
        e: Vec<u16>,
    }

    fn mixed() -> Mixed {
        Mixed {
            a: 0xdead_beef,
            b: (0..20 << 20).map(|i| (i % 251) as u8).collect(),
            c: "héllo ".repeat(100_000),
            d: (0..2 << 20).map(|i| f64::from(i) * 0.5).collect(),
            e: (0..600_000).map(|i| (i % 70_000) as u16).collect(),
        }
    }

    fn sealed_bytes(encoded: Encoded) -> Vec<u8> {
        let body = encoded.sealed.expect("sealed");
        assert!(encoded.bytes.is_empty() && encoded.fds.is_empty());
        SealedMap::open(body.fd, body.len).unwrap().bytes().to_vec()
    }

    #[test]
    fn a_large_value_encodes_into_a_sealed_memfd_with_bincodes_bytes() {
        let value = mixed();
        let expected = bincode::serde::encode_to_vec(&value, bincode::config::standard()).unwrap();
        assert!(expected.len() > SEAL_ABOVE);
        // `SealedMap::open` checks the seals, the size and that there is no hole.
        let got = sealed_bytes(codec::encode_message(&[7], &value).unwrap());
        assert_eq!(got.len(), expected.len() + 1);
        assert_eq!(got[0], 7);
        assert!(got[1..] == expected[..], "not bincode's bytes");
        // The queue's path: the same bytes, without a prefix.
        let mut buf = Vec::new();
        let (fds, body) = crate::wire::small::encode_sealable(&value, &mut buf).unwrap();
        assert!(fds.is_empty() && buf.is_empty());
        let body = body.expect("sealed");
        assert!(SealedMap::open(body.fd, body.len).unwrap().bytes() == expected);
    }

    #[test]
    fn a_smaller_value_stays_in_a_buffer() {
        let value = (1u8, vec![9u8; SEAL_ABOVE - 16]);
        let encoded = codec::encode_message(&[], &value).unwrap();
        assert!(encoded.sealed.is_none());
        assert_eq!(encoded.bytes, codec::encode(&value).unwrap().bytes);
        // Small pieces taking it past the threshold: sealed when the last one is
        // written.
        let value = (vec![9u8; SEAL_ABOVE - 16], vec![7u16; 100]);
        let got = sealed_bytes(codec::encode_message(&[], &value).unwrap());
        assert!(got == codec::encode(&value).unwrap().bytes);
    }
}
