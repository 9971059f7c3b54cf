//! `Cells`: elements of plain data at an offset of a shared region, copied in and out
//! with atomic loads and stores (the policy in [`crate::os::shm`]'s docs), and where
//! the lock of a [`Value`](crate::Value) or an [`Array`](crate::Array) lives.

use std::marker::PhantomData;
use std::mem::{MaybeUninit, align_of, size_of};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::plain::{AtomicInt, Plain};
use crate::os::shm::{SharedRegion, copy_from_shared, copy_to_shared};
use crate::sync::error::{IndexError, SyncError};
use crate::sync::lock::{Lockable, sealed::Place};

/// The alignment of the elements' offset: the type's, and at least 16 (the alignment
/// of every atomic integer view).
fn data_align<T>() -> usize {
    align_of::<T>().max(16)
}

/// Where elements start after a lock state of `header` bytes (0: no lock).
fn data_offset<T>(header: usize) -> usize {
    header.next_multiple_of(data_align::<T>())
}

/// `len` elements of `T` at `offset` in a region.
pub(super) struct Cells<T> {
    pub(super) region: Arc<SharedRegion>,
    offset: usize,
    pub(super) len: usize,
    elements: PhantomData<fn() -> T>,
}

impl<T> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Cells {
            region: self.region.clone(),
            offset: self.offset,
            len: self.len,
            elements: PhantomData,
        }
    }
}

impl<T: Plain> Cells<T> {
    /// A zeroed region with `header` bytes for a lock, then `len` elements.
    pub(super) fn create(name: &str, header: usize, len: usize) -> crate::error::Result<Cells<T>> {
        if align_of::<T>() > 4096 {
            return Err(SyncError::invalid_argument(format!(
                "`{}` is aligned to {} bytes, more than a page",
                std::any::type_name::<T>(),
                align_of::<T>()
            ))
            .into());
        }
        let offset = data_offset::<T>(header);
        let total = len
            .checked_mul(size_of::<T>())
            .and_then(|bytes| bytes.checked_add(offset))
            .filter(|total| *total <= isize::MAX as usize)
            .ok_or_else(|| {
                SyncError::invalid_argument(format!(
                    "{len} elements of `{}` do not fit in memory",
                    std::any::type_name::<T>()
                ))
            })?;
        let region = SharedRegion::new(name, total.max(header).max(1))?;
        Ok(Cells {
            region: Arc::new(region),
            offset,
            len,
            elements: PhantomData,
        })
    }

    /// Cells described by a peer: checked against the region.
    pub(super) fn at(region: Arc<SharedRegion>, offset: u64, len: u64) -> Result<Cells<T>, String> {
        let offset = usize::try_from(offset).map_err(|e| e.to_string())?;
        let len = usize::try_from(len).map_err(|e| e.to_string())?;
        let align = data_align::<T>();
        let end = len
            .checked_mul(size_of::<T>())
            .and_then(|bytes| bytes.checked_add(offset));
        if offset % align != 0 || end.is_none_or(|end| end > region.len()) {
            return Err(format!(
                "no room for {len} `{}` at offset {offset} of a shared region of {} bytes",
                std::any::type_name::<T>(),
                region.len()
            ));
        }
        Ok(Cells {
            region,
            offset,
            len,
            elements: PhantomData,
        })
    }

    /// Element `i`, which must be below `len`.
    #[inline]
    pub(super) fn ptr(&self, i: usize) -> *mut T {
        debug_assert!(i < self.len || (i == 0 && self.len == 0));
        // SAFETY: `create` and `at` checked that `len` elements fit from `offset`, so
        // the address stays within the mapping for every `i < len`.
        unsafe { self.region.as_ptr().add(self.offset).cast::<T>().add(i) }
    }

