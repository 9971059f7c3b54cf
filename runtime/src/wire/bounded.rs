//! Decoding that allocates no more than its input can hold.
//!
//! bincode's serde decoder allocates by the length a message claims before it reads
//! the bytes: `deserialize_string` and `deserialize_byte_buf` make a zeroed buffer of
//! the claimed length, then fill it. Its byte limit cannot bound that by the input: the
//! limit is a constant of the configuration, and it counts each integer at its full
//! width, not at its varint length (a `Vec<u64>` of small numbers claims eight times
//! its size), so a limit as small as the input would refuse genuine messages. A
//! 5-byte message claiming a 1 GiB `String` thus allocated 1 GiB before finding the
//! input too short, and aborted a process under a memory limit.
//!
//! [`Bounded`] wraps bincode's deserializer (over a slice) and every deserializer it
//! hands out for nested values, and changes two things:
//!
//! - a `String` or a byte buffer is decoded borrowed from the input, which bincode
//!   checks against the bytes left before it touches them, and only then copied into
//!   an owned buffer of the real length;
//! - a sequence's or map's size hint, which serde's collections use to preallocate, is
//!   capped by the input's length: every element of a genuine message takes at least
//!   one byte (elements of a zero-sized type take none, but serde never preallocates
//!   for those);
//! - a `Vec<u8>` whose seed is the plain one (at the top, as an element, a field, a
//!   map's key or value) is decoded as a byte buffer, which is how it is encoded: one
//!   bounded copy instead of one visit per byte; a `Vec<f64>` or `Vec<f32>` is
//!   allocated once at its announced length capped by the input (each element takes
//!   its full width), rather than grown from serde's cautious 1 MiB;
//! - the large buffers made here (and by `encoder` and `frames`) are advised to use
//!   huge pages (see `pages`).
//!
//! The two vector shortcuts live in `bulk`.
//!
//! Everything else is passed through unchanged, so values decode exactly as bincode
//! decodes them.

use std::fmt;
use std::marker::PhantomData;

use crate::wire::bulk::{byte_vec, float_vec, is_float_vec};
use crate::wire::pages;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// Deserializes a `T` through [`Bounded`]: the seed to give bincode's slice decoder.
pub(crate) struct BoundedSeed<T> {
    cap: usize,
    marker: std::marker::PhantomData<fn() -> T>,
}

impl<T> BoundedSeed<T> {
    /// A seed for an input of `input_len` bytes.
    pub(crate) fn new(input_len: usize) -> Self {
        BoundedSeed {
            cap: input_len,
            marker: std::marker::PhantomData,
        }
    }
}

impl<'de, T: serde::Deserialize<'de>> DeserializeSeed<'de> for BoundedSeed<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        if unty::type_equal::<T, Vec<u8>>() {
            return byte_vec(deserializer);
        }
        if is_float_vec::<T>() {
            return float_vec(deserializer, self.cap);
        }
        T::deserialize(Bounded {
            inner: deserializer,
            cap: self.cap,
        })
    }
}

/// A deserializer whose allocations are bounded by `cap`, the input's length.
struct Bounded<D> {
    inner: D,
    cap: usize,
}

/// A visitor, access or seed of the value being decoded, wrapped so that the
/// deserializers it is handed are [`Bounded`] too.
struct Wrap<X> {
    inner: X,
    cap: usize,
}

impl<X> Wrap<X> {
    fn new(inner: X, cap: usize) -> Self {
        Wrap { inner, cap }
    }
}

