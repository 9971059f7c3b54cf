//! [`Barrier`]: a meeting point for a fixed number of processes.
//!
//! # Layout
//!
//! A [`BarrierState`] (an internal [`RawLock`], the parties, the state and count of
//! Python's algorithm, and the futex word `seq` that sleepers wait on, bumped at every
//! change), then one pid per party inside the barrier: the table of who is in, indexed
//! by the order of arrival. Sleepers look at that table now and then (after 10 ms, then
//! every 100 ms): a party that died inside breaks the barrier for the others, and leaves
//! it, so that the barrier can drain and be used again.
//!
//! The algorithm is CPython's `threading.Barrier`: filling, then draining (no one enters
//! until everyone of the pass has left), broken, or resetting (draining after a reset).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{BrokenBarrierError, SyncError};
use super::{Atomics, Checks, Shm, passed};
use crate::os::futex::{self, Acquired, RawLock};
use crate::os::identity::{Liveness, liveness, my_stamp, stamp_pid};
use crate::os::sys;

const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// The most parties a barrier can have.
const MAX_PARTIES: usize = 1 << 16;

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct BarrierState {
    lock: RawLock,
    parties: AtomicU32,
    state: AtomicU32,
    /// Parties inside (arrived and not yet left).
    count: AtomicU32,
    /// Bumped at every change of state; the futex sleepers wait on.
    seq: AtomicU32,
    _reserved: [AtomicU32; 8],
}

const _: () = assert!(std::mem::size_of::<BarrierState>() == 64);

// SAFETY: repr(C), atomics only.
unsafe impl Atomics for BarrierState {}

/// What the last party to arrive runs, once per pass, before the others go on:
/// the `action` of Python's `Barrier`.
///
/// The action travels with the barrier to every process that gets a copy (whichever
/// party arrives last runs its own copy), so it is a value that serde can encode: a
/// struct, often without fields.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Announce;
///
/// impl multiproc::BarrierAction for Announce {
///     fn run(&self) {
///         println!("everyone is here");
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let barrier = multiproc::Barrier::with_action(1, Announce)?;
/// barrier.wait()?; // prints "everyone is here"
/// # Ok(())
/// # }
/// ```
pub trait BarrierAction: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Runs the action. A panic breaks the barrier and goes on in the party that ran it.
    fn run(&self);
}

/// No action: the default of [`Barrier`].
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct NoAction;

impl BarrierAction for NoAction {
    fn run(&self) {}
}

/// A barrier shared between processes: Python's `multiprocessing.Barrier`.
///
/// Each of `parties` processes (or threads) calls [`wait`](Barrier::wait); all of them
/// return once the last one arrives, each with a distinct index in `0..parties` (the
/// order of arrival), and the barrier is ready for the next pass. A timeout, an
/// [`abort`](Barrier::abort), a [`reset`](Barrier::reset) while parties wait, or a
/// panicking action *breaks* it: waiters get [`BrokenBarrierError`], and so does every
/// later `wait` until `reset`.
///
/// ```
/// use multiproc::Barrier;
///
/// #[multiproc::worker]
/// fn party(barrier: Barrier) -> usize {
///     barrier.wait().unwrap()
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let barrier = Barrier::new(3)?;
///     let a = party::spawn(barrier.clone())?;
///     let b = party::spawn(barrier.clone())?;
///     let mine = barrier.wait()?;
///     let mut indices = vec![mine, a.join_value()?, b.join_value()?];
///     indices.sort();
///     assert_eq!(indices, [0, 1, 2]);
///     Ok(())
/// }
/// ```
///
/// # Parties that die
///
/// A party that dies while it waits breaks the barrier for the others, who get
/// [`BrokenBarrierError`] (within about 100 ms) instead of waiting forever. A party
/// that dies inside the barrier after a pass (before it left) is removed, so that the
/// next pass can begin. A party that dies *before* reaching the barrier cannot be told
/// from a late one: give the waits a timeout where that can happen.
///
/// # Caveats
///
/// - At most 65536 parties.
/// - The action runs while the barrier's internal lock is held: the others cannot leave
///   until it returns (as in Python).
/// - A process is identified by its pid (see [`Lock`](crate::Lock)'s caveats).
pub struct Barrier<A: BarrierAction = NoAction> {
    shm: Shm<BarrierState>,
    action: Option<A>,
    timeout: Option<Duration>,
}

