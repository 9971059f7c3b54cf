//! `Pool` on real worker processes: Python's observable behaviour (the reference's items
//! 89-98 and 100), checked from the outside.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use multiproc::{Error, Pool, PoolError, Queue, TaskError};

#[multiproc::worker]
fn sqr(x: u64) -> u64 {
    x * x
}

#[multiproc::worker]
fn mul(x: u64, y: u64) -> u64 {
    x * y
}

#[multiproc::worker]
fn bad3(x: u64) -> Result<u64, String> {
    if x == 3 {
        Err(format!("bad {x}"))
    } else {
        Ok(x)
    }
}

#[multiproc::worker]
fn panics_at_3(x: u64) -> u64 {
    if x == 3 {
        panic!("bad {x}");
    }
    x
}

#[multiproc::worker]
fn sleep_then_sqr(ms: u64, x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

#[multiproc::worker]
fn whoami(_x: u64) -> (String, u32, bool) {
    let me = multiproc::current_process();
    (me.name().to_owned(), me.pid(), me.daemon())
}

#[multiproc::worker]
fn pid_of(_x: u64) -> u32 {
    std::process::id()
}

#[multiproc::worker]
fn sleepy_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[multiproc::worker]
fn block_until_put(gate: Queue<u8>) -> u8 {
    gate.get().unwrap_or(0)
}

#[multiproc::worker]
fn set_global(value: u64) {
    let _ = multiproc::set_worker_state(value);
}

#[multiproc::worker]
fn read_global(_x: u64) -> u64 {
    multiproc::worker_state::<u64>().copied().unwrap_or(0)
}

#[multiproc::worker]
fn huge_error(x: u64) -> Result<u64, String> {
    if x < 2 {
        Err("e".repeat(1 << 20))
    } else {
        Ok(x)
    }
}

#[derive(Debug)]
struct NotSerializable;

impl serde::Serialize for NotSerializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be sent"))
    }
}

impl<'de> serde::Deserialize<'de> for NotSerializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(NotSerializable)
    }
}

#[multiproc::worker]
fn unsendable(_x: u64) -> NotSerializable {
    NotSerializable
}

fn task_error(e: Error) -> TaskError {
    match e {
        Error::Task(e) => e,
        other => panic!("expected a task error, got {other:?}"),
    }
}

fn pool_error(e: Error) -> PoolError {
    match e {
        Error::Pool(e) => e,
        other => panic!("expected a pool error, got {other:?}"),
    }
}

#[test]
fn constructor_validation() {
    let e = pool_error(Pool::new(0).unwrap_err());
    assert_eq!(e, PoolError::NoProcesses);
    assert_eq!(e.to_string(), "Number of processes must be at least 1");
    let e = pool_error(Pool::builder().maxtasksperchild(0).build().unwrap_err());
    assert_eq!(
        e.to_string(),
        "maxtasksperchild must be a positive int or None"
    );
    let e = pool_error(
        Pool::builder()
            .task_timeout(Duration::ZERO)
            .build()
            .unwrap_err(),
    );
    assert_eq!(e, PoolError::TaskTimeout);
    let pool = Pool::builder().build().unwrap();
    assert_eq!(pool.processes(), multiproc::cpu_count());
    assert_eq!(pool.pids().len(), multiproc::cpu_count());
}

#[test]
fn map_in_order_for_any_chunksize() {
    let pool = Pool::new(2).unwrap();
    let want: Vec<u64> = (0..10).map(|x| x * x).collect();
    assert_eq!(pool.map::<sqr>(0..10).unwrap(), want);
    assert_eq!(pool.map_chunked::<sqr>(0..10, 3).unwrap(), want);
    assert_eq!(pool.map_chunked::<sqr>(0..10, 20).unwrap(), want);
    let big: Vec<u64> = (0..10_000).map(|x| x * x).collect();
    assert_eq!(pool.map::<sqr>(0..10_000).unwrap(), big);
    assert_eq!(pool.map_chunked::<sqr>(0..10_000, 1).unwrap(), big);
    let e = pool_error(pool.map_chunked::<sqr>(0..10, 0).unwrap_err());
    assert_eq!(e, PoolError::ChunkSize);
}

#[test]
fn empty_inputs() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map::<sqr>(Vec::new()).unwrap(), Vec::<u64>::new());
    assert_eq!(pool.imap::<sqr>(Vec::new()).unwrap().count(), 0);
    assert_eq!(pool.imap_unordered::<sqr>(Vec::new()).unwrap().count(), 0);
    let r = pool.map_async::<sqr>(Vec::new()).unwrap();
    assert!(r.ready());
    assert_eq!(r.get().unwrap(), Vec::<u64>::new());
    assert_eq!(pool.starmap::<mul>(Vec::new()).unwrap(), Vec::<u64>::new());
}