/// Forwards `deserialize_*` methods that take only a visitor.
macro_rules! forward_deserialize {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Wrap::new(visitor, self.cap))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any deserialize_bool
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_bytes
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_str(OwnedString(visitor))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_bytes(OwnedBytes(visitor))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_unit_struct(name, Wrap::new(visitor, self.cap))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_newtype_struct(name, Wrap::new(visitor, self.cap))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_tuple(len, Wrap::new(visitor, self.cap))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_tuple_struct(name, len, Wrap::new(visitor, self.cap))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_struct(name, fields, Wrap::new(visitor, self.cap))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_enum(name, variants, Wrap::new(visitor, self.cap))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forwards `visit_*` methods of a plain value.
macro_rules! forward_visit {
    ($($method:ident: $ty:ty)*) => {$(
        fn $method<E: serde::de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool: bool
        visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64 visit_i128: i128
        visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64 visit_u128: u128
        visit_f32: f32 visit_f64: f64 visit_char: char
        visit_str: &str visit_borrowed_str: &'de str visit_string: String
        visit_bytes: &[u8] visit_borrowed_bytes: &'de [u8] visit_byte_buf: Vec<u8>
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Bounded {
            inner: d,
            cap: self.cap,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Bounded {
            inner: d,
            cap: self.cap,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(Wrap::new(seq, self.cap))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Wrap::new(map, self.cap))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Wrap::new(data, self.cap))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Wrap::new(seed, self.cap))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint().map(|n| n.min(self.cap))
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Wrap::new(seed, self.cap))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(Wrap::new(seed, self.cap))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint().map(|n| n.min(self.cap))
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<A> {
    type Error = A::Error;
    type Variant = Wrap<A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(Wrap::new(seed, self.cap))?;
        Ok((value, Wrap::new(variant, self.cap)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Wrap::new(seed, self.cap))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(len, Wrap::new(visitor, self.cap))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Wrap::new(visitor, self.cap))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        // The seed of a plain `Vec<u8>` (what `next_element::<Vec<u8>>` passes): no
        // state of its own, so decoding the value directly is what it would do.
        if unty::type_equal::<S, PhantomData<Vec<u8>>>() {
            return byte_vec(deserializer);
        }
        if unty::type_equal::<S, PhantomData<Vec<f64>>>()
            || unty::type_equal::<S, PhantomData<Vec<f32>>>()
        {
            return float_vec(deserializer, self.cap);
        }
        self.inner.deserialize(Bounded {
            inner: deserializer,
            cap: self.cap,
        })
    }
}

/// Receives a string borrowed from the input (its length already checked against the
/// bytes present) and hands the visitor an owned copy, as `deserialize_string` would.
struct OwnedString<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for OwnedString<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<V::Value, E> {
        let mut bytes = pages::with_capacity(v.len());
        bytes.extend_from_slice(v.as_bytes());
        // SAFETY: the bytes of a `str`, so valid UTF-8.
        self.0
            .visit_string(unsafe { String::from_utf8_unchecked(bytes) })
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<V::Value, E> {
        self.0.visit_string(v)
    }
}

