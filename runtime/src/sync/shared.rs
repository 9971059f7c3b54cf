//! [`Value`] and [`Array`] (and their lock-less [`RawValue`] and [`RawArray`]): plain
//! data in shared memory.
//!
//! # Layout
//!
//! One region: the lock's state first when the object has its own lock (an [`RLock`]
//! by default), then the elements from offset 16 (or the type's alignment, if larger:
//! in the lock's cache line, which a locked update then moves between CPUs alone), or
//! from offset 0 without a lock. A handle holds the region, the offset and the
//! length; a handle that arrives from another process is checked against the region's
//! real size before use.
//!
//! Elements are read and written with volatile accesses: another process may change
//! them at any time, so the compiler must neither cache nor invent accesses. A read
//! copies the bits out first and then makes them a valid value ([`Plain`]), so that
//! whatever another process wrote never becomes an invalid `bool` or `char` here.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{MaybeUninit, align_of, size_of};
use std::ops::{Bound, Deref, RangeBounds};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{IndexError, LockResult, PoisonError, SyncError};
use super::lock::{Lockable, RLock, sealed::LockOps, sealed::Place};
use crate::os::shm::SharedRegion;

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
/// (after [`normalize`](Plain::normalize), if you override it) and holds no pointer or
/// reference.
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
}