impl Barrier<NoAction> {
    /// A barrier for `parties` parties (1 to 65536), without action or default timeout.
    pub fn new(parties: usize) -> crate::error::Result<Barrier<NoAction>> {
        Barrier::create(parties, None)
    }
}

impl<A: BarrierAction> Barrier<A> {
    /// A barrier whose last party to arrive runs `action`, once per pass.
    pub fn with_action(parties: usize, action: A) -> crate::error::Result<Barrier<A>> {
        Barrier::create(parties, Some(action))
    }

    fn create(parties: usize, action: Option<A>) -> crate::error::Result<Barrier<A>> {
        if !(1..=MAX_PARTIES).contains(&parties) {
            return Err(SyncError::invalid_argument(format!(
                "a barrier needs 1 to {MAX_PARTIES} parties, not {parties}"
            ))
            .into());
        }
        let shm = Shm::<BarrierState>::create("barrier", parties * 8)?;
        shm.get().parties.store(parties as u32, Ordering::Relaxed);
        Ok(Barrier {
            shm,
            action,
            timeout: None,
        })
    }

    /// This handle with a default timeout for [`wait`](Barrier::wait) (Python's
    /// `timeout` argument). It travels with the handle to other processes.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    #[inline]
    fn state(&self) -> &BarrierState {
        self.shm.get()
    }

    /// The table of parties inside, as long as `parties` and the region allow.
    fn inside(&self) -> &[AtomicU64] {
        let table = self.shm.table::<AtomicU64>();
        &table[..self.parties().min(table.len())]
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        (self.state().parties.load(Ordering::Relaxed) as usize).clamp(1, MAX_PARTIES)
    }

    /// How many parties wait now (0 while the barrier drains or is broken).
    pub fn n_waiting(&self) -> usize {
        let st = self.state();
        if st.state.load(Ordering::Relaxed) == FILLING {
            st.count.load(Ordering::Relaxed) as usize
        } else {
            0
        }
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.state().state.load(Ordering::Relaxed) == BROKEN
    }

    /// Takes the internal lock; if its holder died, breaks the barrier (the dead party
    /// may have been half way through a change) and removes the dead.
    fn lock(&self) -> &BarrierState {
        let st = self.state();
        if !st.lock.try_lock() {
            let mut how = st.lock.lock(None);
            while how.is_none() {
                how = st.lock.lock(None);
            }
            if how == Some(Acquired::OwnerDied) {
                st.state.store(BROKEN, Ordering::Relaxed);
                self.remove_dead(st);
                self.notify_all(st);
            }
        }
        st
    }

    fn notify_all(&self, st: &BarrierState) {
        st.seq.fetch_add(1, Ordering::Release);
        futex::wake(&st.seq, u32::MAX);
    }

    /// Sleeps until the next change (or check, or `deadline`), lock released.
    fn sleep(
        &self,
        st: &BarrierState,
        checks: &Checks,
        deadline: Option<Instant>,
    ) -> &BarrierState {
        let seen = st.seq.load(Ordering::Acquire);
        st.lock.unlock();
        futex::wait(&st.seq, seen, Some(checks.until(deadline)));
        self.lock()
    }

    /// Python's `_break`.
    fn break_it(&self, st: &BarrierState) {
        st.state.store(BROKEN, Ordering::Relaxed);
        self.notify_all(st);
    }

    /// Python's `_exit`: the last party out of a draining or resetting barrier opens it.
    fn exit(&self, st: &BarrierState) {
        if st.count.load(Ordering::Relaxed) == 0 {
            let state = st.state.load(Ordering::Relaxed);
            if state == DRAINING || state == RESETTING {
                for slot in self.inside() {
                    slot.store(0, Ordering::Relaxed);
                }
                st.state.store(FILLING, Ordering::Relaxed);
                self.notify_all(st);
            }
        }
    }

