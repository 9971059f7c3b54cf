//! A serde serializer writing bincode 2's standard encoding, with bulk copies for the
//! large values users send.
//!
//! serde hands a `Vec<u8>` to a serializer one element at a time, and bincode's
//! serializer writes each element through its writer: a 64 MiB `Vec<u8>` took 64 Mi
//! calls. This serializer writes exactly the bytes bincode's would (`bincode::serde`,
//! standard configuration: little-endian, variable-length integers), so that bincode
//! decodes them, but looks at the type of each value it is handed before asking the
//! value to serialize itself: a slice or `Vec` of `u8`, `i8`, `bool`, `f32` or `f64`, and
//! a `Box<[u8]>`, is written as its length and one copy of its memory. In bincode's
//! standard encoding these elements are fixed-width and little-endian, so that copy is
//! the very bytes the element-by-element path writes; the floats' copy is made only on
//! little-endian targets.
//!
//! The type test is `unty::type_equal`, the one bincode uses for the same purpose: it
//! compares `TypeId`s, and the types it looks for have no lifetimes.

use std::fmt;

use crate::wire::sink::Sink;
use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// Why a value could not be encoded: the message its `Serialize` impl gave, or a
/// sequence without a length.
#[derive(Debug)]
pub(crate) struct EncodeFailure(pub(crate) String);

impl fmt::Display for EncodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeFailure {}

impl ser::Error for EncodeFailure {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeFailure(msg.to_string())
    }
}

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode_to<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeFailure> {
    let mut sink = Sink::heap(std::mem::take(out));
    let result = Encoder { out: &mut sink }.value(value);
    *out = sink.into_vec();
    result
}

/// Appends the encoding of `value` to `sink` (which may move into a sealed `memfd`).
pub(crate) fn encode_to_sink<T: Serialize + ?Sized>(
    value: &T,
    sink: &mut Sink,
) -> Result<(), EncodeFailure> {
    Encoder { out: sink }.value(value)
}

/// The serializer: everything is appended to `out`.
pub(crate) struct Encoder<'a> {
    out: &'a mut Sink,
}

const SINGLE_BYTE_MAX: u64 = 250;
const U16_BYTE: u8 = 251;
const U32_BYTE: u8 = 252;
const U64_BYTE: u8 = 253;
const U128_BYTE: u8 = 254;

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn zigzag128(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

/// The memory of a slice of plain elements, as bytes.
fn bytes_of<E: Copy>(elements: &[E]) -> &[u8] {
    // SAFETY: only called with `u8`, `i8`, `bool`, `f32` and `f64`, which have no
    // padding and no invalid bit patterns as bytes; the length is the slice's size.
    unsafe { std::slice::from_raw_parts(elements.as_ptr().cast(), std::mem::size_of_val(elements)) }
}

/// `value` as a `&U` if `T` is `U`.
fn cast<T: ?Sized, U: ?Sized>(value: &T) -> Option<&U> {
    if unty::type_equal::<T, U>() {
        // SAFETY: `T` and `U` are the same type (neither has lifetimes: `U` is one of
        // the concrete types below), so `&T` is `&U`.
        Some(unsafe { std::mem::transmute_copy::<&T, &U>(&value) })
    } else {
        None
    }
}

impl Encoder<'_> {
    fn byte(&mut self, b: u8) {
        self.out.push(b);
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend(bytes);
    }

    fn varint(&mut self, v: u64) {
        if v <= SINGLE_BYTE_MAX {
            self.byte(v as u8);
        } else if v <= u64::from(u16::MAX) {
            self.byte(U16_BYTE);
            self.raw(&(v as u16).to_le_bytes());
        } else if v <= u64::from(u32::MAX) {
            self.byte(U32_BYTE);
            self.raw(&(v as u32).to_le_bytes());
        } else {
            self.byte(U64_BYTE);
            self.raw(&v.to_le_bytes());
        }
    }

    fn varint128(&mut self, v: u128) {
        match u64::try_from(v) {
            Ok(v) => self.varint(v),
            Err(_) => {
                self.byte(U128_BYTE);
                self.raw(&v.to_le_bytes());
            }
        }
    }

    /// A length, then `bytes`, reserved at once (or, in a `memfd`, written from
    /// where they are).
    fn block(&mut self, len: usize, bytes: &[u8]) {
        self.out.reserve(9 + bytes.len());
        self.varint(len as u64);
        self.raw(bytes);
    }

    /// Writes `value` in one copy if it is one of the bulk types; false otherwise.
    fn bulk<T: ?Sized>(&mut self, value: &T) -> bool {
        if let Some(v) = cast::<T, Vec<u8>>(value) {
            self.block(v.len(), v);
        } else if let Some(v) = cast::<T, [u8]>(value) {
            self.block(v.len(), v);
        } else if let Some(v) = cast::<T, Box<[u8]>>(value) {
            self.block(v.len(), v);
        } else if let Some(v) = cast::<T, Vec<i8>>(value) {
            self.block(v.len(), bytes_of(v));
        } else if let Some(v) = cast::<T, Vec<bool>>(value) {
            self.block(v.len(), bytes_of(v));
        } else if cfg!(target_endian = "little") {
            if let Some(v) = cast::<T, Vec<f64>>(value) {
                self.block(v.len(), bytes_of(v));
            } else if let Some(v) = cast::<T, [f64]>(value) {
                self.block(v.len(), bytes_of(v));
            } else if let Some(v) = cast::<T, Vec<f32>>(value) {
                self.block(v.len(), bytes_of(v));
            } else if let Some(v) = cast::<T, [f32]>(value) {
                self.block(v.len(), bytes_of(v));
            } else {
                return false;
            }
        } else {
            return false;
        }
        true
    }

    /// Encodes a value nested in the one being encoded.
    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeFailure> {
        if self.bulk(value) {
            return Ok(());
        }
        value.serialize(Encoder { out: self.out })
    }
}

