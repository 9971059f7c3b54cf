//! What the synchronisation primitives cost: `Lock`, `RLock` and `Semaphore` acquire +
//! release alone and contended by two processes, an `Event` round trip between two
//! processes (on one CPU and on two), and a `Value<u64>` incremented under its lock by
//! two processes; beside the floor (a raw atomic, a raw futex mutex, a POSIX `sem_t`,
//! a raw futex ping-pong, all in shared memory between processes of this binary) and
//! beside Python's `multiprocessing` doing the same work in the same run.
//!
//! ```text
//! cargo bench --bench sync
//! ```
//!
//! One command, about a minute. Every figure is the median of several runs (7 for the
//! loops, 5 for the contended runs and round trips), with p10 and p90 in the details.
//! Contended runs: two processes (this one on CPU 0, a worker on CPU 1) meet at a
//! `Barrier`, then each does `N` operations; the figure is `2N` over the time from the
//! first start to the last end (both read `CLOCK_MONOTONIC`). The Python side is
//! `benches/python/sync_bench.py` ("n/a" without `python3`).

mod common;

use common::{Python, Stats, cpu_model, kernel, python, ratio};

use std::hint::black_box;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use multiproc::{Barrier, Event, Lock, RLock, RawArray, RawValue, Semaphore, Value};
use nix::libc;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

const PYTHON_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/sync_bench.py");

/// Operations per run of an uncontended loop.
const LOOP_N: u64 = 5_000_000;
const LOOP_RUNS: usize = 7;
/// Operations per process per contended run.
const CONTENDED_N: u64 = 2_000_000;
const CONTENDED_RUNS: usize = 5;
/// Round trips per run.
const RT_N: u64 = 20_000;
const RT_RUNS: usize = 5;

/// `CLOCK_MONOTONIC` in nanoseconds: comparable between processes.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `f(n)` `runs` times (after one warm-up run); nanoseconds per operation.
fn per_op(runs: usize, n: u64, mut f: impl FnMut(u64)) -> Stats {
    f(n / 10);
    let samples = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f(n);
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    Stats::of(samples)
}

// ---------------------------------------------------------------------------------
// The floors: a futex mutex and a futex ping-pong on shared memory, POSIX sem_t.

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: a valid, aligned u32 in shared memory; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: a valid, aligned u32 in shared memory.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
}

/// Drepper's futex mutex ("Futexes are tricky", mutex 3), with 100 spins before
/// sleeping: 0 free, 1 locked, 2 locked with sleepers.
fn raw_lock(word: &AtomicU32) {
    for _ in 0..100 {
        if word
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        std::hint::spin_loop();
    }
    let mut c = word.swap(2, Ordering::Acquire);
    while c != 0 {
        futex_wait(word, 2);
        c = word.swap(2, Ordering::Acquire);
    }
}

fn raw_unlock(word: &AtomicU32) {
    if word.swap(0, Ordering::Release) == 2 {
        futex_wake(word, 1);
    }
}

/// A process-shared POSIX semaphore in a shared array (32 bytes, aligned to 8).
fn sem_t(mem: &RawArray<u64>) -> *mut libc::sem_t {
    mem.atomics().as_ptr() as *mut libc::sem_t
}

// ---------------------------------------------------------------------------------
// The contending workers: each meets the parent at the barrier, does `n` operations,
// and returns when it started and ended.

type Span = (u64, u64);

fn timed(start: &Barrier, f: impl FnOnce()) -> Span {
    start.wait().expect("the parent arrives");
    let t0 = now_ns();
    f();
    (t0, now_ns())
}

#[multiproc::worker]
fn contend_lock(lock: Lock, start: Barrier, n: u64) -> Span {
    timed(&start, || {
        for _ in 0..n {
            let _ = lock.acquire();
            let _ = lock.release();
        }
    })
}

#[multiproc::worker]
fn contend_rlock(lock: RLock, start: Barrier, n: u64) -> Span {
    timed(&start, || {
        for _ in 0..n {
            let _ = lock.acquire();
            let _ = lock.release();
        }
    })
}

#[multiproc::worker]
fn contend_semaphore(sem: Semaphore, start: Barrier, n: u64) -> Span {
    timed(&start, || {
        for _ in 0..n {
            sem.acquire();
            let _ = sem.release();
        }
    })
}

