//! [`RawArray`], [`Array`] and [`ArrayGuard`]: an array of plain data in shared
//! memory.

use std::fmt;
use std::ops::{Deref, RangeBounds};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cells::{Cells, LockPlace, lock_from, place_of};
use super::plain::{AtomicInt, Plain};
use crate::sync::error::{IndexError, LockResult, PoisonError, SyncError};
use crate::sync::lock::{Lockable, RLock, sealed::LockOps, sealed::Place};

/// An array of plain data in shared memory, without a lock: Python's `RawArray`.
///
/// Every access is checked against the length ("invalid index" otherwise). As for
/// [`RawValue`](crate::RawValue), each element is read or written with one volatile
/// access, and nothing orders the accesses of different processes: use an [`Array`]
/// (which has a lock), or the atomics of integer arrays.
pub struct RawArray<T: Plain> {
    pub(super) cells: Cells<T>,
}

impl<T: Plain> RawArray<T> {
    /// A new shared array holding a copy of `values`.
    pub fn from_slice(values: &[T]) -> crate::error::Result<RawArray<T>> {
        let array = RawArray::zeroed(values.len())?;
        for (i, v) in values.iter().enumerate() {
            array.cells.write(i, *v);
        }
        Ok(array)
    }

    /// A new shared array of `len` elements whose bits are all zero (0, 0.0, `false`).
    pub fn zeroed(len: usize) -> crate::error::Result<RawArray<T>> {
        Ok(RawArray {
            cells: Cells::create("raw-array", 0, len)?,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.cells.len == 0
    }

    /// Element `index`.
    pub fn get(&self, index: usize) -> Result<T, IndexError> {
        self.cells.check(index)?;
        Ok(self.cells.read(index))
    }

    /// Sets element `index`.
    pub fn set(&self, index: usize, value: T) -> Result<(), IndexError> {
        self.cells.check(index)?;
        self.cells.write(index, value);
        Ok(())
    }

    /// A copy of the elements in `range` (`arr[a:b]` in Python).
    pub fn read(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>, IndexError> {
        let range = self.cells.range(range)?;
        Ok(range.map(|i| self.cells.read(i)).collect())
    }

    /// Writes `values` from index `start` on (`arr[start:start + len] = values`); an
    /// error, writing nothing, if they do not all fit.
    pub fn write(&self, start: usize, values: &[T]) -> Result<(), IndexError> {
        let end = start.checked_add(values.len());
        let range = self
            .cells
            .range(start..end.unwrap_or(usize::MAX))
            .map_err(|_| {
                IndexError::new(
                    end.map_or(usize::MAX, |e| e.saturating_sub(1)),
                    self.cells.len,
                )
            })?;
        for (i, v) in range.zip(values) {
            self.cells.write(i, *v);
        }
        Ok(())
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.cells.len).map(|i| self.cells.read(i)).collect()
    }

    /// Element `index` as a standard atomic, for lock-free access from any process.
    pub fn atomic(&self, index: usize) -> Result<&T::Atomic, IndexError>
    where
        T: AtomicInt,
    {
        self.cells.check(index)?;
        Ok(&self.cells.atomics()[index])
    }

    /// Every element as a standard atomic.
    pub fn atomics(&self) -> &[T::Atomic]
    where
        T: AtomicInt,
    {
        self.cells.atomics()
    }
}

impl<T: Plain> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Plain> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T: Plain> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.cells.serialize(serializer)
    }
}

impl<'de, T: Plain> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(RawArray {
            cells: Cells::deserialize(deserializer)?,
        })
    }
}

/// An array of plain data in shared memory, with a lock: Python's
/// `multiprocessing.Array`.
///
/// Each method takes the lock around its access (a whole [`read`](Array::read) or
/// [`write`](Array::write) under one acquisition); [`lock`](Array::lock) holds it
/// across several. Indices are checked: out of range is an [`IndexError`] ("invalid
/// index"), as in Python.
///
/// ```
/// use multiproc::Array;
///
/// #[multiproc::worker]
/// fn prefix_sums(a: Array<i32>) {
///     let a = a.lock().unwrap();
///     for i in 1..a.len() {
///         a.set(i, a.get(i).unwrap() + a.get(i - 1).unwrap()).unwrap();
///     }
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let a = Array::from_slice(&[1, 2, 3, 4])?;
///     prefix_sums::spawn(a.clone())?.join()?;
///     assert_eq!(a.to_vec(), [1, 3, 6, 10]);
///     assert_eq!(a.read(1..3)?, [3, 6]);
///     assert!(a.get(4).is_err());
///     let zeros = Array::<f64>::zeroed(3)?;
///     assert_eq!(zeros.to_vec(), [0.0; 3]);
///     Ok(())
/// }
/// ```
///
/// # Caveats
///
/// As for [`Value`](crate::Value): the locking methods ignore poisoning, and with a
/// non-re-entrant [`Lock`](crate::Lock) they must not be called while this process
/// holds it.
pub struct Array<T: Plain, L: Lockable = RLock> {
    raw: RawArray<T>,
    lock: L,
}