    #[inline]
    pub(super) fn read(&self, i: usize) -> T {
        let mut raw = MaybeUninit::<T>::zeroed();
        // SAFETY: the zeroed `raw` is `size_of::<T>()` initialized bytes, private to
        // this call.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(raw.as_mut_ptr().cast::<u8>(), size_of::<T>())
        };
        // SAFETY: element `i` is in bounds of the mapping; other processes write it
        // too, so it is copied with atomic loads. `normalize` then makes the copied bits
        // a valid `T` (the `Plain` contract).
        unsafe {
            copy_from_shared(self.ptr(i).cast::<u8>(), bytes);
            T::normalize(raw.as_mut_ptr());
            raw.assume_init()
        }
    }

    #[inline]
    pub(super) fn write(&self, i: usize, value: T) {
        // SAFETY: a `Plain` value has no padding (the `Plain` contract), so its
        // `size_of::<T>()` bytes are initialized.
        let bytes =
            unsafe { std::slice::from_raw_parts((&raw const value).cast::<u8>(), size_of::<T>()) };
        // SAFETY: element `i` is in bounds of the mapping; other processes read it
        // too, so it is written with atomic stores. Shared memory never holds
        // references.
        unsafe { copy_to_shared(bytes, self.ptr(i).cast::<u8>()) }
    }

    pub(super) fn check(&self, i: usize) -> Result<(), IndexError> {
        if i < self.len {
            Ok(())
        } else {
            Err(IndexError::new(i, self.len))
        }
    }

    pub(super) fn range(
        &self,
        range: impl RangeBounds<usize>,
    ) -> Result<std::ops::Range<usize>, IndexError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len,
        };
        if end > self.len {
            return Err(IndexError::new(end.saturating_sub(1), self.len));
        }
        if start > end {
            return Err(IndexError::new(start, self.len));
        }
        Ok(start..end)
    }

    pub(super) fn atomics(&self) -> &[T::Atomic]
    where
        T: AtomicInt,
    {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `T::Atomic` has the size of `T` (checked at compile time) and the
        // alignment of an integer of that size, which the offset satisfies (a multiple
        // of 16); atomics accept any bits and concurrent access by other processes.
        unsafe { std::slice::from_raw_parts(self.ptr(0).cast::<T::Atomic>(), self.len) }
    }
}

impl<T: Plain> Serialize for Cells<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&*self.region, self.offset as u64, self.len as u64).serialize(serializer)
    }
}

impl<'de, T: Plain> Deserialize<'de> for Cells<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (region, offset, len): (SharedRegion, u64, u64) =
            Deserialize::deserialize(deserializer)?;
        Cells::at(Arc::new(region), offset, len).map_err(serde::de::Error::custom)
    }
}

/// Where a [`Value`](crate::Value)'s or [`Array`](crate::Array)'s lock lives: in the
/// object's own region, or elsewhere (a lock given by the user, maybe shared by several
/// objects).
#[derive(Serialize, Deserialize)]
pub(super) enum LockPlace<L> {
    Inline(u64),
    Separate(L),
}

pub(super) fn place_of<L: Lockable>(lock: &L, region: &Arc<SharedRegion>) -> LockPlace<L> {
    let place = lock.place();
    if Arc::ptr_eq(&place.region, region) {
        LockPlace::Inline(place.offset as u64)
    } else {
        LockPlace::Separate(lock.clone())
    }
}

pub(super) fn lock_from<L: Lockable>(
    place: LockPlace<L>,
    region: &Arc<SharedRegion>,
) -> Result<L, String> {
    match place {
        LockPlace::Separate(lock) => Ok(lock),
        LockPlace::Inline(offset) => {
            let offset = usize::try_from(offset).map_err(|e| e.to_string())?;
            L::at(Place {
                region: region.clone(),
                offset,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sync::shared::{Array, RawArray, Value};

    #[test]
    fn handles_cross_as_their_region() {
        let v = Value::new(5u16).unwrap();
        let encoded = crate::wire::codec::encode(&v).unwrap();
        // The lock lives in the value's region: one descriptor.
        assert_eq!(encoded.fds.len(), 1);
        let w: Value<u16> = crate::wire::codec::decode(&encoded.bytes, encoded.fds).unwrap();
        w.set(6);
        assert_eq!(v.get(), 6);
        let held = w.lock().unwrap();
        assert!(v.get_lock().is_locked());
        drop(held);

        let shared_lock = crate::sync::Lock::new().unwrap();
        let a = Array::with_lock(&[1u8, 2], shared_lock.clone()).unwrap();
        let encoded = crate::wire::codec::encode(&a).unwrap();
        assert_eq!(encoded.fds.len(), 2);
        let b: Array<u8, crate::sync::Lock> =
            crate::wire::codec::decode(&encoded.bytes, encoded.fds).unwrap();
        let _g = b.lock().unwrap();
        assert!(shared_lock.is_locked());
    }

    #[test]
    fn a_forged_length_is_refused() {
        let a = RawArray::<u64>::zeroed(4).unwrap();
        let region = crate::wire::codec::encode(&*a.cells.region).unwrap();
        let (fd_index, len): (u32, u64) = crate::wire::codec::decode_record(&region.bytes).unwrap();
        // The same region, announced with far more elements than it holds.
        let forged =
            crate::wire::codec::encode_record(&((fd_index, len), 0u64, 1u64 << 40)).unwrap();
        let err = crate::wire::codec::decode::<RawArray<u64>>(&forged, region.fds).unwrap_err();
        assert!(err.to_string().contains("no room"), "{err}");
    }
}