#[test]
fn starmap_apply_and_apply_async() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.starmap::<mul>(vec![(1, 2), (3, 4)]).unwrap(), [2, 12]);
    assert_eq!(
        pool.starmap_async::<mul>(vec![(2, 3), (4, 5)])
            .unwrap()
            .get()
            .unwrap(),
        [6, 20]
    );
    assert_eq!(pool.apply::<sqr>((7,)).unwrap(), 49);
    let r = pool.apply_async::<sqr>((7,)).unwrap();
    assert_eq!(r.get().unwrap(), 49);
    // get can be called again.
    assert_eq!(r.get().unwrap(), 49);
}

#[test]
fn imap_lazily_in_order_and_unordered() {
    let pool = Pool::new(2).unwrap();
    let got: Vec<u64> = pool
        .imap::<sqr>(0..100)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..100).map(|x| x * x).collect::<Vec<_>>());
    let mut got: Vec<u64> = pool
        .imap_unordered::<sqr>(0..100)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..100).map(|x| x * x).collect::<Vec<_>>());
    let got: Vec<u64> = pool
        .imap_chunked::<sqr>(0..1000, 100)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..1000).map(|x| x * x).collect::<Vec<_>>());
    let e = pool_error(pool.imap_chunked::<sqr>(0..10, 0).unwrap_err());
    assert_eq!(e, PoolError::ChunkSize);
}

#[test]
fn map_fails_with_the_error_after_all_tasks() {
    let pool = Pool::new(2).unwrap();
    let e = task_error(pool.map::<bad3>(0..10).unwrap_err());
    assert!(e.is_failed());
    assert_eq!(e.message(), "\"bad 3\"");
    assert_eq!(e.to_string(), "task failed: \"bad 3\"");
    let e = task_error(pool.apply::<bad3>((3,)).unwrap_err());
    assert!(e.is_failed());

    let e = task_error(pool.map::<panics_at_3>(0..10).unwrap_err());
    assert!(e.is_panic());
    assert_eq!(e.message(), "bad 3");
    assert!(e.location().unwrap().contains("pool.rs"), "{e}");

    // imap yields the failure in its place and goes on.
    let got: Vec<_> = pool.imap::<bad3>(0..6).unwrap().collect();
    assert_eq!(got[..3], [Ok(0), Ok(1), Ok(2)]);
    assert!(got[3].as_ref().unwrap_err().is_failed());
    assert_eq!(got[4..], [Ok(4), Ok(5)]);

    // map waits for every chunk before it reports: the slow task has finished by then.
    let r = pool
        .starmap_async::<sleep_then_sqr>(vec![(0, 3), (300, 2)])
        .unwrap();
    let start = Instant::now();
    r.get().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn async_result_timeouts_and_readiness() {
    let pool = Pool::new(2).unwrap();
    let r = pool.apply_async::<sleep_then_sqr>((1000, 6)).unwrap();
    let start = Instant::now();
    let e = pool_error(r.get_timeout(Duration::from_millis(200)).unwrap_err());
    assert!(e.is_timeout());
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(!r.ready());
    assert_eq!(pool_error(r.successful().unwrap_err()), PoolError::NotReady);
    assert!(!r.wait_timeout(Duration::from_millis(10)));
    assert_eq!(r.get().unwrap(), 36);
    assert!(r.ready());
    assert!(r.successful().unwrap());
    let failed = pool.apply_async::<bad3>((3,)).unwrap();
    failed.wait();
    assert!(!failed.successful().unwrap());
}

#[test]
fn close_then_join_keeps_results() {
    let pool = Pool::new(2).unwrap();
    let e = pool_error(pool.join().unwrap_err());
    assert_eq!(e.to_string(), "Pool is still running");
    let r = pool
        .starmap_async::<sleep_then_sqr>(vec![(100, 1), (100, 2)])
        .unwrap();
    pool.close();
    let e = pool_error(pool.map::<sqr>(0..3).unwrap_err());
    assert_eq!(e.to_string(), "Pool not running");
    assert!(pool.apply_async::<sqr>((1,)).is_err());
    assert!(pool.imap::<sqr>(0..3).is_err());
    pool.join().unwrap();
    assert_eq!(r.get().unwrap(), [1, 4]);
    pool.join().unwrap();
}

#[test]
fn terminate_stops_tasks_at_once() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    let results: Vec<_> = (0..4)
        .map(|i| pool.apply_async::<sleep_then_sqr>((10_000, i)).unwrap())
        .collect();
    let start = Instant::now();
    pool.terminate().unwrap();
    pool.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    for r in &results {
        assert!(r.ready());
        let e = task_error(r.get().unwrap_err());
        assert!(e.is_terminated(), "{e}");
    }
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    let e = pool_error(pool.apply_async::<sqr>((1,)).unwrap_err());
    assert_eq!(e, PoolError::NotRunning);
}

#[test]
fn dropping_a_pool_terminates_it() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    let r = pool.apply_async::<sleep_then_sqr>((10_000, 1)).unwrap();
    let start = Instant::now();
    drop(pool);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(task_error(r.get().unwrap_err()).is_terminated());
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}

