//! The bytes of a received message: a buffer of this process, or a sealed `memfd`
//! mapped read-only (see [`crate::os::sealed`]), read the same way through `Deref`.

use std::fmt;
use std::ops::Deref;

use crate::os::sealed::SealedMap;

/// The bytes of one received message. Dereferences to `[u8]`.
#[derive(Default)]
pub(crate) struct Payload {
    repr: Repr,
    /// Bytes at the front no longer part of the message (a frame header, a kind
    /// byte): skipped rather than moved.
    start: usize,
}

enum Repr {
    Heap(Vec<u8>),
    Sealed(SealedMap),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Heap(Vec::new())
    }
}

impl Payload {
    /// The bytes of `buf` from `start` on.
    pub(crate) fn heap_from(buf: Vec<u8>, start: usize) -> Payload {
        debug_assert!(start <= buf.len());
        Payload {
            repr: Repr::Heap(buf),
            start,
        }
    }

    /// The bytes of a mapped sealed payload.
    pub(crate) fn sealed(map: SealedMap) -> Payload {
        Payload {
            repr: Repr::Sealed(map),
            start: 0,
        }
    }

    /// Whether the bytes are a mapped sealed payload.
    pub(crate) fn is_sealed(&self) -> bool {
        matches!(self.repr, Repr::Sealed(_))
    }

    /// Drops the first `n` bytes (all of them if fewer), without moving the rest.
    pub(crate) fn advance(&mut self, n: usize) {
        self.start += n.min(self.len());
    }

    /// The bytes as a vector of this process: the buffer itself when they are one
    /// (moved down if a front was dropped), a copy of a mapped payload otherwise.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self.repr {
            Repr::Heap(mut buf) => {
                buf.drain(..self.start);
                buf
            }
            Repr::Sealed(map) => map.bytes()[self.start..].to_vec(),
        }
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let all = match &self.repr {
            Repr::Heap(buf) => buf.as_slice(),
            Repr::Sealed(map) => map.bytes(),
        };
        &all[self.start..]
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl<T: AsRef<[u8]> + ?Sized> PartialEq<T> for Payload {
    fn eq(&self, other: &T) -> bool {
        **self == *other.as_ref()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(buf: Vec<u8>) -> Payload {
        Payload::heap_from(buf, 0)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("len", &self.len())
            .field("sealed", &self.is_sealed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::sealed;

    #[test]
    fn both_kinds_read_alike() {
        let mut heap = Payload::heap_from(b"..hello".to_vec(), 2);
        let fd = sealed::seal_parts("test", &[b"hello"]).unwrap();
        let mut mapped = Payload::sealed(SealedMap::open(fd, 5).unwrap());
        assert!(mapped.is_sealed() && !heap.is_sealed());
        assert_eq!(&*heap, b"hello");
        assert_eq!(&*mapped, b"hello");
        heap.advance(1);
        mapped.advance(1);
        assert_eq!((&*heap, &*mapped), (&b"ello"[..], &b"ello"[..]));
        assert_eq!(heap.into_vec(), b"ello");
        assert_eq!(mapped.into_vec(), b"ello");
        let mut short = Payload::from(vec![1u8]);
        short.advance(5);
        assert!(short.is_empty());
    }
}
