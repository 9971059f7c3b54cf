//! What `SharedMemory` costs: a large read-only `f64` array reaching 8 worker processes
//! with no copy, and attaching to a block by name; beside the floor (the same fill and
//! sum in one process, a bare `shm_open` + `mmap`) and beside Python's
//! `multiprocessing.shared_memory` doing the same work in the same run.
//!
//! ```text
//! cargo bench --bench shared_memory
//! ```
//!
//! The fan-out figure is the time from creating the block, through filling it with
//! `i % 1024` and starting 8 workers that each attach by name and sum their eighth
//! through a typed view, to the last of the 8 sums being back; "8 workers, no data" is
//! the same with an 8-byte block, the start-up part of it. The Python side is
//! `benches/python/shared_memory_bench.py` (forkserver, `shm.buf.cast('d')`, no NumPy;
//! "n/a" without `python3`).
//!
//! Sizes from the environment (for a quick smoke run, e.g. `MULTIPROC_BENCH_SHM_MIB=16
//! MULTIPROC_BENCH_SHM_RUNS=1`): `MULTIPROC_BENCH_SHM_MIB` (1024: 1 GiB),
//! `MULTIPROC_BENCH_SHM_RUNS` (3), `MULTIPROC_BENCH_SHM_ATTACH_N` (20000).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Python, Stats, cpu_model, kernel, python, ratio};
use multiproc::SharedMemory;
use nix::libc;

const PYTHON_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/python/shared_memory_bench.py"
);
const WORKERS: usize = 8;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fill(values: &mut [f64]) {
    for (i, x) in values.iter_mut().enumerate() {
        *x = (i % 1024) as f64;
    }
}

/// Attaches to `name` and sums part `part` of `parts` of its `f64`s.
#[multiproc::worker]
fn sum_part(name: String, part: usize, parts: usize) -> Result<f64, String> {
    let shm = SharedMemory::open(&name).map_err(|e| e.to_string())?;
    let values = shm.as_slice::<f64>();
    let n = values.len() / parts;
    Ok(values[part * n..(part + 1) * n].iter().sum())
}

/// Create, fill, 8 workers summing their eighth; the time and the total.
fn fanout(bytes: usize) -> (Duration, f64) {
    let start = Instant::now();
    let mut shm = SharedMemory::create(bytes).expect("a block");
    fill(shm.as_mut_slice());
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| sum_part::spawn(shm.name().to_owned(), i, WORKERS).expect("a worker"))
        .collect();
    let total: f64 = workers
        .into_iter()
        .map(|w| w.join_value().expect("a sum"))
        .sum();
    let elapsed = start.elapsed();
    shm.unlink().expect("unlink");
    (elapsed, total)
}

/// The floor: the same fill and sum in this process, in private memory.
fn in_process(bytes: usize) -> (Duration, f64) {
    let start = Instant::now();
    let mut values = vec![0f64; bytes / 8];
    fill(&mut values);
    let total: f64 = values
        .chunks(values.len() / WORKERS)
        .map(|c| c.iter().sum::<f64>())
        .sum();
    (start.elapsed(), black_box(total))
}

/// The floor of attaching: `shm_open` + `fstat` + `mmap` + one 8-byte read + `munmap`
/// + `close`, bare.
fn raw_attach(name: &std::ffi::CStr) -> u64 {
    // SAFETY: plain system calls on a valid name; the mapping is read inside its length
    // and unmapped before return.
    unsafe {
        let fd = libc::shm_open(name.as_ptr(), libc::O_RDWR, 0);
        assert!(fd >= 0);
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st);
        let len = st.st_size as usize;
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let word = std::ptr::read_volatile(p.cast::<u64>());
        libc::munmap(p, len);
        libc::close(fd);
        word
    }
}

fn per_op(n: usize, mut f: impl FnMut()) -> Stats {
    let samples = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    Stats::of(samples)
}

fn ms(samples: Vec<Duration>) -> Stats {
    Stats::of(samples.iter().map(|d| d.as_secs_f64() * 1e3).collect())
}