fn no_length() -> EncodeFailure {
    EncodeFailure("a sequence or map must know its length to be encoded".to_owned())
}

impl<'a> Serializer for Encoder<'a> {
    type Ok = ();
    type Error = EncodeFailure;
    type SerializeSeq = Encoder<'a>;
    type SerializeTuple = Encoder<'a>;
    type SerializeTupleStruct = Encoder<'a>;
    type SerializeTupleVariant = Encoder<'a>;
    type SerializeMap = Encoder<'a>;
    type SerializeStruct = Encoder<'a>;
    type SerializeStructVariant = Encoder<'a>;

    fn serialize_bool(mut self, v: bool) -> Result<(), EncodeFailure> {
        self.byte(u8::from(v));
        Ok(())
    }
    fn serialize_i8(mut self, v: i8) -> Result<(), EncodeFailure> {
        self.byte(v as u8);
        Ok(())
    }
    fn serialize_i16(mut self, v: i16) -> Result<(), EncodeFailure> {
        self.varint(zigzag64(i64::from(v)));
        Ok(())
    }
    fn serialize_i32(mut self, v: i32) -> Result<(), EncodeFailure> {
        self.varint(zigzag64(i64::from(v)));
        Ok(())
    }
    fn serialize_i64(mut self, v: i64) -> Result<(), EncodeFailure> {
        self.varint(zigzag64(v));
        Ok(())
    }
    fn serialize_i128(mut self, v: i128) -> Result<(), EncodeFailure> {
        self.varint128(zigzag128(v));
        Ok(())
    }
    fn serialize_u8(mut self, v: u8) -> Result<(), EncodeFailure> {
        self.byte(v);
        Ok(())
    }
    fn serialize_u16(mut self, v: u16) -> Result<(), EncodeFailure> {
        self.varint(u64::from(v));
        Ok(())
    }
    fn serialize_u32(mut self, v: u32) -> Result<(), EncodeFailure> {
        self.varint(u64::from(v));
        Ok(())
    }
    fn serialize_u64(mut self, v: u64) -> Result<(), EncodeFailure> {
        self.varint(v);
        Ok(())
    }
    fn serialize_u128(mut self, v: u128) -> Result<(), EncodeFailure> {
        self.varint128(v);
        Ok(())
    }
    fn serialize_f32(mut self, v: f32) -> Result<(), EncodeFailure> {
        self.raw(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(mut self, v: f64) -> Result<(), EncodeFailure> {
        self.raw(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(mut self, v: char) -> Result<(), EncodeFailure> {
        let mut buf = [0u8; 4];
        self.raw(v.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }
    fn serialize_str(mut self, v: &str) -> Result<(), EncodeFailure> {
        self.block(v.len(), v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(mut self, v: &[u8]) -> Result<(), EncodeFailure> {
        self.block(v.len(), v);
        Ok(())
    }
    fn serialize_none(mut self) -> Result<(), EncodeFailure> {
        self.byte(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(mut self, value: &T) -> Result<(), EncodeFailure> {
        self.byte(1);
        self.value(value)
    }
    fn serialize_unit(self) -> Result<(), EncodeFailure> {
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeFailure> {
        Ok(())
    }
    fn serialize_unit_variant(
        mut self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), EncodeFailure> {
        self.varint(u64::from(index));
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeFailure> {
        self.value(value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeFailure> {
        self.varint(u64::from(index));
        self.value(value)
    }
    fn serialize_seq(mut self, len: Option<usize>) -> Result<Self, EncodeFailure> {
        self.varint(len.ok_or_else(no_length)? as u64);
        Ok(self)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self, EncodeFailure> {
        Ok(self)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeFailure> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        mut self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeFailure> {
        self.varint(u64::from(index));
        Ok(self)
    }
    fn serialize_map(mut self, len: Option<usize>) -> Result<Self, EncodeFailure> {
        self.varint(len.ok_or_else(no_length)? as u64);
        Ok(self)
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, EncodeFailure> {
        Ok(self)
    }
    fn serialize_struct_variant(
        mut self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeFailure> {
        self.varint(u64::from(index));
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Implements a compound serializer whose parts are encoded one after the other.
macro_rules! compound {
    ($($trait:ident::$method:ident($($key:ty)?)),* $(,)?) => {$(
        impl $trait for Encoder<'_> {
            type Ok = ();
            type Error = EncodeFailure;
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $(_key: $key,)?
                value: &T,
            ) -> Result<(), EncodeFailure> {
                self.value(value)
            }
            fn end(self) -> Result<(), EncodeFailure> {
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq::serialize_element(),
    SerializeTuple::serialize_element(),
    SerializeTupleStruct::serialize_field(),
    SerializeTupleVariant::serialize_field(),
    SerializeStruct::serialize_field(&'static str),
    SerializeStructVariant::serialize_field(&'static str),
}

impl SerializeMap for Encoder<'_> {
    type Ok = ();
    type Error = EncodeFailure;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeFailure> {
        self.value(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeFailure> {
        self.value(value)
    }
    fn end(self) -> Result<(), EncodeFailure> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::encode_to;

    fn ours<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_to(value, &mut out).unwrap();
        out
    }

    fn bincodes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    /// Each value is encoded to the very bytes bincode writes.
    macro_rules! same_as_bincode {
        ($($value:expr),* $(,)?) => {$(
            let value = $value;
            assert_eq!(ours(&value), bincodes(&value), "{}", stringify!($value));
        )*};
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Point {
        x: f64,
        y: f32,
        tag: i8,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Shape {
        Empty,
        Circle(f64),
        Pair(u16, i128),
        Cloud {
            points: Vec<Point>,
            weights: Vec<f64>,
            raw: Vec<u8>,
        },
    }

    #[derive(Serialize)]
    struct Holder<'a> {
        name: String,
        bytes: Vec<u8>,
        floats: Vec<f64>,
        singles: Vec<f32>,
        flags: Vec<bool>,
        signed: Vec<i8>,
        boxed: Box<[u8]>,
        slice: &'a [u8],
        float_slice: &'a [f64],
        maybe: Option<Vec<u8>>,
        nested: Vec<Vec<u8>>,
        map: BTreeMap<Vec<u8>, Vec<f64>>,
        unit: (),
        text: &'a str,
        c: char,
    }

    #[test]
    fn integers_at_every_width_boundary() {
        for v in [
            0u64,
            1,
            250,
            251,
            252,
            255,
            256,
            65535,
            65536,
            1 << 31,
            u32::MAX as u64,
        ]
        .into_iter()
        .chain([u32::MAX as u64 + 1, u64::MAX - 1, u64::MAX])
        {
            same_as_bincode!(
                v,
                v as u32,
                v as u16,
                v as u8,
                v as i64,
                (v as i64).wrapping_neg()
            );
            same_as_bincode!(
                v as i32,
                (v as i32).wrapping_neg(),
                v as i16,
                v as i8,
                v as usize
            );
            same_as_bincode!(
                (v as i16).wrapping_neg(),
                v as u128,
                (v as u128) << 64,
                v as isize
            );
            same_as_bincode!(((v as i128) << 60).wrapping_neg());
        }
        same_as_bincode!(
            u128::MAX,
            i128::MIN,
            i128::MAX,
            i64::MIN,
            i32::MIN,
            i16::MIN
        );
    }

    #[test]
    fn every_kind_of_value() {
        same_as_bincode!(
            (),
            true,
            false,
            'a',
            '∂',
            '🦀',
            1.5f32,
            -0.0f64,
            f64::NAN.to_bits(),
            String::from("héllo"),
            "",
            Some(3u8),
            None::<u8>,
            Shape::Empty,
            Shape::Circle(2.0),
            Shape::Pair(300, -7),
            Shape::Cloud {
                points: vec![
                    Point {
                        x: 1.0,
                        y: 2.0,
                        tag: -1
                    };
                    3
                ],
                weights: vec![0.5; 300],
                raw: (0..=255).collect(),
            },
            [1u8, 2, 3],
            (1u8, vec![2u16; 260], "x"),
        );
        let bytes: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let floats: Vec<f64> = (0..70_000).map(|i| f64::from(i) * 0.25).collect();
        let holder = Holder {
            name: "n".repeat(300),
            bytes: bytes.clone(),
            floats: floats.clone(),
            singles: vec![1.25; 70_000],
            flags: vec![true, false, true],
            signed: vec![-1, 0, 1, i8::MIN],
            boxed: bytes.clone().into_boxed_slice(),
            slice: &bytes[..1000],
            float_slice: &floats[..1000],
            maybe: Some(vec![9; 251]),
            nested: vec![vec![], vec![1], bytes[..65_536].to_vec()],
            map: [(vec![1u8], vec![1.0]), (vec![], vec![])]
                .into_iter()
                .collect(),
            unit: (),
            text: "text",
            c: 'z',
        };
        same_as_bincode!(holder, bytes, floats);
    }

    #[test]
    fn a_sequence_without_a_length_is_refused() {
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        let mut out = Vec::new();
        let err = encode_to(&Unsized, &mut out).unwrap_err();
        assert!(err.0.contains("length"), "{err}");
    }
}
