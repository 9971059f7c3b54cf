//! The shortcuts of `bounded` for the large vectors users send: a `Vec<u8>` decoded
//! as the byte buffer it is encoded as (one bounded copy), and a `Vec<f64>` or
//! `Vec<f32>` allocated once at its announced length capped by the input. Their
//! buffers are advised to use huge pages (see `pages`).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, SeqAccess, Visitor};

use crate::wire::pages;

/// Decodes a `Vec<u8>` as the bytes it is encoded as (its length, then its elements,
/// one byte each), borrowed from the input and copied once, rather than element by
/// element; `T` is `Vec<u8>`, which the callers check.
pub(super) fn byte_vec<'de, T, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    let bytes = deserializer.deserialize_bytes(ByteVec)?;
    if !unty::type_equal::<T, Vec<u8>>() {
        return Err(serde::de::Error::custom(
            "a byte vector decoded as another type",
        ));
    }
    let bytes = std::mem::ManuallyDrop::new(bytes);
    // SAFETY: `T` is `Vec<u8>` (checked above; `Vec<u8>` has no lifetimes), and the
    // original is not dropped.
    Ok(unsafe { std::mem::transmute_copy::<Vec<u8>, T>(&bytes) })
}

/// Whether `T` is one of the float vectors [`float_vec`] decodes.
pub(super) fn is_float_vec<T>() -> bool {
    unty::type_equal::<T, Vec<f64>>() || unty::type_equal::<T, Vec<f32>>()
}

/// Decodes a `Vec<f64>` or `Vec<f32>` (`T`, which the callers check) into a vector
/// allocated once at the length the input announces, capped by what the input can hold
/// (each element takes its full width).
pub(super) fn float_vec<'de, T, D: Deserializer<'de>>(
    deserializer: D,
    cap: usize,
) -> Result<T, D::Error> {
    fn cast<T, U>(value: U) -> T {
        let value = std::mem::ManuallyDrop::new(value);
        // SAFETY: called only where `T` is `U` (checked just before; neither has
        // lifetimes), and the original is not dropped.
        unsafe { std::mem::transmute_copy::<U, T>(&value) }
    }
    if unty::type_equal::<T, Vec<f64>>() {
        deserializer
            .deserialize_seq(FloatVec::<f64>::new(cap))
            .map(cast::<T, Vec<f64>>)
    } else if unty::type_equal::<T, Vec<f32>>() {
        deserializer
            .deserialize_seq(FloatVec::<f32>::new(cap))
            .map(cast::<T, Vec<f32>>)
    } else {
        Err(serde::de::Error::custom(
            "a float vector decoded as another type",
        ))
    }
}

/// Builds a vector of floats from a sequence, preallocated as `float_vec` says.
struct FloatVec<F> {
    cap: usize,
    marker: PhantomData<fn() -> F>,
}

impl<F> FloatVec<F> {
    fn new(cap: usize) -> Self {
        FloatVec {
            cap,
            marker: PhantomData,
        }
    }
}

impl<'de, F: Copy + serde::Deserialize<'de>> Visitor<'de> for FloatVec<F> {
    type Value = Vec<F>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of floats")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<F>, A::Error> {
        let most = self.cap / std::mem::size_of::<F>();
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(most));
        pages::prefer_huge_pages(&mut out);
        while let Some(x) = seq.next_element::<F>()? {
            out.push(x);
        }
        Ok(out)
    }
}

/// Receives a `Vec<u8>`'s bytes borrowed from the input (their length already checked
/// against the bytes present) and copies them.
struct ByteVec;

impl<'de> Visitor<'de> for ByteVec {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte vector")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        let mut bytes = pages::with_capacity(v.len());
        bytes.extend_from_slice(v);
        Ok(bytes)
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use crate::wire::bounded::tests::{claim, largest_allocation};
    use crate::wire::codec::{decode_record, encode_record};
    use crate::wire::error::CodecErrorKind;

    #[test]
    fn byte_vectors_decode_in_one_piece_and_stay_bounded() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Holder {
            a: Vec<u8>,
            b: Vec<Vec<u8>>,
            c: BTreeMap<Vec<u8>, Vec<u8>>,
            d: (u8, Vec<u8>),
        }
        let value = Holder {
            a: (0..=255).cycle().take(70_000).collect(),
            b: vec![vec![], vec![7; 251]],
            c: [(vec![1], vec![2; 300])].into_iter().collect(),
            d: (3, vec![4; 65_536]),
        };
        let bytes = encode_record(&value).unwrap();
        assert_eq!(decode_record::<Holder>(&bytes).unwrap(), value);
        let top: Vec<u8> = vec![5; 1000];
        let bytes = encode_record(&top).unwrap();
        assert_eq!(decode_record::<Vec<u8>>(&bytes).unwrap(), top);
        assert_eq!(
            decode_record::<Vec<u8>>(&bytes[..500]).unwrap_err().kind(),
            CodecErrorKind::Truncated
        );
        // A forged length, at the top and as a field: nothing of its size allocated.
        let forged = claim((1 << 30) - 64, b"abcd");
        let (largest, result) = largest_allocation(|| decode_record::<Vec<u8>>(&forged));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest < 4096, "allocated {largest} bytes");
        let mut field = vec![0u8];
        field.extend(&forged);
        let (largest, result) = largest_allocation(|| decode_record::<(u8, Vec<u8>)>(&field));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest < 4096, "allocated {largest} bytes");
    }

    #[test]
    fn float_vectors_decode_preallocated_and_stay_bounded() {
        let value = (
            vec![1.5f64, -0.0, f64::MAX, 1e-300],
            vec![vec![2.5f32; 70_000], vec![]],
            (0..100_000)
                .map(|i| f64::from(i) / 7.0)
                .collect::<Vec<f64>>(),
        );
        let bytes = encode_record(&value).unwrap();
        assert_eq!(
            decode_record::<(Vec<f64>, Vec<Vec<f32>>, Vec<f64>)>(&bytes).unwrap(),
            value
        );
        let top = encode_record(&value.2).unwrap();
        assert_eq!(decode_record::<Vec<f64>>(&top).unwrap(), value.2);
        assert_eq!(
            decode_record::<Vec<f64>>(&top[..top.len() - 3])
                .unwrap_err()
                .kind(),
            CodecErrorKind::Truncated
        );
        // A forged length (1 Ti elements): nothing of its size preallocated.
        let forged = claim(1 << 40, &[0; 16]);
        let (largest, result) = largest_allocation(|| decode_record::<Vec<f64>>(&forged));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest < 4096, "allocated {largest} bytes");
        let (largest, result) =
            largest_allocation(|| decode_record::<(u8, Vec<f32>)>(&[&[0u8][..], &forged].concat()));
        assert_eq!(result.unwrap_err().kind(), CodecErrorKind::Truncated);
        assert!(largest < 4096, "allocated {largest} bytes");
    }
}