macro_rules! plain {
    ($($ty:ty),*) => {$(
        // SAFETY: valid for every bit pattern, no pointers.
        unsafe impl Plain for $ty {}
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
/// lock-free access to a [`Value`] or an [`Array`] element: `u8` to `u64`, `usize`,
/// and the signed ones. Sealed.
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
struct Cells<T> {
    region: Arc<SharedRegion>,
    offset: usize,
    len: usize,
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
    fn create(name: &str, header: usize, len: usize) -> crate::error::Result<Cells<T>> {
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
    fn at(region: Arc<SharedRegion>, offset: u64, len: u64) -> Result<Cells<T>, String> {
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
    fn ptr(&self, i: usize) -> *mut T {
        debug_assert!(i < self.len || (i == 0 && self.len == 0));
        // SAFETY: `create` and `at` checked that `len` elements fit from `offset`, so
        // the address stays within the mapping for every `i < len`.
        unsafe { self.region.as_ptr().add(self.offset).cast::<T>().add(i) }
    }

    #[inline]
    fn read(&self, i: usize) -> T {
        // SAFETY: element `i` is in bounds and aligned (the offset is aligned to
        // `align_of::<T>()` or more); a `MaybeUninit<T>` accepts any bytes, and the
        // read is volatile because other processes write the memory too. `normalize`
        // makes the copied bits a valid `T` (the `Plain` contract).
        unsafe {
            let mut raw = self.ptr(i).cast::<MaybeUninit<T>>().read_volatile();
            T::normalize(raw.as_mut_ptr());
            raw.assume_init()
        }
    }

    #[inline]
    fn write(&self, i: usize, value: T) {
        // SAFETY: element `i` is in bounds and aligned; the write is volatile because
        // other processes read the memory too. Shared memory never holds references.
        unsafe { self.ptr(i).write_volatile(value) }
    }

    fn check(&self, i: usize) -> Result<(), IndexError> {
        if i < self.len {
            Ok(())
        } else {
            Err(IndexError::new(i, self.len))
        }
    }

    fn range(&self, range: impl RangeBounds<usize>) -> Result<std::ops::Range<usize>, IndexError> {
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

    fn atomics(&self) -> &[T::Atomic]
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

/// Where a [`Value`]'s or [`Array`]'s lock lives: in the object's own region, or
/// elsewhere (a lock given by the user, maybe shared by several objects).
#[derive(Serialize, Deserialize)]
enum LockPlace<L> {
    Inline(u64),
    Separate(L),
}

fn place_of<L: Lockable>(lock: &L, region: &Arc<SharedRegion>) -> LockPlace<L> {
    let place = lock.place();
    if Arc::ptr_eq(&place.region, region) {
        LockPlace::Inline(place.offset as u64)
    } else {
        LockPlace::Separate(lock.clone())
    }
}

fn lock_from<L: Lockable>(place: LockPlace<L>, region: &Arc<SharedRegion>) -> Result<L, String> {
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

/// A plain value in shared memory, without a lock: Python's `RawValue`.
///
/// [`get`](RawValue::get) and [`set`](RawValue::set) are single volatile accesses: a
/// `u64` is read or written whole, but a struct written by one process while another
/// reads it may be seen half old, half new. Use a [`Value`] (which has a lock) for
/// that, or [`atomic`](RawValue::atomic) for integers.
pub struct RawValue<T: Plain> {
    cells: Cells<T>,
}

impl<T: Plain> RawValue<T> {
    /// A new shared value.
    pub fn new(value: T) -> crate::error::Result<RawValue<T>> {
        let cells = Cells::create("raw-value", 0, 1)?;
        cells.write(0, value);
        Ok(RawValue { cells })
    }

    /// The value.
    pub fn get(&self) -> T {
        self.cells.read(0)
    }

    /// Sets the value.
    pub fn set(&self, value: T) {
        self.cells.write(0, value)
    }

    /// The value as a standard atomic, for lock-free access from any process:
    /// `v.atomic().fetch_add(1, Ordering::Relaxed)`.
    pub fn atomic(&self) -> &T::Atomic
    where
        T: AtomicInt,
    {
        &self.cells.atomics()[0]
    }
}

impl<T: Plain> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Plain> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: Plain> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.cells.serialize(serializer)
    }
}

impl<'de, T: Plain> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let cells = Cells::<T>::deserialize(deserializer)?;
        if cells.len != 1 {
            return Err(serde::de::Error::custom(format!(
                "a shared value of {} elements",
                cells.len
            )));
        }
        Ok(RawValue { cells })
    }
}

/// A plain value in shared memory, with a lock: Python's `multiprocessing.Value`.
///
/// [`get`](Value::get) and [`set`](Value::set) take the lock around the access, as
/// Python's `value` attribute does; for a read-modify-write, hold the lock across it
/// with [`lock`](Value::lock) (or use [`update`](Value::update)). Integers can also be
/// updated without the lock, through [`atomic`](Value::atomic).
///
/// ```
/// use std::sync::atomic::Ordering;
/// use multiproc::Value;
///
/// #[multiproc::worker]
/// fn add(counter: Value<u64>, hits: Value<u64>) {
///     for _ in 0..100 {
///         let guard = counter.lock().unwrap(); // the read and the write, locked
///         guard.set(guard.get() + 1);
///         drop(guard);
///         hits.atomic().fetch_add(1, Ordering::Relaxed); // lock-free
///     }
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let counter = Value::new(0u64)?;
///     let hits = Value::new(0u64)?;
///     let workers: Vec<_> = (0..4)
///         .map(|_| add::spawn(counter.clone(), hits.clone()))
///         .collect::<Result<_, _>>()?;
///     for w in workers {
///         w.join()?;
///     }
///     assert_eq!(counter.get(), 400);
///     assert_eq!(hits.get(), 400);
///     Ok(())
/// }
/// ```
///
/// The lock is an [`RLock`] in the value's own region (one descriptor for both) unless
/// another is given with [`with_lock`](Value::with_lock); [`RawValue`] has none.
///
/// # Caveats
///
/// - `get` and `set` ignore the lock's poisoning (a single access cannot see a half
///   update of its own); [`lock`](Value::lock) reports it.
/// - With a [`Lock`](crate::Lock) (not re-entrant), calling `get` or `set` while this
///   process holds the lock waits forever: use the guard's own `get` and `set`.
/// - Lock-free [`atomic`](Value::atomic) access does not take the lock, so it races
///   with a locked read-modify-write: use one or the other for a given value.
pub struct Value<T: Plain, L: Lockable = RLock> {
    raw: RawValue<T>,
    lock: L,
}

impl<T: Plain> Value<T> {
    /// A new shared value with its own [`RLock`].
    pub fn new(value: T) -> crate::error::Result<Value<T>> {
        let cells = Cells::create("value", RLock::STATE_LEN, 1)?;
        cells.write(0, value);
        let lock = RLock::at(Place {
            region: cells.region.clone(),
            offset: 0,
        })
        .map_err(SyncError::invalid_argument)?;
        Ok(Value {
            raw: RawValue { cells },
            lock,
        })
    }
}

impl<T: Plain, L: Lockable> Value<T, L> {
    /// A new shared value guarded by `lock` (which other objects may share).
    pub fn with_lock(value: T, lock: L) -> crate::error::Result<Value<T, L>> {
        Ok(Value {
            raw: RawValue::new(value)?,
            lock,
        })
    }

    /// The value, read under the lock.
    pub fn get(&self) -> T {
        self.lock.acquire_quiet();
        let value = self.raw.get();
        self.lock.release_quiet();
        value
    }

    /// Sets the value, under the lock.
    pub fn set(&self, value: T) {
        self.lock.acquire_quiet();
        self.raw.set(value);
        self.lock.release_quiet();
    }

    /// Replaces the value with `f(value)` under the lock; the new value. Poisoning is
    /// ignored, as by `get` and `set`.
    pub fn update(&self, f: impl FnOnce(T) -> T) -> T {
        let guard = match self.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let value = f(guard.get());
        guard.set(value);
        value
    }

    /// Acquires the lock and returns a guard that reads and writes the value without
    /// taking the lock again, and releases it when dropped.
    ///
    /// `Err` means acquired, but poisoned; the guard is inside.
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T, L>> {
        let poisoned = self.lock.acquire_quiet();
        let guard = ValueGuard { value: self };
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

    /// The value without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawValue<T> {
        &self.raw
    }

    /// The value as a standard atomic, for lock-free access (see the caveats).
    pub fn atomic(&self) -> &T::Atomic
    where
        T: AtomicInt,
    {
        self.raw.atomic()
    }
}

impl<T: Plain, L: Lockable> Clone for Value<T, L> {
    fn clone(&self) -> Self {
        Value {
            raw: self.raw.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Plain, L: Lockable> fmt::Debug for Value<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .field("lock", &std::any::type_name::<L>())
            .finish_non_exhaustive()
    }
}

impl<T: Plain, L: Lockable> Serialize for Value<T, L> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.raw, place_of(&self.lock, &self.raw.cells.region)).serialize(serializer)
    }
}

impl<'de, T: Plain, L: Lockable> Deserialize<'de> for Value<T, L> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (raw, place) = <(RawValue<T>, LockPlace<L>)>::deserialize(deserializer)?;
        let lock = lock_from(place, &raw.cells.region).map_err(serde::de::Error::custom)?;
        Ok(Value { raw, lock })
    }
}