/// Receives bytes borrowed from the input (their length already checked against the
/// bytes present) and hands the visitor an owned copy, as `deserialize_byte_buf`
/// would.
struct OwnedBytes<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for OwnedBytes<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.0.visit_byte_buf(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.0.visit_byte_buf(v)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::collections::{BTreeMap, HashMap};

    use serde::{Deserialize, Serialize};

    use crate::wire::codec::{decode_record, encode_record};
    use crate::wire::error::CodecErrorKind;

    /// The system allocator, noting the largest single request made by the thread
    /// that is inside [`largest_allocation`].
    struct Recording;

    thread_local! {
        static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
    }

    // SAFETY: every call is passed to the system allocator unchanged.
    unsafe impl GlobalAlloc for Recording {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    fn note(size: usize) {
        // `try_with`: the slot may be gone while the thread exits.
        let _ = LARGEST.try_with(|l| {
            if let Some(largest) = l.get() {
                l.set(Some(largest.max(size)));
            }
        });
    }

    #[global_allocator]
    static ALLOCATOR: Recording = Recording;

    /// The largest single allocation `f` makes on this thread, and its result.
    pub(crate) fn largest_allocation<R>(f: impl FnOnce() -> R) -> (usize, R) {
        LARGEST.with(|l| l.set(Some(0)));
        let result = f();
        let largest = LARGEST.with(|l| l.replace(None)).unwrap_or_default();
        (largest, result)
    }

    /// A varint length of `n` (bincode's standard encoding for a `u64` above
    /// `u32::MAX`), then `tail`.
    pub(crate) fn claim(n: u64, tail: &[u8]) -> Vec<u8> {
        let mut bytes = vec![253];
        bytes.extend_from_slice(&n.to_le_bytes());
        bytes.extend_from_slice(tail);
        bytes
    }

    /// A byte buffer that asks for `deserialize_byte_buf` (what `serde_bytes` does).
    #[derive(Debug, PartialEq, Serialize)]
    struct Buf(#[serde(serialize_with = "as_bytes")] Vec<u8>);

    fn as_bytes<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    impl<'de> Deserialize<'de> for Buf {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Buf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                // Only the owned form: `deserialize_byte_buf` must still deliver it.
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Buf, E> {
                    Ok(Buf(v))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    /// A string whose visitor takes only the owned form.
    #[derive(Debug, PartialEq, Serialize)]
    struct Owned(String);

    // On purpose: a visitor that takes only `visit_string` must keep working.
    #[allow(clippy::serde_api_misuse)]
    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Owned;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_string<E>(self, v: String) -> Result<Owned, E> {
                    Ok(Owned(v))
                }
            }
            d.deserialize_string(V)
        }
    }

    #[test]
    fn a_forged_string_length_allocates_nothing_of_its_size() {
        // 13 bytes claiming a string of almost 1 GiB (under the old byte limit).
        let bytes = claim((1 << 30) - 64, b"abcd");
        let (largest, result) = largest_allocation(|| decode_record::<String>(&bytes));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest < 4096, "allocated {largest} bytes");
        let (largest, result) = largest_allocation(|| decode_record::<Owned>(&bytes));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest < 4096, "allocated {largest} bytes");
    }

    #[test]
    fn a_forged_byte_buffer_length_allocates_nothing_of_its_size() {
        let bytes = claim((1 << 30) - 64, b"abcd");
        let (largest, result) = largest_allocation(|| decode_record::<Buf>(&bytes));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest < 4096, "allocated {largest} bytes");
    }

    #[test]
    fn a_forged_sequence_length_preallocates_no_more_than_the_input() {
        // serde preallocates up to 1 MiB from a size hint; the input caps it here.
        let bytes = claim(1 << 40, &[1, 2, 3]);
        let (largest, result) = largest_allocation(|| decode_record::<Vec<u64>>(&bytes));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest <= 8 * bytes.len(), "allocated {largest} bytes");
        let (largest, result) =
            largest_allocation(|| decode_record::<HashMap<u64, String>>(&bytes));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest <= 64 * bytes.len(), "allocated {largest} bytes");
        // Nested: each level claims a huge length and is capped the same way.
        let mut nested = claim(1 << 40, &[]);
        nested.extend(claim(1 << 40, &[]));
        let (largest, result) = largest_allocation(|| decode_record::<Vec<Vec<u64>>>(&nested));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest <= 24 * nested.len(), "allocated {largest} bytes");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Unit,
        Newtype(Box<str>),
        Tuple(u128, i64, char, f64),
        Struct {
            path: std::path::PathBuf,
            bytes: Buf,
            owned: Owned,
            map: BTreeMap<String, Vec<Option<u16>>>,
        },
    }

    #[test]
    fn values_decode_as_bincode_decodes_them() {
        let values = vec![
            Sample::Unit,
            Sample::Newtype("é".repeat(300).into()),
            Sample::Tuple(u128::MAX, -5, '∂', 1.5),
            Sample::Struct {
                path: "/a/b".into(),
                bytes: Buf(vec![7; 5000]),
                owned: Owned("owned".into()),
                map: [("k".to_owned(), vec![None, Some(3), Some(70000u32 as u16)])]
                    .into_iter()
                    .collect(),
            },
        ];
        let bytes = encode_record(&values).unwrap();
        assert_eq!(decode_record::<Vec<Sample>>(&bytes).unwrap(), values);
        // A long sequence of small numbers: each claims 8 bytes in bincode's count but
        // takes one, which a byte limit sized by the input would have refused.
        let small = vec![1u64; 100_000];
        let bytes = encode_record(&small).unwrap();
        assert!(bytes.len() < 8 * small.len());
        assert_eq!(decode_record::<Vec<u64>>(&bytes).unwrap(), small);
    }
}
