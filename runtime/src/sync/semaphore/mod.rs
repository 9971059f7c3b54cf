//! [`Semaphore`] and [`BoundedSemaphore`]: counters of permits shared between
//! processes, which take back the permits of processes that die holding them.
//!
//! # Layout
//!
//! One page: a [`SemState`](sem_core::SemState) (an internal
//! [`RawLock`](crate::os::futex::RawLock), the value, the bound, a flag for sleepers
//! and the futex word they sleep on, a small journal), then a table of
//! [`SemSlot`](sem_core::SemSlot)s, one per process that has used the semaphore: its
//! pid and the permits it holds. Every change happens under the internal lock. A
//! change that touches two words (the value and a holder's count) is journaled first,
//! so that a process killed in the middle of it leaves nothing half done: whoever takes
//! the internal lock over from it rolls the change back, then takes back the permits of
//! the dead.
//!
//! A waiter that finds no permit sleeps at once (no spinning, see `acquire_slow`).
//! Sleepers raise the flag and wait on `seq`; a release that finds the flag up lowers
//! it, bumps `seq` and wakes one sleeper, which raises the flag again when it takes its
//! permit (others may sleep) and passes a surplus on to the next: so a busy process
//! releasing while another sleeps makes one system call per sleep, not one per
//! release. Sleepers also wake every 100 ms (the first time after 10 ms) to look for
//! holders that died, whose permits they reclaim; that also bounds the delay of a
//! wake-up lost with a process that died.

//!
//! # Files
//!
//! The public types and the macro that writes their shared methods are in `api.rs`;
//! the core they share is `SemCore` (`sem_core.rs`: the page, its internal lock),
//! with `acquire` and `release` in `permits.rs` and the journal, the holder table and
//! the reclaiming of dead holders' permits in `recovery.rs`.

mod api;
mod permits;
mod recovery;
mod sem_core;

pub use api::{BoundedSemaphore, Semaphore, SemaphoreGuard};
pub use sem_core::SEM_VALUE_MAX;
