//! What starting a worker costs: spawn + join of a no-op worker with each start method
//! (the fork server and the exec path), against the floor (`posix_spawn` + `waitpid`
//! of this same binary doing nothing) and against Python's `multiprocessing` with the
//! fork, forkserver and spawn start methods.
//!
//! ```text
//! cargo bench --bench spawn
//! SPAWN_BENCH_QUICK=1 cargo bench --bench spawn   # a few runs of each: a smoke test
//! ```
//!
//! One command, about a minute. It measures:
//!
//! 1. spawn + join (`noop::process(x).with_start_method(m)?`, started, then
//!    `join_value()`) of `fn noop(x: u64) -> u64`, with `StartMethod::ForkServer` and
//!    with `StartMethod::Spawn`, alternated run by run with the floor: `posix_spawn` of `/proc/self/exe --floor`
//!    (which returns from `main` at once) with the same environment, then `waitpid`;
//! 2. the same with this process pinned to CPU 0 (children inherit the mask), so that
//!    the parent's wake-up at the child's exit is not a cross-CPU one;
//! 3. the same while the parent holds 1 GiB of touched memory;
//! 4. a batch: 32 started, then all 32 joined (ours with each method, and the floor);
//! 5. Python, through `python3 benches/python/spawn_bench.py` (the same work with each
//!    start method, free, pinned and with 1 GiB; "n/a" if `python3` is missing).
//!
//! 1 to 3 are 200 runs each (after 20 warm-up runs), taken in 4 rounds of one block of
//! 50 per condition, so that drift over time hits the three alike (`SPAWN_BENCH_QUICK`:
//! 8 runs, 2 rounds, and Python with `--quick`). Batches are 20 runs
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

use multiproc::StartMethod;

/// The argument that makes this binary return from `main` at once: the floor's child.
const FLOOR_ARG: &str = "--floor";

const BATCH: usize = 32;
const GIB: usize = 1 << 30;
const PAGE: usize = 4096;

/// How many runs of each kind: the full measurement, or a smoke test.
#[derive(Clone, Copy)]
struct Plan {
    runs: usize,
    /// The runs of each condition are taken in this many blocks, in turn.
    rounds: usize,
    warmup: usize,
    batch_runs: usize,
    batch_warmup: usize,
    quick: bool,
}

impl Plan {
    fn from_env() -> Plan {
        if std::env::var_os("SPAWN_BENCH_QUICK").is_some() {
            Plan {
                runs: 8,
                rounds: 2,
                warmup: 2,
                batch_runs: 2,
                batch_warmup: 1,
                quick: true,
            }
        } else {
            Plan {
                runs: 200,
                rounds: 4,
                warmup: 20,
                batch_runs: 20,
                batch_warmup: 2,
                quick: false,
            }
        }
    }
}

/// The start methods measured, the fork server first.
const METHODS: [StartMethod; 2] = [StartMethod::ForkServer, StartMethod::Spawn];

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

fn ours_once(method: StartMethod, x: u64) -> Duration {
    let start = Instant::now();
    let p = noop::process(x)
        .with_start_method(method)
        .expect("an unstarted process takes a start method");
    p.start().expect("start of the noop worker");
    let value = p.join_value().expect("join of the noop worker");
    let elapsed = start.elapsed();
    assert_eq!(value, x, "the worker returned the wrong value");
    elapsed
}

fn ours_batch(method: StartMethod) -> Duration {
    let start = Instant::now();
    let ps: Vec<_> = (0..BATCH as u64)
        .map(|i| {
            let p = noop::process(i)
                .with_start_method(method)
                .expect("an unstarted process takes a start method");
            p.start().expect("start of the noop worker");
            p
        })
        .collect();
    let mut sum = 0;
    for p in &ps {
        sum += p.join_value().expect("join of the noop worker");
    }
    let elapsed = start.elapsed();
    assert_eq!(sum, (0..BATCH as u64).sum::<u64>());
    elapsed
}

/// Runs of ours (with each start method, in the order of [`METHODS`]) and of the
/// floor under one condition.
#[derive(Default)]
struct Series {
    ours: [Vec<Duration>; 2],
    floor: Vec<Duration>,
}

/// The medians of a series: ours with each method, then the floor.
type Measured = ([Stats; 2], Stats);

impl Series {
    /// `n` runs of each, alternated run by run (and which goes first, too) so that
    /// drift hits all alike.
    fn block(&mut self, floor: &Floor, n: usize) {
        for i in 0..n {
            if i % 2 == 0 {
                for (m, method) in METHODS.into_iter().enumerate() {
                    self.ours[m].push(ours_once(method, i as u64));
                }
                self.floor.push(floor.once());
            } else {
                self.floor.push(floor.once());
                for (m, method) in METHODS.into_iter().enumerate().rev() {
                    self.ours[m].push(ours_once(method, i as u64));
                }
            }
        }
    }

    fn stats(&self) -> Option<Measured> {
        (!self.floor.is_empty()).then(|| {
            (
                [
                    Stats::of_micros(&self.ours[0]),
                    Stats::of_micros(&self.ours[1]),
                ],
                Stats::of_micros(&self.floor),
            )
        })
    }
}

