//! The pool's thread: its loop (results, workers, timeouts, then a wait for the next
//! thing to happen) and the shutdown that ends it.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ipc::wait::{Waitable, wait};
use crate::os::sys;
use crate::pool::error::TaskError;
use crate::pool::shared::{Phase, Shared, Task, WorkerSlot};

/// Workers are checked this often while results keep the thread busy.
const CHECK_EVERY: Duration = Duration::from_millis(5);

impl Shared {
    /// How long the thread may sleep: the timeout check's interval.
    fn nap(&self) -> Option<Duration> {
        self.task_timeout
            .map(|t| (t / 10).clamp(Duration::from_millis(1), Duration::from_millis(50)))
    }

    /// Shuts down if the phase says so; whether the thread should end.
    fn lifecycle(&self) -> bool {
        let mut st = self.lock();
        match st.phase {
            Phase::Running | Phase::Stopped => {
                self.refill(&mut st);
                st.phase == Phase::Stopped
            }
            Phase::Closed => {
                let idle = st.pending.is_empty()
                    && st.lazy == 0
                    && st
                        .workers
                        .iter()
                        .flatten()
                        .all(|w| w.outstanding.is_empty());
                if !idle {
                    self.refill(&mut st);
                    return false;
                }
                let workers: Vec<WorkerSlot> =
                    st.workers.iter_mut().filter_map(Option::take).collect();
                drop(st);
                for w in &workers {
                    w.link.stop();
                }
                for w in &workers {
                    w.link.join();
                }
                self.finish();
                true
            }
            Phase::Terminating => {
                let workers: Vec<WorkerSlot> =
                    st.workers.iter_mut().filter_map(Option::take).collect();
                let pending: Vec<Task> = st.pending.drain(..).collect();
                drop(st);
                for w in &workers {
                    w.link.kill();
                }
                for w in &workers {
                    w.link.join();
                }
                let error = TaskError::terminated();
                for task in pending {
                    task.fail(&error);
                }
                for w in workers {
                    for task in w.outstanding {
                        task.fail(&error);
                    }
                }
                self.finish();
                true
            }
        }
    }

    /// Stops the pool after its thread failed: kills the workers, fails every task.
    pub(crate) fn emergency_stop(&self) {
        {
            let mut st = self.lock();
            if st.phase == Phase::Stopped {
                return;
            }
            st.phase = Phase::Terminating;
        }
        self.lifecycle();
    }

    fn finish(&self) {
        if let Some(remote) = &self.remote {
            // The workers have ended or were dropped: `srun` ends soon after them.
            remote.finish(Duration::from_secs(2));
        }
        let mut st = self.lock();
        // A submission that raced with the shutdown fails rather than waits.
        let error = TaskError::terminated();
        for task in st.pending.drain(..) {
            task.fail(&error);
        }
        st.phase = Phase::Stopped;
        drop(st);
        self.stopped.notify_all();
    }

    /// The pool's thread.
    pub(crate) fn run(self: Arc<Self>) {
        let mut last_check = Instant::now();
        loop {
            let got = self.drain_results();
            let now = Instant::now();
            if got == 0 || now.duration_since(last_check) >= CHECK_EVERY {
                self.check_workers();
                last_check = now;
            }
            self.check_timeouts();
            if self.lifecycle() {
                return;
            }
            if got > 0 {
                continue;
            }
            let sentinels: Vec<_> = {
                let st = self.lock();
                st.workers
                    .iter()
                    .flatten()
                    .map(|w| w.link.sentinel())
                    .collect()
            };
            let mut objects: Vec<&dyn Waitable> = vec![&self.results, &self.bell];
            objects.extend(sentinels.iter().map(|s| s as &dyn Waitable));
            match wait(&objects, self.nap()) {
                Ok(ready) => {
                    if ready.contains(&1) {
                        let _ = sys::eventfd_reset(self.bell.0.as_fd());
                    }
                }
                Err(e) => {
                    log::warn!("pool cannot wait: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}