    /// Removes parties that died inside: breaks the barrier if it was filling, and
    /// lets it drain otherwise. Under the internal lock.
    fn remove_dead(&self, st: &BarrierState) {
        let mut removed = false;
        for slot in self.inside() {
            let stamp = slot.load(Ordering::Relaxed);
            let pid = stamp_pid(stamp);
            // Only a certain death breaks the barrier: a party that cannot be judged
            // (`/proc` hidden, another pid namespace) is waited for.
            if pid != 0 && liveness(stamp) == Liveness::Dead {
                slot.store(0, Ordering::Relaxed);
                let count = st.count.load(Ordering::Relaxed);
                st.count.store(count.saturating_sub(1), Ordering::Relaxed);
                removed = true;
                log::warn!("process {pid} died waiting at a barrier: the barrier breaks");
            }
        }
        if removed {
            if st.state.load(Ordering::Relaxed) == FILLING {
                st.state.store(BROKEN, Ordering::Relaxed);
            }
            self.notify_all(st);
            self.exit(st);
        }
    }

    /// Waits for the other parties (at most the default timeout, if the handle has
    /// one); this party's index in `0..parties`, in the order of arrival.
    pub fn wait(&self) -> Result<usize, BrokenBarrierError> {
        self.wait_until(self.timeout.map(sys::deadline_after))
    }

    /// Waits for the other parties at most `timeout`; past it, the barrier breaks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BrokenBarrierError> {
        self.wait_until(Some(sys::deadline_after(timeout)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<usize, BrokenBarrierError> {
        let me = my_stamp();
        let mut checks = Checks::new();
        let mut st = self.lock();
        // Python's `_enter`: wait while the previous pass drains.
        loop {
            let state = st.state.load(Ordering::Relaxed);
            if state != DRAINING && state != RESETTING {
                break;
            }
            if checks.due() {
                self.remove_dead(st);
            }
            st = self.sleep(st, &checks, None);
        }
        let parties = self.parties();
        let index = st.count.load(Ordering::Relaxed) as usize;
        let inside = self.inside();
        if st.state.load(Ordering::Relaxed) != FILLING {
            st.lock.unlock();
            return Err(BrokenBarrierError);
        }
        if index >= parties.min(inside.len()) {
            // Garbage from a peer: more parties inside than there are.
            self.break_it(st);
            st.lock.unlock();
            return Err(BrokenBarrierError);
        }
        st.count.store(index as u32 + 1, Ordering::Relaxed);
        inside[index].store(me, Ordering::Relaxed);

        let mut result = Ok(index);
        let mut panic = None;
        if index + 1 == parties {
            // Python's `_release`.
            if let Some(action) = &self.action {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| action.run())) {
                    self.break_it(st);
                    panic = Some(payload);
                }
            }
            if panic.is_none() {
                st.state.store(DRAINING, Ordering::Relaxed);
                self.notify_all(st);
            }
        } else {
            // Python's `_wait`.
            loop {
                let state = st.state.load(Ordering::Relaxed);
                if state != FILLING {
                    if state != DRAINING {
                        result = Err(BrokenBarrierError);
                    }
                    break;
                }
                if passed(deadline) {
                    self.break_it(st);
                    result = Err(BrokenBarrierError);
                    break;
                }
                if checks.due() {
                    self.remove_dead(st);
                    continue;
                }
                st = self.sleep(st, &checks, deadline);
            }
        }
        // Python's `finally:` leave, and open the barrier if last out.
        if inside[index].load(Ordering::Relaxed) == me {
            inside[index].store(0, Ordering::Relaxed);
            let count = st.count.load(Ordering::Relaxed);
            st.count.store(count.saturating_sub(1), Ordering::Relaxed);
        }
        self.exit(st);
        st.lock.unlock();
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
        result
    }

    /// Breaks the barrier: the parties waiting, and every later `wait` until
    /// [`reset`](Barrier::reset), get [`BrokenBarrierError`].
    pub fn abort(&self) {
        let st = self.lock();
        self.break_it(st);
        st.lock.unlock();
    }

    /// Returns the barrier to its empty, unbroken state. Parties waiting now get
    /// [`BrokenBarrierError`]; the barrier opens again once they have left.
    pub fn reset(&self) {
        let st = self.lock();
        if st.count.load(Ordering::Relaxed) > 0 {
            let state = st.state.load(Ordering::Relaxed);
            if state == FILLING || state == BROKEN {
                st.state.store(RESETTING, Ordering::Relaxed);
            }
        } else {
            st.state.store(FILLING, Ordering::Relaxed);
        }
        self.notify_all(st);
        st.lock.unlock();
    }
}