#[multiproc::worker]
fn contend_value(value: Value<u64>, start: Barrier, n: u64) -> Span {
    timed(&start, || {
        for _ in 0..n {
            let guard = match value.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            guard.set(guard.get() + 1);
        }
    })
}

#[multiproc::worker]
fn contend_futex(word: RawValue<u32>, start: Barrier, n: u64) -> Span {
    let word = word.atomic();
    timed(&start, || {
        for _ in 0..n {
            raw_lock(word);
            raw_unlock(word);
        }
    })
}

#[multiproc::worker]
fn contend_sem_t(mem: RawArray<u64>, start: Barrier, n: u64) -> Span {
    let sem = sem_t(&mem);
    timed(&start, || {
        for _ in 0..n {
            // SAFETY: initialized by the parent with pshared = 1, in shared memory that
            // `mem` keeps mapped.
            unsafe {
                libc::sem_wait(sem);
                libc::sem_post(sem);
            }
        }
    })
}

#[multiproc::worker]
fn contend_atomic(counter: RawValue<u64>, start: Barrier, n: u64) -> Span {
    let counter = counter.atomic();
    timed(&start, || {
        for _ in 0..n {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Runs `child` in a worker and `mine` here, `runs` times; nanoseconds per operation
/// of the pair (2n operations per run). With two CPUs or more, the worker runs on CPU 1
/// and this process on CPU 0, so that they really run at the same time (on one CPU
/// they would take turns, each mostly alone with the lock).
fn contended(
    runs: usize,
    n: u64,
    spawn: impl Fn(Barrier, u64) -> multiproc::Result<multiproc::Process<Span>>,
    mut mine: impl FnMut(u64),
) -> Stats {
    let saved = sched_getaffinity(Pid::from_raw(0)).expect("the CPU mask");
    let two_cpus = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let samples = (0..=runs)
        .map(|_| {
            let start = Barrier::new(2).expect("a barrier");
            // The child inherits the mask it is started with.
            if two_cpus {
                pin(Some(1));
            }
            let child = spawn(start.clone(), n).expect("spawn of the contender");
            if two_cpus {
                pin(Some(0));
            }
            let (t0, t1) = timed(&start, || mine(n));
            let (c0, c1) = child.join_value().expect("the contender's span");
            (t1.max(c1) - t0.min(c0)) as f64 / (2 * n) as f64
        })
        .collect::<Vec<_>>();
    sched_setaffinity(Pid::from_raw(0), &saved).expect("restoring the CPU mask");
    // The first run warms up.
    Stats::of(samples[1..].to_vec())
}

// ---------------------------------------------------------------------------------
// Round trips.

fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu).expect("a CPU number in range");
        sched_setaffinity(Pid::from_raw(0), &set).expect("pinning to a CPU");
    }
}

/// Answers `n` pings: waits for `ping`, clears it, sets `pong`.
#[multiproc::worker]
fn event_echo(ping: Event, pong: Event, start: Barrier, n: u64, cpu: Option<usize>) {
    pin(cpu);
    start.wait().expect("the parent arrives");
    for _ in 0..n {
        ping.wait();
        ping.clear();
        pong.set();
    }
}

/// The same with two futex words: 0 → 1 wakes the other side, which resets it.
#[multiproc::worker]
fn futex_echo(words: RawArray<u32>, start: Barrier, n: u64, cpu: Option<usize>) {
    pin(cpu);
    let words = words.atomics();
    start.wait().expect("the parent arrives");
    for _ in 0..n {
        futex_recv(&words[0]);
        futex_send(&words[1]);
    }
}

fn futex_send(word: &AtomicU32) {
    word.store(1, Ordering::Release);
    futex_wake(word, 1);
}

fn futex_recv(word: &AtomicU32) {
    while word.load(Ordering::Acquire) == 0 {
        futex_wait(word, 0);
    }
    word.store(0, Ordering::Relaxed);
}

/// Nanoseconds per round trip, with the child pinned to `child_cpu` and this thread to
/// `my_cpu`.
fn round_trips(my_cpu: Option<usize>, child_cpu: Option<usize>, futex: bool) -> Stats {
    let saved = sched_getaffinity(Pid::from_raw(0)).expect("the CPU mask");
    pin(my_cpu);
    let samples = (0..=RT_RUNS)
        .map(|_| {
            let start = Barrier::new(2).expect("a barrier");
            let elapsed = if futex {
                let words = RawArray::<u32>::zeroed(2).expect("shared words");
                let child = futex_echo::spawn(words.clone(), start.clone(), RT_N, child_cpu)
                    .expect("spawn of the echo");
                let w = words.atomics();
                start.wait().expect("the child arrives");
                let t = Instant::now();
                for _ in 0..RT_N {
                    futex_send(&w[0]);
                    futex_recv(&w[1]);
                }
                let e = t.elapsed();
                child.join().expect("the echo ends");
                e
            } else {
                let (ping, pong) = (Event::new().expect("event"), Event::new().expect("event"));
                let child =
                    event_echo::spawn(ping.clone(), pong.clone(), start.clone(), RT_N, child_cpu)
                        .expect("spawn of the echo");
                start.wait().expect("the child arrives");
                let t = Instant::now();
                for _ in 0..RT_N {
                    ping.set();
                    pong.wait();
                    pong.clear();
                }
                let e = t.elapsed();
                child.join().expect("the echo ends");
                e
            };
            elapsed.as_nanos() as f64 / RT_N as f64
        })
        .collect::<Vec<_>>();
    sched_setaffinity(Pid::from_raw(0), &saved).expect("restoring the CPU mask");
    Stats::of(samples[1..].to_vec())
}

// ---------------------------------------------------------------------------------

/// How a row reads its figures.
#[derive(Clone, Copy, PartialEq)]
enum Unit {
    /// Throughput: millions of operations per second (higher is better).
    Mops,
    /// Latency: microseconds per round trip (lower is better).
    Micros,
}

fn show(unit: Unit, s: Option<Stats>) -> String {
    match (unit, s) {
        (_, None) => "n/a".to_owned(),
        (Unit::Mops, Some(s)) => format!("{:.1} M/s", 1e3 / s.median),
        (Unit::Micros, Some(s)) => format!("{:.2} µs", s.median / 1e3),
    }
}

struct Row {
    figure: &'static str,
    unit: Unit,
    ours: Option<Stats>,
    floor: Option<Stats>,
    floor_name: &'static str,
    python: Option<Stats>,
}

fn main() {
    let started = Instant::now();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut details: Vec<(String, Stats)> = Vec::new();
    let mut note = |name: &str, s: Stats| {
        details.push((name.to_owned(), s));
        s
    };

    eprintln!("uncontended loops ({LOOP_RUNS} runs of {LOOP_N})...");
    let lock = Lock::new().expect("a lock");
    let lock_alone = note(
        "Lock acquire+release",
        per_op(LOOP_RUNS, LOOP_N, |n| {
            for _ in 0..n {
                let _ = black_box(&lock).acquire();
                let _ = black_box(&lock).release();
            }
        }),
    );
    let guard_alone = note(
        "Lock lock() guard",
        per_op(LOOP_RUNS, LOOP_N, |n| {
            for _ in 0..n {
                drop(black_box(&lock).lock());
            }
        }),
    );
    let rlock = RLock::new().expect("an rlock");
    let rlock_alone = note(
        "RLock acquire+release",
        per_op(LOOP_RUNS, LOOP_N, |n| {
            for _ in 0..n {
                let _ = black_box(&rlock).acquire();
                let _ = black_box(&rlock).release();
            }
        }),
    );
    let sem = Semaphore::new(1).expect("a semaphore");
    let sem_alone = note(
        "Semaphore acquire+release",
        per_op(LOOP_RUNS, LOOP_N, |n| {
            for _ in 0..n {
                black_box(&sem).acquire();
                let _ = black_box(&sem).release();
            }
        }),
    );
    let value = Value::new(0u64).expect("a value");
    let value_alone = note(
        "Value<u64> locked increment",
        per_op(LOOP_RUNS, LOOP_N, |n| {
            for _ in 0..n {
                let g = match black_box(&value).lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                g.set(g.get() + 1);
            }
        }),
    );
    let word = RawValue::new(0u32).expect("a word");
    let futex_alone = note(
        "floor: futex mutex",
        per_op(LOOP_RUNS, LOOP_N, |n| {
            let w = black_box(word.atomic());
            for _ in 0..n {
                raw_lock(w);
                raw_unlock(w);
            }
        }),
    );
    let sem_mem = RawArray::<u64>::zeroed(4).expect("shared memory for a sem_t");
    // SAFETY: 32 bytes of shared memory, aligned to 8, initialized once, process-shared.
    unsafe { libc::sem_init(sem_t(&sem_mem), 1, 1) };
    let sem_t_alone = note(
        "floor: sem_t wait+post",
        per_op(LOOP_RUNS, LOOP_N, |n| {
            let s = sem_t(&sem_mem);
            for _ in 0..n {
                // SAFETY: initialized above.
                unsafe {
                    libc::sem_wait(s);
                    libc::sem_post(s);
                }
            }
        }),
    );
    let counter = RawValue::new(0u64).expect("a counter");
    let atomic_alone = note(
        "floor: atomic fetch_add",
        per_op(LOOP_RUNS, LOOP_N, |n| {
            let c: &AtomicU64 = black_box(counter.atomic());
            for _ in 0..n {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }),
    );

    if std::env::var_os("SYNC_BENCH_QUICK").is_some() {
        for (name, s) in &details {
            println!("{name}: {:.1} ns", s.median);
        }
        return;
    }
    eprintln!("contended by 2 processes ({CONTENDED_RUNS} runs of 2 x {CONTENDED_N})...");
    let lock_2 = note(
        "Lock, 2 processes",
        contended(
            CONTENDED_RUNS,
            CONTENDED_N,
            |b, n| contend_lock::spawn(lock.clone(), b, n),
            |n| {
                for _ in 0..n {
                    let _ = lock.acquire();
                    let _ = lock.release();
                }
            },
        ),
    );
    let rlock_2 = note(
        "RLock, 2 processes",
        contended(
            CONTENDED_RUNS,
            CONTENDED_N,
            |b, n| contend_rlock::spawn(rlock.clone(), b, n),
            |n| {
                for _ in 0..n {
                    let _ = rlock.acquire();
                    let _ = rlock.release();
                }
            },
        ),
    );
    let sem_2 = note(
        "Semaphore(1), 2 processes",
        contended(
            CONTENDED_RUNS,
            CONTENDED_N,
            |b, n| contend_semaphore::spawn(sem.clone(), b, n),
            |n| {
                for _ in 0..n {
                    sem.acquire();
                    let _ = sem.release();
                }
            },
        ),
    );
    let value_2 = note(
        "Value<u64> locked increment, 2 processes",
        contended(
            CONTENDED_RUNS,
            CONTENDED_N,
            |b, n| contend_value::spawn(value.clone(), b, n),
            |n| {
                for _ in 0..n {
                    let g = match value.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    g.set(g.get() + 1);
                }
            },
        ),
    );
    let futex_2 = note(
        "floor: futex mutex, 2 processes",
        contended(
            CONTENDED_RUNS,
            CONTENDED_N,
            |b, n| contend_futex::spawn(word.clone(), b, n),
            |n| {
                let w = word.atomic();
                for _ in 0..n {
                    raw_lock(w);
                    raw_unlock(w);
                }
            },
        ),
    );
    let sem_t_2 = note(
        "floor: sem_t, 2 processes",
        contended(
            CONTENDED_RUNS,
            CONTENDED_N,
            |b, n| contend_sem_t::spawn(sem_mem.clone(), b, n),
            |n| {
                let s = sem_t(&sem_mem);
                for _ in 0..n {
                    // SAFETY: initialized above.
                    unsafe {
                        libc::sem_wait(s);
                        libc::sem_post(s);
                    }
                }
            },
        ),
    );
    let atomic_2 = note(
        "floor: atomic fetch_add, 2 processes",
        contended(
            CONTENDED_RUNS,
            CONTENDED_N,
            |b, n| contend_atomic::spawn(counter.clone(), b, n),
            |n| {
                let c = counter.atomic();
                for _ in 0..n {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            },
        ),
    );

    eprintln!("round trips ({RT_RUNS} runs of {RT_N})...");
    let two_cpus = cpus >= 2;
    let event_same = note(
        "Event round trip, one CPU",
        round_trips(Some(0), Some(0), false),
    );
    let futex_same = note(
        "floor: futex ping-pong, one CPU",
        round_trips(Some(0), Some(0), true),
    );
    let (event_apart, futex_apart) = if two_cpus {
        (
            Some(note(
                "Event round trip, two CPUs",
                round_trips(Some(0), Some(1), false),
            )),
            Some(note(
                "floor: futex ping-pong, two CPUs",
                round_trips(Some(0), Some(1), true),
            )),
        )
    } else {
        (None, None)
    };

    eprintln!("Python ({PYTHON_SCRIPT})...");
    let Python { stats: py, info } = match python(PYTHON_SCRIPT, &[]) {
        Ok(found) => found,
        Err(why) => {
            eprintln!("no Python figures: {why}");
            Python::default()
        }
    };
    let mut keys: Vec<&String> = py.keys().collect();
    keys.sort();
    for key in keys {
        details.push((format!("Python {key}"), py[key]));
    }
    let py_get = |key: &str| py.get(key).copied();

    println!();
    println!(
        "machine: {cpus} CPUs ({}), kernel {}, Python {}",
        cpu_model(),
        kernel(),
        info.get("python_version").map_or("n/a", String::as_str),
    );
    println!();
    println!("| measurement | runs | median | p10 | p90 |");
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in &details {
        println!(
            "| {name} | {} | {:.1} ns | {:.1} ns | {:.1} ns |",
            s.n, s.median, s.p10, s.p90
        );
    }

    let rows = [
        Row {
            figure: "Lock acquire+release, uncontended",
            unit: Unit::Mops,
            ours: Some(lock_alone),
            floor: Some(futex_alone),
            floor_name: "futex mutex",
            python: py_get("lock"),
        },
        Row {
            figure: "Lock via its guard, uncontended",
            unit: Unit::Mops,
            ours: Some(guard_alone),
            floor: Some(futex_alone),
            floor_name: "futex mutex",
            python: py_get("lock_with"),
        },
        Row {
            figure: "RLock acquire+release, uncontended",
            unit: Unit::Mops,
            ours: Some(rlock_alone),
            floor: Some(futex_alone),
            floor_name: "futex mutex",
            python: py_get("rlock"),
        },
        Row {
            figure: "Semaphore acquire+release, uncontended",
            unit: Unit::Mops,
            ours: Some(sem_alone),
            floor: Some(sem_t_alone),
            floor_name: "POSIX sem_t",
            python: py_get("semaphore"),
        },
        Row {
            figure: "Value<u64> += 1 under its lock, uncontended",
            unit: Unit::Mops,
            ours: Some(value_alone),
            floor: Some(atomic_alone),
            floor_name: "atomic fetch_add",
            python: py_get("value"),
        },
        Row {
            figure: "Lock, contended by 2 processes",
            unit: Unit::Mops,
            ours: Some(lock_2),
            floor: Some(futex_2),
            floor_name: "futex mutex",
            python: py_get("lock_2p"),
        },
        Row {
            figure: "RLock, contended by 2 processes",
            unit: Unit::Mops,
            ours: Some(rlock_2),
            floor: Some(futex_2),
            floor_name: "futex mutex",
            python: py_get("rlock_2p"),
        },
        Row {
            figure: "Semaphore(1), contended by 2 processes",
            unit: Unit::Mops,
            ours: Some(sem_2),
            floor: Some(sem_t_2),
            floor_name: "POSIX sem_t",
            python: py_get("semaphore_2p"),
        },
        Row {
            figure: "Value<u64> += 1 under its lock, 2 processes",
            unit: Unit::Mops,
            ours: Some(value_2),
            floor: Some(atomic_2),
            floor_name: "atomic fetch_add",
            python: py_get("value_2p"),
        },
        Row {
            figure: "Event set/wait round trip, one CPU",
            unit: Unit::Micros,
            ours: Some(event_same),
            floor: Some(futex_same),
            floor_name: "futex ping-pong",
            python: py_get("event_rt_same"),
        },
        Row {
            figure: "Event set/wait round trip, two CPUs",
            unit: Unit::Micros,
            ours: event_apart,
            floor: futex_apart,
            floor_name: "futex ping-pong",
            python: py_get("event_rt_apart"),
        },
    ];
    println!();
    println!("| figure | multiproc | floor | ours/floor | Python | ours/Python |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        let floor = match r.floor {
            Some(_) => format!("{} ({})", show(r.unit, r.floor), r.floor_name),
            None => "n/a".to_owned(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.figure,
            show(r.unit, r.ours),
            floor,
            ratio(r.floor, r.ours),
            show(r.unit, r.python),
            ratio(r.python, r.ours),
        );
    }
    println!();
    println!(
        "medians; M/s: million operations per second (contended: both processes together); \
         µs per round trip. Ratios: how many times faster ours is (below 1: slower). \
         Total time {:.0} s.",
        started.elapsed().as_secs_f64()
    );
}
