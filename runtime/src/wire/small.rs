//! A fast path of the codec for the small items a queue carries one at a time: the
//! same bytes and the same values as [`codec::encode_into`] and [`codec::decode`], at
//! a fraction of their fixed cost (which, for an 8-byte item, is most of a queue's
//! cost per item).
//!
//! - Encoding first runs without the descriptor collector (whose installation costs
//!   more than encoding a small value). A value that holds no handle encodes the same
//!   either way; one that holds a handle makes that first run fail (a handle refuses
//!   to encode with no collector installed), and is then encoded again, whole, by
//!   [`codec::encode_into`], which collects its descriptors. So a value holding a
//!   handle has its `Serialize` called twice, the first time stopping at the first
//!   handle; any other encoding error is also the general path's, reported by it.
//! - A primitive (an integer, `bool`, a float, an array of up to 32 bytes) is
//!   written directly, as bincode's standard encoding writes it.
//! - Decoding a primitive reads bincode's encoding of it
//!   directly; anything it does not recognise exactly (another type, descriptors
//!   beside the bytes, a length or an integer marker that is not the canonical one)
//!   goes to [`codec::decode`], which gives the value or the error it always did.

use std::os::fd::OwnedFd;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::os::sealed;
use crate::wire::codec;
use crate::wire::encoder;
use crate::wire::error::CodecError;
use crate::wire::sink::{Body, Sink as Output};

/// As [`codec::encode_into`] into the empty `bytes`: appends `value` and returns a
/// duplicate of every descriptor its handles hold, without installing the descriptor
/// collector unless the value holds a handle. For a send path that takes a sealed
/// `memfd` (a queue's put), a value of [`SEAL_ABOVE`](crate::wire::frames::SEAL_ABOVE)
/// bytes or more is encoded straight into one, returned beside the descriptors (and
/// `bytes` is then left empty), as `codec::encode_message` does.
pub(crate) fn encode_sealable<T: Serialize + ?Sized>(
    value: &T,
    bytes: &mut Vec<u8>,
) -> Result<(Vec<OwnedFd>, Option<codec::Sealed>), CodecError> {
    debug_assert!(bytes.is_empty());
    if encode_primitive(value, bytes) {
        return Ok((Vec::new(), None));
    }
    // Inside another encode (a value serialized while one is running on this thread),
    // a handle would add itself to that encode's descriptors: the general path.
    if codec::collecting() {
        return Ok((codec::encode_into(value, bytes)?, None));
    }
    let mut sink = Output::sealable(std::mem::take(bytes));
    if encoder::encode_to_sink(value, &mut sink).is_ok() && sink.len() <= codec::MAX_MESSAGE_LEN {
        match sink.finish() {
            Ok(Body::Heap(buf)) => {
                *bytes = buf;
                return Ok((Vec::new(), None));
            }
            Ok(Body::Memfd { file, len }) => {
                if let Ok(fd) = sealed::seal(file) {
                    return Ok((Vec::new(), Some(codec::Sealed { fd, len })));
                }
            }
            // The system refused the `memfd`: the general path, into the buffer.
            Err(_) => {}
        }
    }
    Ok((codec::encode_into(value, bytes)?, None))
}

/// As [`codec::decode`]: a `T` from `bytes` and the descriptors that came with them.
#[inline]
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, CodecError> {
    if fds.is_empty() {
        if let Some(value) = decode_primitive::<T>(bytes) {
            return Ok(value);
        }
    }
    codec::decode(bytes, fds)
}

/// Appends the encoding of `value` if `T` is a primitive (or an array of up to 32
/// bytes): the bytes bincode's standard encoding, and the general encoder, write.
/// `false` (and nothing written) for any other type.
#[inline]
pub(crate) fn encode_primitive<T: ?Sized, S: Sink>(value: &T, bytes: &mut S) -> bool {
    macro_rules! unsigned {
        ($($t:ty),*) => {$(
            if let Some(v) = as_same::<T, $t>(value) {
                put_varint(*v as u64, bytes);
                return true;
            }
        )*};
    }
    macro_rules! signed {
        ($($t:ty),*) => {$(
            if let Some(v) = as_same::<T, $t>(value) {
                let v = *v as i64;
                put_varint(((v << 1) ^ (v >> 63)) as u64, bytes);
                return true;
            }
        )*};
    }
    macro_rules! fixed {
        ($($t:ty),*) => {$(
            if let Some(v) = as_same::<T, $t>(value) {
                bytes.extend(&v.to_le_bytes());
                return true;
            }
        )*};
    }
    macro_rules! arrays {
        ($($n:literal)*) => {
            match std::mem::size_of_val(value) {
                $($n => if let Some(v) = as_same::<T, [u8; $n]>(value) {
                    bytes.extend(v);
                    return true;
                },)*
                _ => {}
            }
        };
    }
    if let Some(v) = as_same::<T, bool>(value) {
        bytes.push(u8::from(*v));
        return true;
    }
    if let Some(v) = as_same::<T, i8>(value) {
        bytes.push(*v as u8);
        return true;
    }
    if let Some(v) = as_same::<T, u8>(value) {
        bytes.push(*v);
        return true;
    }
    unsigned!(u16, u32, u64, usize);
    signed!(i16, i32, i64, isize);
    fixed!(f32, f64);
    arrays!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
    false
}