impl<A: BarrierAction + Clone> Clone for Barrier<A> {
    fn clone(&self) -> Self {
        Barrier {
            shm: self.shm.clone(),
            action: self.action.clone(),
            timeout: self.timeout,
        }
    }
}

impl<A: BarrierAction> fmt::Debug for Barrier<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl<A: BarrierAction> Serialize for Barrier<A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.shm, &self.action, self.timeout).serialize(serializer)
    }
}

impl<'de, A: BarrierAction> Deserialize<'de> for Barrier<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (shm, action, timeout) =
            <(Shm<BarrierState>, Option<A>, Option<Duration>)>::deserialize(deserializer)?;
        Ok(Barrier {
            shm,
            action,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn one_party_passes_at_once() {
        let b = Barrier::new(1).unwrap();
        for _ in 0..3 {
            assert_eq!(b.wait().unwrap(), 0);
        }
        assert!(Barrier::new(0).is_err());
    }

    #[test]
    fn threads_pass_in_lockstep() {
        #[derive(Clone, Serialize, Deserialize)]
        struct Count;
        static PASSES: AtomicUsize = AtomicUsize::new(0);
        impl BarrierAction for Count {
            fn run(&self) {
                PASSES.fetch_add(1, Ordering::SeqCst);
            }
        }
        let b = Barrier::with_action(5, Count).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..5)
            .map(|_| {
                let (b, seen) = (b.clone(), seen.clone());
                std::thread::spawn(move || {
                    for pass in 0..10 {
                        let i = b.wait_timeout(Duration::from_secs(30)).unwrap();
                        seen.lock().unwrap().push((pass, i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(PASSES.load(Ordering::SeqCst), 10);
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        let expected: Vec<_> = (0..10).flat_map(|p| (0..5).map(move |i| (p, i))).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn reset_breaks_the_waiters_then_the_barrier_passes_again() {
        let b = Barrier::new(3).unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.wait_timeout(Duration::from_secs(30)))
            })
            .collect();
        while b.n_waiting() < 2 {
            std::thread::yield_now();
        }
        b.reset();
        for w in waiters {
            assert_eq!(w.join().unwrap(), Err(BrokenBarrierError));
        }
        assert!(!b.is_broken());
        let passing: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.wait_timeout(Duration::from_secs(30)))
            })
            .collect();
        let mut indices = vec![b.wait_timeout(Duration::from_secs(30)).unwrap()];
        indices.extend(passing.into_iter().map(|t| t.join().unwrap().unwrap()));
        indices.sort();
        assert_eq!(indices, [0, 1, 2]);
    }

    #[test]
    fn a_panicking_action_breaks_the_barrier() {
        #[derive(Clone, Serialize, Deserialize)]
        struct Boom;
        impl BarrierAction for Boom {
            fn run(&self) {
                panic!("boom");
            }
        }
        let b = Barrier::with_action(2, Boom).unwrap();
        let other = {
            let b = b.clone();
            std::thread::spawn(move || b.wait_timeout(Duration::from_secs(30)))
        };
        while b.n_waiting() < 1 {
            std::thread::yield_now();
        }
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| b.wait()));
        assert!(panicked.is_err());
        assert_eq!(other.join().unwrap(), Err(BrokenBarrierError));
        assert!(b.is_broken());
    }

    #[test]
    fn a_party_that_died_inside_the_internal_lock_breaks_the_barrier() {
        let b = Barrier::new(2).unwrap();
        // SAFETY: the child only uses atomics in shared memory, then `_exit`s.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = b.state().lock.try_lock();
                // SAFETY: ends the forked child at once.
                unsafe { nix::libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        assert_eq!(
            b.wait_timeout(Duration::from_secs(10)),
            Err(BrokenBarrierError)
        );
        assert!(b.is_broken());
        b.reset();
        assert!(!b.is_broken());
    }

    #[test]
    fn timeout_breaks_and_reset_repairs() {
        let b = Barrier::new(2)
            .unwrap()
            .with_timeout(Duration::from_millis(50));
        let start = Instant::now();
        assert!(b.wait().is_err());
        assert!(start.elapsed() >= Duration::from_millis(45));
        assert!(b.is_broken());
        assert!(b.wait_timeout(Duration::from_secs(5)).is_err());
        b.reset();
        assert!(!b.is_broken());
        b.abort();
        assert!(b.is_broken());
        b.reset();
        assert_eq!(b.n_waiting(), 0);
    }
}
