//! [`Semaphore`], [`BoundedSemaphore`] and [`SemaphoreGuard`]: the public types, whose
//! shared methods one macro writes.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sem_core::{Block, SEM_VALUE_MAX, SemCore};
use crate::os::sys;
use crate::sync::error::ReleaseError;

macro_rules! semaphore_api {
    ($ty:ident) => {
        impl $ty {
            /// Takes a permit, waiting as long as it takes for one.
            pub fn acquire(&self) {
                self.core.acquire(Block::Until(None));
            }

            /// Takes a permit, waiting at most `timeout`; whether it got one. A zero
            /// timeout only tries.
            pub fn acquire_timeout(&self, timeout: Duration) -> bool {
                self.core
                    .acquire(Block::Until(Some(sys::deadline_after(timeout))))
            }

            /// Takes a permit if one is available now; whether it got one.
            pub fn try_acquire(&self) -> bool {
                self.core.acquire(Block::No)
            }

            /// Takes a permit and returns a guard that gives it back when dropped.
            pub fn permit(&self) -> SemaphoreGuard<'_> {
                self.acquire();
                SemaphoreGuard { core: &self.core }
            }

            /// [`permit`](Self::permit), if one is available now.
            pub fn try_permit(&self) -> Option<SemaphoreGuard<'_>> {
                self.try_acquire()
                    .then_some(SemaphoreGuard { core: &self.core })
            }

            /// [`permit`](Self::permit), waiting at most `timeout`.
            pub fn permit_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
                self.acquire_timeout(timeout)
                    .then_some(SemaphoreGuard { core: &self.core })
            }

            /// The permits available now.
            pub fn value(&self) -> u32 {
                self.core.value()
            }

            /// How many permits were taken back from processes that died holding them,
            /// over the semaphore's life.
            pub fn reclaimed(&self) -> u32 {
                self.core.reclaimed()
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.core.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Ok($ty {
                    core: SemCore::deserialize(deserializer)?,
                })
            }
        }
    };
}

/// A semaphore shared between processes: Python's `multiprocessing.Semaphore`.
///
/// It counts permits: [`acquire`](Semaphore::acquire) takes one, waiting while there
/// is none; [`release`](Semaphore::release) gives one back, and may raise the count
/// above its initial value (use [`BoundedSemaphore`] to forbid that). Hand it to other
/// processes as a worker argument, a `#[process]` field, or through a queue or a pipe.
///
/// ```
/// use multiproc::Semaphore;
///
/// #[multiproc::worker]
/// fn limited(sem: Semaphore, i: u32) {
///     let _permit = sem.permit(); // at most two workers in here at once
///     println!("worker {i} got in");
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let sem = Semaphore::new(2)?;
///     let workers: Vec<_> = (0..4)
///         .map(|i| limited::spawn(sem.clone(), i))
///         .collect::<Result<_, _>>()?;
///     for w in workers {
///         w.join()?;
///     }
///     assert_eq!(sem.value(), 2);
///     Ok(())
/// }
/// ```
///
/// # Permits of processes that die
///
/// Python's semaphores have no owner, so a process killed while holding a permit takes
/// it to the grave, and the others may wait forever. Here the semaphore records which
/// process holds which permits: a permit counts as held by the process that took it
/// until a release gives it back. A release gives back one of the releasing process's
/// own permits if it holds any, else one held by another process, else (for a
/// `Semaphore`) it adds a permit. When a process dies holding permits, a process
/// waiting in `acquire` notices (after 10 ms, then every 100 ms) and puts them back,
/// logging a warning; [`reclaimed`](Semaphore::reclaimed) counts them. Semaphores are
/// not poisoned: a permit is a count, not data.
///
/// # Caveats
///
/// - "Dies" means ends, however: a process that *exits* holding permits has them taken
///   back too. A semaphore used as a counter of items (a producer releases, a consumer
///   acquires and never releases) should have the consumer call
///   [`SemaphoreGuard::forget`] (or release and acquire in pairs): otherwise a consumer
///   that ends hands back the items it consumed but no producer's release matched.
/// - The table has room for 252 processes at once (the slots of dead processes are
///   reused). Permits taken by further processes are not recorded, and are lost if
///   their process dies holding them.
/// - Only a waiting acquisition (blocking, or with a timeout of 10 ms or more) looks for
///   dead holders; [`try_acquire`](Semaphore::try_acquire) does not.
/// - A process is identified by its pid (see [`Lock`](crate::Lock)'s caveats).
pub struct Semaphore {
    pub(super) core: SemCore,
}