fn batches(plan: Plan, floor: &Floor) -> Measured {
    for _ in 0..plan.batch_warmup {
        for method in METHODS {
            ours_batch(method);
        }
        floor.batch();
    }
    let mut series = Series::default();
    for _ in 0..plan.batch_runs {
        for (m, method) in METHODS.into_iter().enumerate() {
            series.ours[m].push(ours_batch(method));
        }
        series.floor.push(floor.batch());
    }
    series.stats().expect("the batches were measured")
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
    /// Ours with each start method, in the order of [`METHODS`].
    ours: [Option<Stats>; 2],
    floor: Option<Stats>,
    fork: Option<Stats>,
    forkserver: Option<Stats>,
    spawn: Option<Stats>,
}

impl Row {
    fn of(figure: &'static str, measured: Option<Measured>) -> Row {
        Row {
            figure,
            ours: [measured.map(|m| m.0[0]), measured.map(|m| m.0[1])],
            floor: measured.map(|m| m.1),
            fork: None,
            forkserver: None,
            spawn: None,
        }
    }

    fn python(
        mut self,
        fork: Option<Stats>,
        forkserver: Option<Stats>,
        spawn: Option<Stats>,
    ) -> Row {
        (self.fork, self.forkserver, self.spawn) = (fork, forkserver, spawn);
        self
    }

    fn per(mut self, n: usize) -> Row {
        for s in self.ours.iter_mut().chain([
            &mut self.floor,
            &mut self.fork,
            &mut self.forkserver,
            &mut self.spawn,
        ]) {
            *s = s.map(|s| s.per(n));
        }
        self
    }

    fn print(&self) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.figure,
            fmt_opt(self.ours[0]),
            fmt_opt(self.ours[1]),
            fmt_opt(self.floor),
            ratio(self.ours[0], self.floor),
            ratio(self.ours[1], self.floor),
            fmt_opt(self.fork),
            fmt_opt(self.forkserver),
            fmt_opt(self.spawn),
            ratio(self.forkserver, self.ours[0]),
        );
    }
}

fn main() {
    // The floor's child: as little as a Rust program can do.
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(FLOOR_ARG)) {
        return;
    }
    let plan = Plan::from_env();
    let started = Instant::now();
    let floor = Floor::new();
    let mut details: Vec<(String, Stats)> = Vec::new();
    let mut note = |what: &str, (ours, base): Measured| {
        for (m, method) in METHODS.into_iter().enumerate() {
            details.push((format!("multiproc {} {what}", method.name()), ours[m]));
        }
        details.push((format!("floor {what}"), base));
    };

    // Free, pinned and with 1 GiB, in blocks taken in turn, so that the three
    // conditions are measured over the same stretch of time: on a shared VM the
    // speed drifts by 20% from one ten seconds to the next.
    eprintln!(
        "spawn + join: {} runs of ours (each start method) and of the floor, alternated, \
         each free, pinned and with 1 GiB, in {} rounds...",
        plan.runs, plan.rounds
    );
    for i in 0..plan.warmup {
        for method in METHODS {
            ours_once(method, i as u64);
        }
        floor.once();
    }
    let pin = Pin::new();
    let mut big_ok = true;
    let mut big_rss = None;
    let (mut free, mut pinned, mut big) = (Series::default(), Series::default(), Series::default());
    let block = plan.runs / plan.rounds;
    for _ in 0..plan.rounds {
        free.block(&floor, block);
        if let Some(pin) = &pin {
            if let Err(e) = pin.run(|| pinned.block(&floor, block)) {
                eprintln!("cannot pin to CPU 0 ({e})");
            }
        }
        if big_ok {
            match touched_gib() {
                Some(mem) => {
                    big_rss = big_rss.or_else(rss_mib);
                    big.block(&floor, block);
                    black_box(&mem);
                    drop(mem);
                }
                None => big_ok = false,
            }
        }
    }
    let free = free.stats().expect("the free runs were measured");
    note("spawn+join", free);
    let pinned = pinned.stats();
    if let Some(m) = pinned {
        note("spawn+join, pinned", m);
    }
    let big = big.stats();
    if let Some(m) = big {
        note("spawn+join, 1 GiB", m);
    }

    eprintln!("batches of {BATCH}, {} runs...", plan.batch_runs);
    let batch = batches(plan, &floor);
    note(&format!("batch of {BATCH}"), batch);

    eprintln!("Python ({PYTHON_SCRIPT})...");
    let py_args: &[&str] = if plan.quick { &["--quick"] } else { &[] };
    let Python {
        stats: py,
        info: py_info,
    } = match python(PYTHON_SCRIPT, py_args) {
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
        "| figure | multiproc forkserver | multiproc spawn | floor | forkserver/floor \
         | spawn/floor | Python fork | Python forkserver | Python spawn \
         | Python forkserver/ours forkserver |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rows = [
        Row::of("spawn+join, 1 process", Some(free)).python(
            py_get("fork"),
            py_get("forkserver"),
            py_get("spawn"),
        ),
        Row::of("spawn+join, pinned to CPU 0", pinned).python(py_get("fork_pinned"), None, None),
        Row::of("spawn+join, parent holds 1 GiB", big).python(
            py_get("fork_1g"),
            py_get("forkserver_1g"),
            py_get("spawn_1g"),
        ),
        Row::of("32 started then joined, per batch", Some(batch)).python(
            py_get("batch32_fork"),
            py_get("batch32_forkserver"),
            None,
        ),
        Row::of("32 started then joined, per process", Some(batch))
            .python(py_get("batch32_fork"), py_get("batch32_forkserver"), None)
            .per(BATCH),
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
