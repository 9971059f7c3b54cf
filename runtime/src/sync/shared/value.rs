//! [`RawValue`], [`Value`] and [`ValueGuard`]: one plain value in shared memory.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cells::{Cells, LockPlace, lock_from, place_of};
use super::plain::{AtomicInt, Plain};
use crate::sync::error::{LockResult, PoisonError, SyncError};
use crate::sync::lock::{Lockable, RLock, sealed::LockOps, sealed::Place};

/// A plain value in shared memory, without a lock: Python's `RawValue`.
///
/// [`get`](RawValue::get) and [`set`](RawValue::set) are single volatile accesses: a
/// `u64` is read or written whole, but a struct written by one process while another
/// reads it may be seen half old, half new. Use a [`Value`] (which has a lock) for
/// that, or [`atomic`](RawValue::atomic) for integers.
pub struct RawValue<T: Plain> {
    pub(super) cells: Cells<T>,
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
}
