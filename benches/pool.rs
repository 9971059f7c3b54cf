//! The pool beside Python's `multiprocessing.Pool(2)`, in the same run.
//!
//! ```text
//! cargo bench --bench pool
//! ```
//!
//! Measures, with two workers: `map` of 100 k tiny tasks with chunk size 1, the same
//! with the default chunk size, 20 k `apply_async` then every `get`, and a pool's
//! start + one task + close + join. Python runs the same through
//! `python3 benches/python/pool_bench.py` ("n/a" if `python3` is missing). Each figure
//! is the median of its runs; it ends with a markdown table with the ratios.

mod common;

use std::time::{Duration, Instant};

use common::{Stats, cpu_model, kernel, python};
use multiproc::Pool;

const N_MAP: u64 = 100_000;
const N_APPLY: u64 = 20_000;
const RUNS: usize = 5;
const START_RUNS: usize = 20;

const PYTHON_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/pool_bench.py");

#[multiproc::worker]
fn sqr(x: u64) -> u64 {
    x * x
}

fn timed(runs: usize, mut f: impl FnMut()) -> Stats {
    let samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    // In milliseconds per run.
    Stats::of_micros(&samples).per(1000)
}

fn rate(tasks: u64, s: Option<Stats>) -> String {
    match s {
        Some(s) => format!("{:.0} k/s", tasks as f64 / s.median),
        None => "n/a".to_owned(),
    }
}

fn speedup(ours: Stats, theirs: Option<Stats>) -> String {
    match theirs {
        Some(t) => format!("{:.1}x", t.median / ours.median),
        None => "n/a".to_owned(),
    }
}

fn main() {
    let pool = Pool::new(2).expect("a pool");
    pool.map::<sqr>(0..1000).expect("warm-up");
    eprintln!("map, chunksize 1 ({RUNS} runs of {N_MAP})...");
    let map_c1 = timed(RUNS, || {
        let v = pool.map_chunked::<sqr>(0..N_MAP, 1).expect("map");
        assert_eq!(v.len(), N_MAP as usize);
    });
    eprintln!("map, default chunksize...");
    let map_default = timed(RUNS, || {
        let v = pool.map::<sqr>(0..N_MAP).expect("map");
        assert_eq!(v.len(), N_MAP as usize);
    });
    eprintln!("apply_async x {N_APPLY}...");
    let apply = timed(RUNS, || {
        let rs: Vec<_> = (0..N_APPLY)
            .map(|i| pool.apply_async::<sqr>((i,)).expect("apply_async"))
            .collect();
        for r in rs {
            r.get().expect("get");
        }
    });
    drop(pool);
    eprintln!("start + 1 task + close + join ({START_RUNS} runs)...");
    let start1 = timed(START_RUNS, || {
        let pool = Pool::new(2).expect("a pool");
        assert_eq!(pool.apply::<sqr>((3,)).expect("apply"), 9);
        pool.close();
        pool.join().expect("join");
    });

    eprintln!("python...");
    let py = match python(PYTHON_SCRIPT, &[]) {
        Ok(py) => Some(py),
        Err(e) => {
            eprintln!("no Python figures: {e}");
            None
        }
    };
    let get = |key: &str| py.as_ref().and_then(|p| p.stats.get(key).copied());
    let version = py
        .as_ref()
        .and_then(|p| p.info.get("python_version").cloned())
        .unwrap_or_else(|| "n/a".to_owned());

    println!();
    println!(
        "pool benchmark: 2 workers, {} ({} CPUs), Linux {}, Python {version}",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel()
    );
    println!();
    println!("| figure | multiproc | Python mp.Pool | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| map, 100 k tiny tasks, chunksize 1 | {} | {} | {} |",
        rate(N_MAP, Some(map_c1)),
        rate(N_MAP, get("map_c1")),
        speedup(map_c1, get("map_c1"))
    );
    println!(
        "| map, 100 k tiny tasks, default chunksize | {} | {} | {} |",
        rate(N_MAP, Some(map_default)),
        rate(N_MAP, get("map_default")),
        speedup(map_default, get("map_default"))
    );
    println!(
        "| apply_async x 20 k, then get | {} | {} | {} |",
        rate(N_APPLY, Some(apply)),
        rate(N_APPLY, get("apply_async")),
        speedup(apply, get("apply_async"))
    );
    let ms = |s: Option<Stats>| s.map_or("n/a".to_owned(), |s| format!("{:.2} ms", s.median));
    println!(
        "| start + 1 task + close + join | {} | fork {}, spawn {} | {} (vs fork) |",
        ms(Some(start1)),
        ms(get("start1")),
        ms(get("start1_spawn")),
        speedup(start1, get("start1"))
    );
}
