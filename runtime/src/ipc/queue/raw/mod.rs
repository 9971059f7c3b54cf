//! The untyped core of every queue: a shared-memory ring of encoded items, with its
//! locks, wake-ups, descriptor courier and `wait` signal.
//!
//! # Layout of the shared region
//!
//! ```text
//! 0      info line      magic, ring size, capacity, item type, flavour, closed flag,
//!                       resident part of a growable ring
//! 64     ring control   four lines (ring.rs): producer lock and last head seen; tail
//!                       word; consumer lock and last tail seen; head word
//! 320    wake line      futex words and waiter counts, watcher count, descriptor batch counter
//! 384    join line      tasks done, join futex word and waiter count (JoinableQueue)
//! 448    grow line      how far read memory was given back (growable rings)
//! 4096   the ring's data area (a power of two, 4 MiB unless configured; for an
//!        unbounded queue, a sparse area of up to 1 GiB whose first 4 MiB stay
//!        in memory: see `grow.rs`)
//! ```
//!
//! # Records
//!
//! An item is encoded (outside any lock) and written as one record under the producer
//! lock. Three kinds:
//!
//! - `INLINE`: the encoded bytes are the payload;
//! - `INLINE_FDS`: the same, and the item holds handles: their descriptors went to the
//!   courier as batch `seq` (see `courier.rs`) just before the record was published;
//! - `SPILL`: an item larger than half the ring (half its resident part, for a
//!   growable one): its bytes are in a sealed `memfd` of their own, sent as the first
//!   descriptor of batch `seq`; the payload is its length;
//! - `SKIP`: no item, the rest of a lap that a growable ring rewound from (`grow.rs`).
//!
//! # Waiting
//!
//! A consumer that finds the ring empty spins a little (see `spin.rs`), then counts
//! itself in `not_empty_waiters` and sleeps on the `not_empty` futex word. A producer
//! reads the count after publishing (the publish is a full barrier) and, only if someone
//! sleeps, bumps the word and wakes all sleepers: a queue in steady use makes no system
//! call. Producers wait for room the same way on `not_full`.
//!
//! # Deaths
//!
//! Every change a producer or a consumer makes to the ring is one atomic store of its
//! word, done last, under its lock; a process killed at any instruction leaves either
//! the old or the new state, and the next holder of the lock (which takes it over from
//! the dead holder, see [`RawLock`](crate::futex::RawLock)) continues from there.
//! Descriptor batches of a producer that died before publishing are discarded by
//! consumers; an item whose batch was taken by a consumer that died before freeing its
//! record is skipped (it was being received by that consumer: each consumer notes the
//! batch it is about to take in `taking`, so that the next one can tell this case
//! from a record whose batch was never sent, which is reported as corruption). A sleeper is woken by
//! anyone's progress, never by one chosen process that could die first; and since a
//! process may die between publishing a change and waking the sleepers, every blocking
//! sleep also ends after [`RECHECK`](raw_queue::RECHECK) (a second) to look again.
//!
//! # Garbage
//!
//! The region is writable by every holder, so a peer can write anything into it.
//! What cannot be trusted is dropped, and the operation that found it reports it as
//! [`ChannelError::Corrupt`](crate::ChannelError::Corrupt), whose message says how
//! many items were dropped (`recover.rs`): a record or a word off the record grid
//! (both words are set to one aligned position past everything published, so the
//! queue works again), a record whose descriptor batch was never sent, a spilled item
//! whose memory is not what a producer makes (size other than announced, unsealed,
//! or with holes: checked before anything is copied). A warning is logged too.

mod batch;
mod bell;
mod get;
mod grow;
mod join;
mod layout;
mod put;
mod raw_queue;
mod recover;
mod sparse;

pub(crate) use layout::{DEFAULT_RING, Flavor};
pub(crate) use raw_queue::{Fail, Patience, RawQueue};
