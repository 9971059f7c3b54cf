//! `task_done` and `join` (a [`JoinableQueue`](crate::JoinableQueue)): tasks done
//! against items put, and the futex `join` sleeps on.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::ipc::ring::Word;
use crate::os::futex;

use super::raw_queue::{RawQueue, nap_until};

impl RawQueue {
    /// Items put and not yet marked done.
    pub(crate) fn unfinished(&self) -> u32 {
        let join = &self.header().join;
        let done = join.done.load(Ordering::SeqCst);
        let put = Word(self.header().ring.tail.word.load(Ordering::SeqCst)).count();
        put.wrapping_sub(done)
    }

    /// Counts one task done; `false` if that would be more than were put.
    pub(crate) fn task_done(&self) -> bool {
        let join = &self.header().join;
        loop {
            let done = join.done.load(Ordering::SeqCst);
            let put = Word(self.header().ring.tail.word.load(Ordering::SeqCst)).count();
            let unfinished = put.wrapping_sub(done);
            if unfinished == 0 || unfinished > u32::MAX / 2 {
                return false;
            }
            if join
                .done
                .compare_exchange(
                    done,
                    done.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                if unfinished == 1 && join.waiters.load(Ordering::SeqCst) > 0 {
                    join.seq.fetch_add(1, Ordering::SeqCst);
                    futex::wake(&join.seq, u32::MAX);
                }
                return true;
            }
        }
    }

    /// Waits until every item put was marked done; `false` if `deadline` came first.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> bool {
        let join = &self.header().join;
        loop {
            if self.unfinished() == 0 {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            join.waiters.fetch_add(1, Ordering::SeqCst);
            let seen = join.seq.load(Ordering::SeqCst);
            if self.unfinished() != 0 {
                futex::wait(&join.seq, seen, nap_until(deadline));
            }
            join.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