#[test]
fn maxtasksperchild_recycles_workers() {
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(2)
        .build()
        .unwrap();
    let pids: HashSet<u32> = pool
        .map_chunked::<pid_of>(0..20, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(pids.len(), 10, "{pids:?}");
}

#[test]
fn maxtasksperchild_one_and_close_does_not_hang_join() {
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let r = pool
        .map_async::<sleepy_pid>(std::iter::repeat_n(300, 6))
        .unwrap();
    pool.close();
    pool.join().unwrap();
    let pids: HashSet<u32> = r.get().unwrap().into_iter().collect();
    assert_eq!(pids.len(), 6);
}

#[test]
fn initializer_runs_before_any_task() {
    let pool = Pool::builder()
        .processes(2)
        .initializer::<set_global>((99,))
        .build()
        .unwrap();
    let got = pool.map_chunked::<read_global>(0..50, 1).unwrap();
    assert!(got.iter().all(|v| *v == 99), "{got:?}");
}

#[test]
fn an_unsendable_result_is_an_error_and_the_pool_goes_on() {
    let pool = Pool::new(2).unwrap();
    for _ in 0..20 {
        let e = task_error(pool.apply::<unsendable>((1,)).unwrap_err());
        assert!(e.is_failed());
        assert!(e.message().contains("refuses to be sent"), "{e}");
    }
    assert_eq!(pool.map::<sqr>(0..4).unwrap(), [0, 1, 4, 9]);
    assert_eq!(pool.pids().len(), 2);
}

#[test]
fn workers_are_daemonic_and_named() {
    let pool = Pool::new(2).unwrap();
    let seen = pool.map_chunked::<whoami>(0..20, 1).unwrap();
    let pids = pool.pids();
    for (name, pid, daemon) in seen {
        assert!(daemon);
        assert!(name.starts_with("SpawnPoolWorker-"), "{name}");
        assert!(pids.contains(&pid));
    }
}

#[test]
fn huge_errors_do_not_deadlock_close_and_join() {
    let pool = Pool::new(2).unwrap();
    let e = task_error(pool.map_chunked::<huge_error>(0..4, 1).unwrap_err());
    assert_eq!(e.message().len(), (1 << 20) + 2);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_task_can_wait_on_a_queue_passed_as_its_argument() {
    let pool = Pool::new(2).unwrap();
    let gate: Queue<u8> = Queue::new().unwrap();
    let r = pool
        .apply_async::<block_until_put>((gate.clone(),))
        .unwrap();
    assert!(!r.wait_timeout(Duration::from_millis(50)));
    gate.put(7).unwrap();
    assert_eq!(r.get().unwrap(), 7);
}

#[test]
fn imap_reads_an_endless_input_lazily() {
    use std::cell::Cell;
    let pool = Pool::new(2).unwrap();
    let read = Cell::new(0u64);
    let input = (0u64..).inspect(|_| read.set(read.get() + 1));
    let got: Vec<u64> = pool
        .imap::<sqr>(input)
        .unwrap()
        .take(1000)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..1000).map(|x| x * x).collect::<Vec<_>>());
    // Bounded: the window is a few hundred tasks per worker.
    assert!(read.get() < 1000 + 2 * 2 * 256, "read {}", read.get());
    let mut unordered = pool.imap_unordered::<sqr>(1u64..).unwrap();
    assert!(unordered.next().unwrap().unwrap() > 0);
}

#[test]
fn imap_knows_its_length() {
    let pool = Pool::new(2).unwrap();
    let mut it = pool.imap::<sqr>(0..100).unwrap();
    assert_eq!(it.len(), 100);
    it.next().unwrap().unwrap();
    assert_eq!(it.len(), 99);
    assert_eq!(it.by_ref().count(), 99);
    assert_eq!(it.len(), 0);
    let it = pool.imap_unordered::<sqr>(vec![1, 2, 3]).unwrap();
    assert_eq!(it.len(), 3);
}

static BUILDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

struct Expensive {
    pid: u32,
}

#[multiproc::worker]
fn uses_state(_x: u64) -> (u32, u32, u32) {
    let state = multiproc::worker_state_or_init(|| {
        BUILDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Expensive {
            pid: std::process::id(),
        }
    });
    (
        std::process::id(),
        state.pid,
        BUILDS.load(std::sync::atomic::Ordering::SeqCst),
    )
}

#[test]
fn per_worker_state_is_built_once_per_worker() {
    let pool = Pool::new(2).unwrap();
    for (pid, state_pid, builds) in pool.map_chunked::<uses_state>(0..200, 1).unwrap() {
        assert_eq!(pid, state_pid);
        assert_eq!(builds, 1);
    }
    // The parent's own state is its own.
    assert!(multiproc::worker_state::<Expensive>().is_none());
}

#[test]
fn pools_and_results_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let pool = Pool::new(1).unwrap();
    send_sync(&pool);
    let r = pool.apply_async::<sqr>((3,)).unwrap();
    send_sync(&r);
    let got = std::thread::scope(|s| s.spawn(|| pool.map::<sqr>(0..3).unwrap()).join());
    assert_eq!(got.unwrap(), [0, 1, 4]);
    assert_eq!(r.get().unwrap(), 9);
}