fn main() {
    let mib = env("MULTIPROC_BENCH_SHM_MIB", 1024);
    let runs = env("MULTIPROC_BENCH_SHM_RUNS", 3).max(1);
    let attach_n = env("MULTIPROC_BENCH_SHM_ATTACH_N", 20_000).max(1);
    let bytes = mib << 20;
    let expected = (bytes / 8 / 1024) as f64 * (0..1024).sum::<i32>() as f64;

    eprintln!("fan-out of {mib} MiB to {WORKERS} workers ({runs} runs)...");
    fanout(8);
    let spawn8 = ms((0..runs).map(|_| fanout(8).0).collect());
    let ours = ms((0..runs)
        .map(|_| {
            let (t, total) = fanout(bytes);
            assert_eq!(total, expected);
            t
        })
        .collect());
    let floor = ms((0..runs)
        .map(|_| {
            let (t, total) = in_process(bytes);
            assert_eq!(total, expected);
            t
        })
        .collect());

    eprintln!("attach + read ({attach_n} per run)...");
    let shm = SharedMemory::create(4096).expect("a block");
    shm.write(0, b"12345678").expect("a write");
    let attach = per_op(attach_n, || {
        let other = SharedMemory::open(shm.name()).expect("attach");
        let mut word = [0u8; 8];
        other.read(0, &mut word).expect("a read");
        black_box(word);
    });
    let c_name = std::ffi::CString::new(format!("/{}", shm.name())).expect("a name");
    let raw = per_op(attach_n, || {
        black_box(raw_attach(&c_name));
    });
    shm.unlink().expect("unlink");

    eprintln!("Python ({PYTHON_SCRIPT})...");
    let mib_s = mib.to_string();
    let runs_s = runs.to_string();
    let attach_s = attach_n.to_string();
    // SAFETY: set before the script starts, in this single-threaded part of main.
    unsafe {
        std::env::set_var("MULTIPROC_BENCH_SHM_MIB", &mib_s);
        std::env::set_var("MULTIPROC_BENCH_SHM_RUNS", &runs_s);
        std::env::set_var("MULTIPROC_BENCH_SHM_ATTACH_N", &attach_s);
    }
    let Python { stats: py, info } = python(PYTHON_SCRIPT, &[]).unwrap_or_else(|why| {
        eprintln!("no Python figures: {why}");
        Python::default()
    });
    let py_get = |key: &str| py.get(key).copied();

    println!();
    println!(
        "machine: {} CPUs ({}), kernel {}, Python {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model(),
        kernel(),
        info.get("python_version").map_or("n/a", String::as_str),
    );
    println!();
    println!("| measurement | multiproc | floor | Python | ours/floor | Python/ours |");
    println!("|---|---:|---:|---:|---:|---:|");
    let show = |s: Option<Stats>, unit: &str| {
        s.map_or("n/a".to_owned(), |s| format!("{:.1} {unit}", s.median))
    };
    let rows = [
        (
            format!("{mib} MiB f64 array: create + fill + {WORKERS} workers sum it"),
            Some(ours),
            Some(floor),
            py_get("fanout_ms"),
            "ms",
            "one in-process fill + sum",
        ),
        (
            format!("{WORKERS} workers, no data (start-up part)"),
            Some(spawn8),
            None,
            py_get("spawn8_ms"),
            "ms",
            "",
        ),
        (
            "attach by name + 8-byte read + close".to_owned(),
            Some(attach),
            Some(raw),
            py_get("attach_us"),
            "µs",
            "bare shm_open + mmap",
        ),
    ];
    for (figure, ours, floor, python, unit, floor_name) in rows {
        let floor_text = match floor {
            Some(_) => format!("{} ({floor_name})", show(floor, unit)),
            None => "n/a".to_owned(),
        };
        println!(
            "| {figure} | {} | {floor_text} | {} | {} | {} |",
            show(ours, unit),
            show(python, unit),
            ratio(ours, floor),
            ratio(python, ours),
        );
    }
    println!();
    println!("medians of {runs} runs (fan-out) and 5 runs (attach); p10/p90:");
    for (name, s) in [
        ("fan-out", Some(ours)),
        ("floor", Some(floor)),
        ("no data", Some(spawn8)),
        ("attach", Some(attach)),
        ("raw attach", Some(raw)),
        ("Python fan-out", py_get("fanout_ms")),
        ("Python no data", py_get("spawn8_ms")),
        ("Python attach", py_get("attach_us")),
    ] {
        if let Some(s) = s {
            println!("  {name}: {:.2} [{:.2}, {:.2}]", s.median, s.p10, s.p90);
        }
    }
}
