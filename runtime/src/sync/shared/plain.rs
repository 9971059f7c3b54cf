//! [`Plain`], the data shared memory may hold, and [`AtomicInt`], the integers that
//! also have an atomic view.

use std::fmt;
use std::mem::size_of;

/// Plain data, which can live in shared memory: integers, floats, `bool`, `char`,
/// arrays of plain data, and `#[repr(C)]` structs of plain data without padding.
///
/// A plain type is `Copy`, owns nothing (no pointer, no reference: an address means
/// nothing in another process), and is valid for every bit pattern, *after*
/// normalization: a `bool` read from shared memory is `true` whenever its byte is not
/// 0, a `char` that is not a valid scalar value reads as U+FFFD. So whatever another
/// process writes, reading it here is never undefined behaviour.
///
/// For your own structs, derive it: `#[derive(multiproc::Plain)]` checks at compile
/// time that the struct is `#[repr(C)]` (or `#[repr(transparent)]`), that every field
/// is plain, and that there is no padding between or after the fields (padding would
/// copy stale bytes of this process into the other's view), and writes the
/// normalization of its `bool` and `char` fields.
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq, multiproc::Plain)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let p = multiproc::Value::new(Point { x: 1.0, y: 2.0 })?;
/// p.set(Point { x: 3.0, ..p.get() });
/// assert_eq!(p.get(), Point { x: 3.0, y: 2.0 });
/// # Ok(())
/// # }
/// ```
///
/// A struct with padding is refused:
///
/// ```compile_fail
/// #[derive(Clone, Copy, multiproc::Plain)]
/// #[repr(C)]
/// struct Padded {
///     small: u8,
///     large: u64, // 7 bytes of padding before it
/// }
/// ```
///
/// # Safety
///
/// Implement it by hand only for a `Copy` type that is valid for *every* bit pattern
/// (after [`normalize`](Plain::normalize), if you override it), has no padding (its
/// bytes are copied to shared memory one by one, and a padding byte is uninitialized)
/// and holds no pointer or reference. Set the hidden `VALID_FOR_ANY_BITS` to `true`
/// only if every bit pattern is a valid value *without* normalization (it lets
/// [`SharedMemory`](crate::SharedMemory) hand out `&[Self]` over memory that other
/// processes write); it is `false` unless said otherwise.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not plain data, which shared memory holds",
    note = "plain data: integers, floats, `bool`, `char`, arrays of them, and `#[repr(C)]` structs of them that derive `multiproc::Plain`"
)]
pub unsafe trait Plain: Copy + Send + Sync + 'static {
    /// Turns the bits at `value`, which another process may have written, into a valid
    /// `Self`. Most types need nothing; `bool` and `char` fix invalid patterns.
    ///
    /// # Safety
    ///
    /// `value` points to `size_of::<Self>()` initialized bytes, readable and writable,
    /// not necessarily aligned.
    #[doc(hidden)]
    unsafe fn normalize(value: *mut Self) {
        let _ = value;
    }

    /// Whether every bit pattern is a valid `Self` as it stands, with no
    /// normalization: integers and floats, arrays and `derive(Plain)` structs of
    /// them; not `bool` or `char`. Typed views of
    /// [`SharedMemory`](crate::SharedMemory) require it.
    #[doc(hidden)]
    const VALID_FOR_ANY_BITS: bool = false;
}

macro_rules! plain {
    ($($ty:ty),*) => {$(
        // SAFETY: valid for every bit pattern, no pointers.
        unsafe impl Plain for $ty {
            const VALID_FOR_ANY_BITS: bool = true;
        }
    )*};
}

plain!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

// SAFETY: `normalize` turns every byte but 0 and 1 into 1.
unsafe impl Plain for bool {
    unsafe fn normalize(value: *mut Self) {
        let byte = value.cast::<u8>();
        // SAFETY: the caller gives one readable, writable byte.
        unsafe {
            if byte.read() > 1 {
                byte.write(1);
            }
        }
    }
}

// SAFETY: `normalize` turns every invalid scalar value into U+FFFD.
unsafe impl Plain for char {
    unsafe fn normalize(value: *mut Self) {
        let word = value.cast::<u32>();
        // SAFETY: the caller gives four readable, writable bytes, maybe unaligned.
        unsafe {
            if char::from_u32(word.read_unaligned()).is_none() {
                word.write_unaligned(u32::from(char::REPLACEMENT_CHARACTER));
            }
        }
    }
}

// SAFETY: an array of plain elements, normalized one by one, has no padding.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {
    const VALID_FOR_ANY_BITS: bool = T::VALID_FOR_ANY_BITS;

    unsafe fn normalize(value: *mut Self) {
        let first = value.cast::<T>();
        for i in 0..N {
            // SAFETY: element `i` is within the array the caller gives.
            unsafe { T::normalize(first.add(i)) };
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A plain integer with a standard atomic twin of the same size and alignment, for
/// lock-free access to a [`Value`](crate::Value) or an [`Array`](crate::Array)
/// element: `u8` to `u64`, `usize`, and the signed ones. Sealed.
pub trait AtomicInt: Plain + sealed::Sealed {
    /// The atomic type (`AtomicU64` for `u64`, ...).
    type Atomic: Send + Sync + fmt::Debug;
}

macro_rules! atomic_int {
    ($($ty:ty => $atomic:ty),*) => {$(
        impl sealed::Sealed for $ty {}
        impl AtomicInt for $ty {
            type Atomic = $atomic;
        }
        const _: () = assert!(size_of::<$ty>() == size_of::<$atomic>());
    )*};
}

atomic_int!(
    u8 => std::sync::atomic::AtomicU8,
    u16 => std::sync::atomic::AtomicU16,
    u32 => std::sync::atomic::AtomicU32,
    u64 => std::sync::atomic::AtomicU64,
    usize => std::sync::atomic::AtomicUsize,
    i8 => std::sync::atomic::AtomicI8,
    i16 => std::sync::atomic::AtomicI16,
    i32 => std::sync::atomic::AtomicI32,
    i64 => std::sync::atomic::AtomicI64,
    isize => std::sync::atomic::AtomicIsize
);

#[cfg(test)]
mod tests {
    use crate::sync::shared::{RawArray, RawValue};

    #[test]
    fn garbage_is_normalized() {
        let b = RawArray::<bool>::zeroed(2).unwrap();
        // SAFETY: element 0 is in bounds; a byte may hold any value.
        unsafe { b.cells.ptr(0).cast::<u8>().write_volatile(7) };
        assert_eq!(b.to_vec(), [true, false]);
        let c = RawValue::new('a').unwrap();
        // SAFETY: as above, four bytes.
        unsafe { c.cells.ptr(0).cast::<u32>().write_volatile(0xD800) };
        assert_eq!(c.get(), char::REPLACEMENT_CHARACTER);
    }
}