/// Holds a [`Value`]'s lock; reads and writes it (as a [`RawValue`]) without taking
/// the lock again, and releases the lock when dropped (poisoning it if dropped while
/// its thread panics).
pub struct ValueGuard<'a, T: Plain, L: Lockable = RLock> {
    value: &'a Value<T, L>,
}

impl<T: Plain, L: Lockable> Deref for ValueGuard<'_, T, L> {
    type Target = RawValue<T>;

    fn deref(&self) -> &RawValue<T> {
        &self.value.raw
    }
}

impl<T: Plain, L: Lockable> Drop for ValueGuard<'_, T, L> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.value.lock.poison();
        }
        self.value.lock.release_quiet();
    }
}

impl<T: Plain, L: Lockable> fmt::Debug for ValueGuard<'_, T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueGuard").finish_non_exhaustive()
    }
}

/// An array of plain data in shared memory, without a lock: Python's `RawArray`.
///
/// Every access is checked against the length ("invalid index" otherwise). As for
/// [`RawValue`], each element is read or written with one volatile access, and nothing
/// orders the accesses of different processes: use an [`Array`] (which has a lock), or
/// the atomics of integer arrays.
pub struct RawArray<T: Plain> {
    cells: Cells<T>,
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
/// As for [`Value`]: the locking methods ignore poisoning, and with a non-re-entrant
/// [`Lock`](crate::Lock) they must not be called while this process holds it.
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
    fn values_of_each_type() {
        let i = Value::new(4343i32).unwrap();
        i.set(24234);
        assert_eq!(i.get(), 24234);
        let d = Value::new(3.625f64).unwrap();
        d.set(-4.25);
        assert_eq!(d.get(), -4.25);
        let b = Value::new(false).unwrap();
        b.set(true);
        assert!(b.get());
        let c = Value::new('x').unwrap();
        assert_eq!(c.update(|_| 'y'), 'y');
        let big = RawValue::new(1u64 << 33).unwrap();
        big.atomic().fetch_add(1 << 33, Ordering::Relaxed);
        assert_eq!(big.get(), 1 << 34);
    }

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
