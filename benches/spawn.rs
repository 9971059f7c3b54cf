//! What starting a worker costs: spawn + join of a no-op worker, against the floor
//! (`posix_spawn` + `waitpid` of this same binary doing nothing) and against Python's
//! `multiprocessing` with the fork, forkserver and spawn start methods.
//!
//! ```text
//! cargo bench --bench spawn
//! ```
//!
//! One command, under a minute. It measures:
//!
//! 1. spawn + join (`noop::spawn(x)?.join_value()?`) of `fn noop(x: u64) -> u64`,
//!    alternated run by run with the floor: `posix_spawn` of `/proc/self/exe --floor`
//!    (which returns from `main` at once) with the same environment, then `waitpid`;
//! 2. the same with this process pinned to CPU 0 (children inherit the mask), so that
//!    the parent's wake-up at the child's exit is not a cross-CPU one;
//! 3. the same while the parent holds 1 GiB of touched memory;
//! 4. a batch: 32 started, then all 32 joined (ours and the floor);
//! 5. Python, through `python3 benches/python/spawn_bench.py` (the same work with each
//!    start method, free, pinned and with 1 GiB; "n/a" if `python3` is missing).
//!
//! 1 to 3 are 200 runs each (after 20 warm-up runs), taken in 4 rounds of one block of
//! 50 per condition, so that drift over time hits the three alike. Batches are 20 runs
//! after 2 warm-up runs. Each figure is a median; the details give p10 and p90 too. It
//! ends with a markdown table (the one in `benches/README.md`).

mod common;

use common::{Python, Stats, cpu_model, kernel, python, ratio};

use std::ffi::{CString, OsStr};
use std::hint::black_box;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, posix_spawn};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// The argument that makes this binary return from `main` at once: the floor's child.
const FLOOR_ARG: &str = "--floor";

const RUNS: usize = 200;
/// The runs of each condition are taken in this many blocks, in turn.
const ROUNDS: usize = 4;
const WARMUP: usize = 20;
const BATCH: usize = 32;
const BATCH_RUNS: usize = 20;
const BATCH_WARMUP: usize = 2;
const GIB: usize = 1 << 30;
const PAGE: usize = 4096;

const PYTHON_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/spawn_bench.py");

/// The worker measured: a small argument in, a small result back.
#[multiproc::worker]
fn noop(x: u64) -> u64 {
    x
}

/// `posix_spawn` of this binary with `--floor`, with everything prepared once.
struct Floor {
    actions: PosixSpawnFileActions,
    attr: PosixSpawnAttr,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl Floor {
    fn new() -> Floor {
        // The same argv[0] and environment as the runtime gives its children.
        let program = std::env::args_os()
            .next()
            .unwrap_or_else(|| OsStr::new("spawn-bench").to_owned());
        let argv = vec![
            CString::new(program.into_vec()).expect("argv[0] holds no NUL"),
            CString::new(FLOOR_ARG).expect("no NUL"),
        ];
        let env = std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).expect("environment entries hold no NUL")
            })
            .collect();
        Floor {
            actions: PosixSpawnFileActions::init().expect("posix_spawn_file_actions_init"),
            attr: PosixSpawnAttr::init().expect("posix_spawnattr_init"),
            argv,
            env,
        }
    }

    fn spawn(&self) -> Pid {
        posix_spawn(
            c"/proc/self/exe",
            &self.actions,
            &self.attr,
            &self.argv,
            &self.env,
        )
        .expect("posix_spawn of /proc/self/exe")
    }

    fn reap(pid: Pid) {
        match waitpid(pid, None).expect("waitpid of the floor's child") {
            WaitStatus::Exited(_, 0) => {}
            other => panic!("the floor's child ended with {other:?}"),
        }
    }

    fn once(&self) -> Duration {
        let start = Instant::now();
        Floor::reap(self.spawn());
        start.elapsed()
    }

    fn batch(&self) -> Duration {
        let start = Instant::now();
        let pids: Vec<Pid> = (0..BATCH).map(|_| self.spawn()).collect();
        for pid in pids {
            Floor::reap(pid);
        }
        start.elapsed()
    }
}

fn ours_once(x: u64) -> Duration {
    let start = Instant::now();
    let p = noop::spawn(x).expect("spawn of the noop worker");
    let value = p.join_value().expect("join of the noop worker");
    let elapsed = start.elapsed();
    assert_eq!(value, x, "the worker returned the wrong value");
    elapsed
}

fn ours_batch() -> Duration {
    let start = Instant::now();
    let ps: Vec<_> = (0..BATCH as u64)
        .map(|i| noop::spawn(i).expect("spawn of the noop worker"))
        .collect();
    let mut sum = 0;
    for p in &ps {
        sum += p.join_value().expect("join of the noop worker");
    }
    let elapsed = start.elapsed();
    assert_eq!(sum, (0..BATCH as u64).sum::<u64>());
    elapsed
}