impl<T: Plain> Array<T> {
    /// A new shared array holding a copy of `values`, with its own [`RLock`].
    pub fn from_slice(values: &[T]) -> crate::error::Result<Array<T>> {
        let array = Array::zeroed(values.len())?;
        for (i, v) in values.iter().enumerate() {
            array.raw.cells.write(i, *v);
        }
        Ok(array)
    }

    /// A new shared array of `len` zeroed elements, with its own [`RLock`].
    pub fn zeroed(len: usize) -> crate::error::Result<Array<T>> {
        let cells = Cells::create("array", RLock::STATE_LEN, len)?;
        let lock = RLock::at(Place {
            region: cells.region.clone(),
            offset: 0,
        })
        .map_err(SyncError::invalid_argument)?;
        Ok(Array {
            raw: RawArray { cells },
            lock,
        })
    }
}

impl<T: Plain, L: Lockable> Array<T, L> {
    /// A new shared array holding a copy of `values`, guarded by `lock`.
    pub fn with_lock(values: &[T], lock: L) -> crate::error::Result<Array<T, L>> {
        Ok(Array {
            raw: RawArray::from_slice(values)?,
            lock,
        })
    }

    fn locked<R>(&self, f: impl FnOnce(&RawArray<T>) -> R) -> R {
        self.lock.acquire_quiet();
        let out = f(&self.raw);
        self.lock.release_quiet();
        out
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Element `index`, read under the lock.
    pub fn get(&self, index: usize) -> Result<T, IndexError> {
        self.raw.cells.check(index)?;
        Ok(self.locked(|a| a.cells.read(index)))
    }

    /// Sets element `index`, under the lock.
    pub fn set(&self, index: usize, value: T) -> Result<(), IndexError> {
        self.raw.cells.check(index)?;
        self.locked(|a| a.cells.write(index, value));
        Ok(())
    }

    /// A copy of the elements in `range`, read under the lock.
    pub fn read(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>, IndexError> {
        self.locked(|a| a.read(range))
    }

    /// Writes `values` from index `start` on, under the lock; an error, writing
    /// nothing, if they do not all fit.
    pub fn write(&self, start: usize, values: &[T]) -> Result<(), IndexError> {
        self.locked(|a| a.write(start, values))
    }

    /// A copy of every element, read under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        self.locked(|a| a.to_vec())
    }

    /// Acquires the lock and returns a guard that reads and writes the array (as a
    /// [`RawArray`]) without taking the lock again, and releases it when dropped.
    ///
    /// `Err` means acquired, but poisoned; the guard is inside.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T, L>> {
        let poisoned = self.lock.acquire_quiet();
        let guard = ArrayGuard { array: self };
        if poisoned {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// The lock.
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// The array without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }
}

impl<T: Plain, L: Lockable> Clone for Array<T, L> {
    fn clone(&self) -> Self {
        Array {
            raw: self.raw.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Plain, L: Lockable> fmt::Debug for Array<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len())
            .field("lock", &std::any::type_name::<L>())
            .finish_non_exhaustive()
    }
}

impl<T: Plain, L: Lockable> Serialize for Array<T, L> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.raw, place_of(&self.lock, &self.raw.cells.region)).serialize(serializer)
    }
}

impl<'de, T: Plain, L: Lockable> Deserialize<'de> for Array<T, L> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (raw, place) = <(RawArray<T>, LockPlace<L>)>::deserialize(deserializer)?;
        let lock = lock_from(place, &raw.cells.region).map_err(serde::de::Error::custom)?;
        Ok(Array { raw, lock })
    }
}

/// Holds an [`Array`]'s lock; reads and writes it (as a [`RawArray`]) without taking
/// the lock again, and releases the lock when dropped (poisoning it if dropped while
/// its thread panics).
pub struct ArrayGuard<'a, T: Plain, L: Lockable = RLock> {
    array: &'a Array<T, L>,
}

impl<T: Plain, L: Lockable> Deref for ArrayGuard<'_, T, L> {
    type Target = RawArray<T>;

    fn deref(&self) -> &RawArray<T> {
        &self.array.raw
    }
}

impl<T: Plain, L: Lockable> Drop for ArrayGuard<'_, T, L> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.array.lock.poison();
        }
        self.array.lock.release_quiet();
    }
}

impl<T: Plain, L: Lockable> fmt::Debug for ArrayGuard<'_, T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn arrays_check_their_bounds() {
        let a = Array::from_slice(&[1i32, 2, 3]).unwrap();
        assert_eq!(a.len(), 3);
        let err = a.get(3).unwrap_err();
        assert!(err.to_string().starts_with("invalid index"));
        assert!(a.set(7, 0).is_err());
        assert_eq!(a.read(..).unwrap(), [1, 2, 3]);
        assert_eq!(a.read(1..=2).unwrap(), [2, 3]);
        assert!(a.read(2..4).is_err());
        a.write(1, &[20, 30]).unwrap();
        assert!(a.write(2, &[1, 2]).is_err());
        assert!(a.write(usize::MAX, &[1]).is_err());
        assert_eq!(a.to_vec(), [1, 20, 30]);
        assert_eq!(Array::<u8>::zeroed(0).unwrap().to_vec(), Vec::<u8>::new());
        a.get_obj()
            .atomic(0)
            .unwrap()
            .fetch_add(5, Ordering::Relaxed);
        assert_eq!(a.get(0).unwrap(), 6);
    }
}