/// Where [`encode_primitive`] writes: a growable buffer, or a [`Small`] one.
pub(crate) trait Sink {
    /// Appends one byte.
    fn push(&mut self, byte: u8);
    /// Appends `bytes`.
    fn extend(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }

    #[inline]
    fn extend(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A buffer on the stack that holds the encoding of any primitive
/// [`encode_primitive`] writes (at most 32 bytes: the largest byte array), so that a
/// queue's `put` of one needs no other buffer.
#[derive(Debug)]
pub(crate) struct Small {
    bytes: [u8; 32],
    len: usize,
}

impl Small {
    /// An empty buffer.
    #[inline]
    pub(crate) fn new() -> Small {
        Small {
            bytes: [0; 32],
            len: 0,
        }
    }

    /// What was written.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Sink for Small {
    #[inline]
    fn push(&mut self, byte: u8) {
        self.extend(&[byte]);
    }

    #[inline]
    fn extend(&mut self, bytes: &[u8]) {
        // Never more than 32 bytes in all (one primitive): a slice index that fails
        // would be a bug here, not input.
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

/// Appends `v` as one of bincode's variable-length integers (what the encoder
/// writes for a `u64`).
#[inline]
fn put_varint<S: Sink>(v: u64, bytes: &mut S) {
    if v <= 250 {
        bytes.push(v as u8);
    } else if let Ok(v) = u16::try_from(v) {
        bytes.push(251);
        bytes.extend(&v.to_le_bytes());
    } else if let Ok(v) = u32::try_from(v) {
        bytes.push(252);
        bytes.extend(&v.to_le_bytes());
    } else {
        bytes.push(253);
        bytes.extend(&v.to_le_bytes());
    }
}

/// Whether `T` is one of the primitives this fast path decodes directly (their
/// encodings are at most 32 bytes; most, 1 to 9).
#[inline]
pub(crate) fn is_primitive<T>() -> bool {
    macro_rules! any {
        ($($t:ty),*) => { false $(|| unty::type_equal::<T, $t>())* };
    }
    any!(
        u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, bool, f32, f64
    ) || (std::mem::size_of::<T>() <= 32 && is_byte_array::<T>())
}

/// Whether `T` is `[u8; N]` for an `N` of 1 to 32.
#[inline]
fn is_byte_array<T>() -> bool {
    macro_rules! arrays {
        ($($n:literal)*) => {
            match std::mem::size_of::<T>() {
                $($n => unty::type_equal::<T, [u8; $n]>(),)*
                _ => false,
            }
        };
    }
    arrays!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
}

/// `bytes` as a `T` if `T` is a primitive and `bytes` is exactly its canonical
/// encoding; `None` otherwise (for the general path to decode or refuse).
#[inline]
fn decode_primitive<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    macro_rules! unsigned {
        ($($t:ty),*) => {$(
            if unty::type_equal::<T, $t>() {
                let v = <$t>::try_from(varint(bytes)?).ok()?;
                return Some(same::<$t, T>(v));
            }
        )*};
    }
    macro_rules! signed {
        ($($t:ty),*) => {$(
            if unty::type_equal::<T, $t>() {
                let z = varint(bytes)?;
                let v = <$t>::try_from(((z >> 1) as i64) ^ -((z & 1) as i64)).ok()?;
                return Some(same::<$t, T>(v));
            }
        )*};
    }
    macro_rules! fixed {
        ($($t:ty),*) => {$(
            if unty::type_equal::<T, $t>() {
                let v = <$t>::from_le_bytes(bytes.try_into().ok()?);
                return Some(same::<$t, T>(v));
            }
        )*};
    }
    if unty::type_equal::<T, u8>() {
        let [b] = bytes else { return None };
        return Some(same::<u8, T>(*b));
    }
    if unty::type_equal::<T, i8>() {
        let [b] = bytes else { return None };
        return Some(same::<i8, T>(*b as i8));
    }
    if unty::type_equal::<T, bool>() {
        return match bytes {
            [0] => Some(same::<bool, T>(false)),
            [1] => Some(same::<bool, T>(true)),
            _ => None,
        };
    }
    macro_rules! arrays {
        ($($n:literal)*) => {
            match std::mem::size_of::<T>() {
                $($n if unty::type_equal::<T, [u8; $n]>() => {
                    let v: [u8; $n] = bytes.try_into().ok()?;
                    return Some(same::<[u8; $n], T>(v));
                })*
                _ => {}
            }
        };
    }
    unsigned!(u16, u32, u64, usize);
    signed!(i16, i32, i64, isize);
    fixed!(f32, f64);
    arrays!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
    None
}

/// The value of a whole `bytes` holding one of bincode's variable-length integers of
/// at most 64 bits in its canonical form (the shortest: what the encoder writes);
/// `None` for anything else.
#[inline]
fn varint(bytes: &[u8]) -> Option<u64> {
    match *bytes {
        [b] if b <= 250 => Some(u64::from(b)),
        [251, a, b] => Some(u64::from(u16::from_le_bytes([a, b]))).filter(|v| *v > 250),
        [252, a, b, c, d] => {
            Some(u64::from(u32::from_le_bytes([a, b, c, d]))).filter(|v| *v > 0xffff)
        }
        [253, ..] if bytes.len() == 9 => {
            let v = u64::from_le_bytes(bytes[1..].try_into().ok()?);
            (v > 0xffff_ffff).then_some(v)
        }
        _ => None,
    }
}

/// `value` as a `&U` if `T` is `U`.
#[inline(always)]
fn as_same<T: ?Sized, U>(value: &T) -> Option<&U> {
    if unty::type_equal::<T, U>() {
        // SAFETY: `T` and `U` are the same type (`U` is one of the concrete types
        // above, without lifetimes), so `&T` is `&U`.
        Some(unsafe { std::mem::transmute_copy::<&T, &U>(&value) })
    } else {
        None
    }
}

/// `value` as a `T`, which the caller checked is `U`.
#[inline(always)]
fn same<U: Copy, T>(value: U) -> T {
    debug_assert!(unty::type_equal::<T, U>());
    // SAFETY: the callers pass only `U` equal to `T` (checked with `type_equal` just
    // before; the types named there have no lifetimes), so this copies a plain value
    // into its own type.
    unsafe { std::mem::transmute_copy::<U, T>(&value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the general path makes of `value`, and what this one does, agree.
    fn agrees<T>(value: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let general = codec::encode(&value).unwrap();
        let mut bytes = Vec::new();
        assert!(encode_sealable(&value, &mut bytes).unwrap().0.is_empty());
        assert_eq!(bytes, general.bytes);
        assert_eq!(decode::<T>(&bytes, Vec::new()).unwrap(), value);
        assert_eq!(decode_primitive::<T>(&bytes), Some(value));
        assert!(is_primitive::<T>());
    }

    #[test]
    fn primitives_round_trip_as_the_general_path_encodes_them() {
        for v in [
            0u64,
            1,
            250,
            251,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            1 << 32,
            u64::MAX,
        ] {
            agrees(v);
            agrees(v as u32);
            agrees(v as u16);
            agrees(v as usize);
            agrees(v as u8);
            agrees(v as i64);
            agrees(v as i32);
            agrees(v as i16);
            agrees(v as i8);
            agrees(v as isize);
            agrees(v as f64);
            agrees(v as f32);
        }
        agrees(i64::MIN);
        agrees(*b"12345678");
        let mut small = Small::new();
        assert!(encode_primitive(&[9u8; 32], &mut small));
        assert_eq!(small.bytes(), &[9u8; 32][..]);
        let mut small = Small::new();
        assert!(encode_primitive(&u64::MAX, &mut small));
        assert_eq!(small.bytes(), &codec::encode(&u64::MAX).unwrap().bytes[..]);
        agrees([7u8; 32]);
        agrees([0u8; 1]);
        agrees(true);
        agrees(false);
    }

    #[test]
    fn anything_not_exactly_canonical_goes_to_the_general_path() {
        // A u16 marker holding a value that fits one byte: bincode's call.
        assert_eq!(decode_primitive::<u64>(&[251, 7, 0]), None);
        // Trailing bytes, truncation, a marker too wide for the type.
        assert_eq!(decode_primitive::<u64>(&[5, 0]), None);
        assert_eq!(decode_primitive::<u64>(&[253, 1, 2]), None);
        assert_eq!(decode_primitive::<u16>(&[252, 0, 0, 1, 0]), None);
        assert_eq!(decode_primitive::<bool>(&[2]), None);
        assert_eq!(decode_primitive::<String>(&[0]), None);
        assert!(!is_primitive::<String>() && !is_primitive::<[u8; 33]>());
        assert!(!is_primitive::<(u8, u8)>() && !is_primitive::<[u16; 2]>());
        // And the general path reports what is wrong.
        let err = decode::<u64>(&[5, 0], Vec::new()).unwrap_err();
        assert_eq!(err.kind(), crate::CodecErrorKind::TrailingBytes);
        let err = decode::<u64>(&[253, 1, 2], Vec::new()).unwrap_err();
        assert_eq!(err.kind(), crate::CodecErrorKind::Truncated);
    }

    #[test]
    fn a_value_holding_a_handle_still_carries_its_descriptor() {
        let (read, _write) = nix::unistd::pipe().unwrap();
        let value = (5u32, codec::PortableFd::new(read));
        let mut bytes = Vec::new();
        let fds = encode_sealable(&value, &mut bytes).unwrap().0;
        assert_eq!(fds.len(), 1);
        assert_eq!(bytes, codec::encode(&value).unwrap().bytes);
        let (five, _fd): (u32, codec::PortableFd) = decode(&bytes, fds).unwrap();
        assert_eq!(five, 5);
    }
}