/// Runs of ours and of the floor under one condition.
#[derive(Default)]
struct Series {
    ours: Vec<Duration>,
    floor: Vec<Duration>,
}

impl Series {
    /// `n` runs of each, alternated run by run (and which goes first, too) so that
    /// drift hits both alike.
    fn block(&mut self, floor: &Floor, n: usize) {
        for i in 0..n {
            if i % 2 == 0 {
                self.ours.push(ours_once(i as u64));
                self.floor.push(floor.once());
            } else {
                self.floor.push(floor.once());
                self.ours.push(ours_once(i as u64));
            }
        }
    }

    fn stats(&self) -> Option<(Stats, Stats)> {
        (!self.ours.is_empty())
            .then(|| (Stats::of_micros(&self.ours), Stats::of_micros(&self.floor)))
    }
}

fn batches(floor: &Floor) -> (Stats, Stats) {
    for _ in 0..BATCH_WARMUP {
        ours_batch();
        floor.batch();
    }
    let mut ours = Vec::with_capacity(BATCH_RUNS);
    let mut base = Vec::with_capacity(BATCH_RUNS);
    for _ in 0..BATCH_RUNS {
        ours.push(ours_batch());
        base.push(floor.batch());
    }
    (Stats::of_micros(&ours), Stats::of_micros(&base))
}

/// Pins this thread (the only one that starts children) to CPU 0 and back.
struct Pin {
    saved: CpuSet,
    cpu0: CpuSet,
}

impl Pin {
    /// `None` (with a message) if the mask cannot be read or CPU 0 cannot be used.
    fn new() -> Option<Pin> {
        let saved = match sched_getaffinity(Pid::from_raw(0)) {
            Ok(set) => set,
            Err(e) => {
                eprintln!("cannot read the CPU mask ({e}): no pinned figures");
                return None;
            }
        };
        let mut cpu0 = CpuSet::new();
        cpu0.set(0).expect("CPU 0 fits in a CpuSet");
        let pin = Pin { saved, cpu0 };
        if let Err(e) = pin.run(|| ()) {
            eprintln!("cannot pin to CPU 0 ({e}): no pinned figures");
            return None;
        }
        Some(pin)
    }

    /// Runs `f` pinned to CPU 0 (children inherit the mask), then restores the mask.
    fn run<T>(&self, f: impl FnOnce() -> T) -> nix::Result<T> {
        let me = Pid::from_raw(0);
        sched_setaffinity(me, &self.cpu0)?;
        let out = f();
        sched_setaffinity(me, &self.saved).expect("restoring the CPU mask");
        Ok(out)
    }
}

/// 1 GiB, one byte written per 4 KiB page so that every page is resident.
fn touched_gib() -> Option<Vec<u8>> {
    let mut big = Vec::new();
    if let Err(e) = big.try_reserve_exact(GIB) {
        eprintln!("cannot allocate 1 GiB ({e}): no 1 GiB figures");
        return None;
    }
    big.resize(GIB, 0);
    for i in (0..GIB).step_by(PAGE) {
        big[i] = 1;
    }
    Some(black_box(big))
}

/// This process's resident set, from /proc/self/status, for the record.
fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn fmt_time(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn fmt_opt(s: Option<Stats>) -> String {
    s.map_or_else(|| "n/a".to_owned(), |s| fmt_time(s.median))
}

/// One row of the summary table.
struct Row {
    figure: &'static str,
    ours: Option<Stats>,
    floor: Option<Stats>,
    fork: Option<Stats>,
    forkserver: Option<Stats>,
    spawn: Option<Stats>,
}

impl Row {
    fn print(&self) {
        let best = [self.fork, self.forkserver, self.spawn]
            .into_iter()
            .flatten()
            .min_by(|a, b| a.median.total_cmp(&b.median));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            self.figure,
            fmt_opt(self.ours),
            fmt_opt(self.floor),
            ratio(self.ours, self.floor),
            fmt_opt(self.fork),
            fmt_opt(self.forkserver),
            fmt_opt(self.spawn),
            ratio(best, self.ours),
        );
    }
}