impl Semaphore {
    /// A semaphore with `value` permits (at most [`SEM_VALUE_MAX`]).
    pub fn new(value: u32) -> crate::error::Result<Semaphore> {
        Ok(Semaphore {
            core: SemCore::new("semaphore", value, SEM_VALUE_MAX)?,
        })
    }

    /// Gives a permit back (or adds one), waking a waiter if there is one. An error
    /// only at [`SEM_VALUE_MAX`].
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.core.release()
    }
}

semaphore_api!(Semaphore);

impl Clone for Semaphore {
    fn clone(&self) -> Self {
        Semaphore {
            core: self.core.clone(),
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

/// A semaphore that cannot be released above its initial value: Python's
/// `multiprocessing.BoundedSemaphore`.
///
/// Releasing it at its initial value is an error ("semaphore or lock released too many
/// times"), and changes nothing. Otherwise it is a [`Semaphore`], with the same
/// handling of processes that die holding permits.
///
/// ```
/// # fn main() -> multiproc::Result<()> {
/// let sem = multiproc::BoundedSemaphore::new(2)?;
/// assert!(sem.release().unwrap_err().is_too_many());
/// sem.acquire();
/// sem.release().unwrap();
/// assert_eq!(sem.value(), 2);
/// # Ok(())
/// # }
/// ```
pub struct BoundedSemaphore {
    pub(super) core: SemCore,
}

impl BoundedSemaphore {
    /// A semaphore with `value` permits (at most [`SEM_VALUE_MAX`]), never more.
    pub fn new(value: u32) -> crate::error::Result<BoundedSemaphore> {
        Ok(BoundedSemaphore {
            core: SemCore::new("bounded-semaphore", value, value)?,
        })
    }

    /// Gives a permit back, waking a waiter if there is one; an error if the value is
    /// at its bound.
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.core.release()
    }

    /// The bound: the initial value.
    pub fn max_value(&self) -> u32 {
        self.core.max_value()
    }
}

semaphore_api!(BoundedSemaphore);

impl Clone for BoundedSemaphore {
    fn clone(&self) -> Self {
        BoundedSemaphore {
            core: self.core.clone(),
        }
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("max_value", &self.max_value())
            .finish()
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`], given back when dropped.
pub struct SemaphoreGuard<'a> {
    pub(super) core: &'a SemCore,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken for good: it is not given back now, nor when this
    /// process ends.
    pub fn forget(self) {
        self.core.forget();
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // A bounded semaphore at its bound means someone released our permit already.
        let _ = self.core.release();
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn counts_like_python() {
        let sem = Semaphore::new(2).unwrap();
        sem.acquire();
        sem.acquire();
        assert_eq!(sem.value(), 0);
        assert!(!sem.try_acquire());
        let start = Instant::now();
        assert!(!sem.acquire_timeout(Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(45));
        sem.release().unwrap();
        sem.release().unwrap();
        sem.release().unwrap();
        assert_eq!(sem.value(), 3);
        assert_eq!(format!("{sem:?}"), "Semaphore { value: 3 }");
        assert!(Semaphore::new(SEM_VALUE_MAX + 1).is_err());
    }

    #[test]
    fn bounded_refuses_to_go_above() {
        let sem = BoundedSemaphore::new(2).unwrap();
        let err = sem.release().unwrap_err();
        assert_eq!(err.to_string(), "semaphore or lock released too many times");
        assert_eq!(sem.value(), 2);
        sem.acquire();
        sem.acquire();
        sem.release().unwrap();
        sem.release().unwrap();
        assert!(sem.release().is_err());
        assert_eq!(
            format!("{sem:?}"),
            "BoundedSemaphore { value: 2, max_value: 2 }"
        );
    }
}