fn main() {
    // The floor's child: as little as a Rust program can do.
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(FLOOR_ARG)) {
        return;
    }
    let started = Instant::now();
    let floor = Floor::new();
    let mut details: Vec<(String, Stats)> = Vec::new();

    // Free, pinned and with 1 GiB, in blocks taken in turn, so that the three
    // conditions are measured over the same stretch of time: on a shared VM the
    // speed drifts by 20% from one ten seconds to the next.
    eprintln!(
        "spawn + join: {RUNS} runs of ours and of the floor, alternated, each free, \
         pinned and with 1 GiB, in {ROUNDS} rounds..."
    );
    for i in 0..WARMUP {
        ours_once(i as u64);
        floor.once();
    }
    let pin = Pin::new();
    let mut big_ok = true;
    let mut big_rss = None;
    let (mut free, mut pinned, mut big) = (Series::default(), Series::default(), Series::default());
    for _ in 0..ROUNDS {
        free.block(&floor, RUNS / ROUNDS);
        if let Some(pin) = &pin {
            if let Err(e) = pin.run(|| pinned.block(&floor, RUNS / ROUNDS)) {
                eprintln!("cannot pin to CPU 0 ({e})");
            }
        }
        if big_ok {
            match touched_gib() {
                Some(mem) => {
                    big_rss = big_rss.or_else(rss_mib);
                    big.block(&floor, RUNS / ROUNDS);
                    black_box(&mem);
                    drop(mem);
                }
                None => big_ok = false,
            }
        }
    }
    let (ours_free, floor_free) = free.stats().expect("the free runs were measured");
    details.push(("multiproc spawn+join".into(), ours_free));
    details.push(("floor posix_spawn+waitpid".into(), floor_free));
    let pinned = pinned.stats();
    if let Some((ours, base)) = pinned {
        details.push(("multiproc spawn+join, pinned".into(), ours));
        details.push(("floor, pinned".into(), base));
    }
    let big = big.stats();
    if let Some((ours, base)) = big {
        details.push(("multiproc spawn+join, 1 GiB".into(), ours));
        details.push(("floor, 1 GiB".into(), base));
    }

    eprintln!("batches of {BATCH}, {BATCH_RUNS} runs...");
    let (ours_batch, floor_batch) = batches(&floor);
    details.push((format!("multiproc batch of {BATCH}"), ours_batch));
    details.push((format!("floor batch of {BATCH}"), floor_batch));

    eprintln!("Python ({PYTHON_SCRIPT}, about 30 s)...");
    let Python {
        stats: py,
        info: py_info,
    } = match python(PYTHON_SCRIPT, &[]) {
        Ok(found) => found,
        Err(why) => {
            eprintln!("no Python figures: {why}");
            Default::default()
        }
    };
    let mut py_keys: Vec<&String> = py.keys().collect();
    py_keys.sort();
    for key in py_keys {
        details.push((format!("Python {key}"), py[key]));
    }
    let py_get = |key: &str| py.get(key).copied();

    println!();
    println!(
        "machine: {} CPUs ({}), kernel {}, Python {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        kernel(),
        py_info.get("python_version").map_or("n/a", String::as_str),
    );
    if let Some(rss) = big_rss {
        println!("parent's resident set during the 1 GiB runs: {rss} MiB");
    }
    println!();
    println!("| measurement | runs | median | p10 | p90 |");
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in &details {
        println!(
            "| {name} | {} | {} | {} | {} |",
            s.n,
            fmt_time(s.median),
            fmt_time(s.p10),
            fmt_time(s.p90)
        );
    }

    println!();
    println!(
        "| figure | multiproc | floor | ours/floor | Python fork | Python forkserver \
         | Python spawn | Python/ours (best) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let rows = [
        Row {
            figure: "spawn+join, 1 process",
            ours: Some(ours_free),
            floor: Some(floor_free),
            fork: py_get("fork"),
            forkserver: py_get("forkserver"),
            spawn: py_get("spawn"),
        },
        Row {
            figure: "spawn+join, pinned to CPU 0",
            ours: pinned.map(|p| p.0),
            floor: pinned.map(|p| p.1),
            fork: py_get("fork_pinned"),
            forkserver: None,
            spawn: None,
        },
        Row {
            figure: "spawn+join, parent holds 1 GiB",
            ours: big.map(|b| b.0),
            floor: big.map(|b| b.1),
            fork: py_get("fork_1g"),
            forkserver: py_get("forkserver_1g"),
            spawn: py_get("spawn_1g"),
        },
        Row {
            figure: "32 started then joined, per batch",
            ours: Some(ours_batch),
            floor: Some(floor_batch),
            fork: py_get("batch32_fork"),
            forkserver: py_get("batch32_forkserver"),
            spawn: None,
        },
        Row {
            figure: "32 started then joined, per process",
            ours: Some(ours_batch.per(BATCH)),
            floor: Some(floor_batch.per(BATCH)),
            fork: py_get("batch32_fork").map(|s| s.per(BATCH)),
            forkserver: py_get("batch32_forkserver").map(|s| s.per(BATCH)),
            spawn: None,
        },
    ];
    for row in &rows {
        row.print();
    }
    println!();
    println!(
        "medians; n/a: not measured. Python's child returns no value; ours sends its \
         result back. Total time {:.0} s.",
        started.elapsed().as_secs_f64()
    );
}
