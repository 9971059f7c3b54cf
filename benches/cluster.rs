//! The pool with its workers on two Slurm nodes, beside the same pool on this machine,
//! Python's `multiprocessing.Pool(4)` and the raw floor, in the same run.
//!
//! ```text
//! cargo bench --bench cluster                                  # needs SLURM_CONF
//! MULTIPROC_BENCH_QUICK=1 cargo bench --bench cluster          # a smoke run
//! ```
//!
//! Four workers each way (2 nodes x 2 on Slurm). Measures `map` of tiny tasks with
//! chunk size 1 (aim: 100 k tasks/s or more on Slurm), the same with the default chunk
//! size (aim: within 1.5x of the local pool), and a pool's start + one task + close +
//! join (aim: under 1 s on two nodes). The floor is what the transport alone costs:
//! the same number of tiny frames sent through one loopback TCP connection and echoed
//! back in batches, as the pool's tasks and results travel. Python runs
//! `benches/python/cluster_bench.py` ("n/a" without `python3`). Medians; a markdown
//! table with the ratios at the end.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{Stats, cpu_model, kernel, python};
use multiproc::{Launcher, Pool, Slurm};

const PYTHON_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/python/cluster_bench.py"
);

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
    Stats::of_micros(&samples).per(1000)
}

/// `n` 16-byte frames to an echo thread over loopback TCP, in batches of 256, and
/// back: what moving the pool's tasks and results costs at the least.
fn tcp_floor(n: u64) -> std::io::Result<()> {
    const BATCH: u64 = 256;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; 4 + 16 * BATCH as usize];
        loop {
            if s.read_exact(&mut buf[..4]).is_err() {
                return Ok(());
            }
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            s.read_exact(&mut buf[4..4 + len])?;
            s.write_all(&buf[..4 + len])?;
        }
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut sent = 0;
    let mut frame = Vec::with_capacity(4 + 16 * BATCH as usize);
    let mut back = vec![0u8; 16 * BATCH as usize];
    while sent < n {
        let k = BATCH.min(n - sent);
        frame.clear();
        frame.extend_from_slice(&((16 * k) as u32).to_le_bytes());
        for i in sent..sent + k {
            frame.extend_from_slice(&i.to_le_bytes());
            frame.extend_from_slice(&(i * i).to_le_bytes());
        }
        s.write_all(&frame)?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        s.read_exact(&mut back[..u32::from_le_bytes(len) as usize])?;
        sent += k;
    }
    drop(s);
    echo.join()
        .map_err(|_| std::io::Error::other("echo panicked"))?
}

fn rate(tasks: u64, s: Option<Stats>) -> String {
    s.map_or("n/a".to_owned(), |s| {
        format!("{:.0} k/s", tasks as f64 / s.median)
    })
}

fn ms(s: Option<Stats>) -> String {
    s.map_or("n/a".to_owned(), |s| format!("{:.1} ms", s.median))
}

/// How many times longer `a` takes than `b`.
fn times(a: Option<Stats>, b: Option<Stats>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.median / b.median),
        _ => "n/a".to_owned(),
    }
}

fn slurm() -> Launcher {
    Slurm::new().nodes(2).tasks_per_node(2).into()
}

/// Map figures for a pool started by `launcher`: chunk size 1, default chunk size.
fn maps(launcher: Launcher, n: u64, runs: usize) -> multiproc::Result<(Stats, Stats)> {
    let pool = Pool::builder().processes(4).launcher(launcher).build()?;
    pool.map::<sqr>(0..1000)?;
    let c1 = timed(runs, || {
        let v = pool.map_chunked::<sqr>(0..n, 1).expect("map");
        assert_eq!(v.len(), n as usize);
    });
    let default = timed(runs, || {
        let v = pool.map::<sqr>(0..n).expect("map");
        assert_eq!(v.len(), n as usize);
    });
    pool.close();
    pool.join()?;
    Ok((c1, default))
}

fn start1(launcher: &Launcher, runs: usize) -> Stats {
    timed(runs, || {
        let pool = Pool::builder()
            .processes(4)
            .launcher(launcher.clone())
            .build()
            .expect("a pool");
        assert_eq!(pool.apply::<sqr>((3,)).expect("apply"), 9);
        pool.close();
        pool.join().expect("join");
    })
}

fn main() {
    let quick = std::env::var_os("MULTIPROC_BENCH_QUICK").is_some();
    let (n, runs, start_runs) = if quick {
        (2_000, 1, 1)
    } else {
        (100_000, 5, 5)
    };
    let has_slurm = std::env::var_os("SLURM_CONF").is_some();

    eprintln!("local pool, {n} tasks...");
    let (local_c1, local_default) = maps(Launcher::Local, n, runs).expect("a local pool");
    let local_start = start1(&Launcher::Local, start_runs);
    let (mut slurm_c1, mut slurm_default, mut slurm_start) = (None, None, None);
    if has_slurm {
        eprintln!("Slurm pool, 2 nodes x 2, {n} tasks...");
        match maps(slurm(), n, runs) {
            Ok((c1, default)) => {
                slurm_c1 = Some(c1);
                slurm_default = Some(default);
                slurm_start = Some(start1(&slurm(), start_runs));
            }
            Err(e) => eprintln!("no Slurm figures: {e}"),
        }
    } else {
        eprintln!("no Slurm figures: SLURM_CONF is not set");
    }
    eprintln!("floor: {n} frames over loopback TCP...");
    let floor = timed(runs, || tcp_floor(n).expect("the floor"));
    eprintln!("python...");
    let runs_arg = runs.to_string();
    let n_arg = n.to_string();
    let py = python(PYTHON_SCRIPT, &[&n_arg, &runs_arg])
        .map_err(|e| eprintln!("no Python figures: {e}"))
        .ok();
    let get = |key: &str| py.as_ref().and_then(|p| p.stats.get(key).copied());
    let version = py
        .as_ref()
        .and_then(|p| p.info.get("python_version").cloned())
        .unwrap_or_else(|| "n/a".to_owned());

    println!();
    println!(
        "cluster benchmark: 4 workers (Slurm: 2 loopback nodes x 2), {n} tasks, {} ({} CPUs), \
         Linux {}, Python {version}",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel()
    );
    println!();
    println!(
        "| figure | Slurm pool | local pool | time, Slurm / local | Python Pool(4), local | time, Python / Slurm | floor (TCP) | time, Slurm / floor | aim |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| map, tiny tasks, chunksize 1 | {} | {} | {} | {} | {} | {} | {} | ≥ 100 k/s |",
        rate(n, slurm_c1),
        rate(n, Some(local_c1)),
        times(slurm_c1, Some(local_c1)),
        rate(n, get("map_c1")),
        times(get("map_c1"), slurm_c1),
        rate(n, Some(floor)),
        times(slurm_c1, Some(floor)),
    );
    println!(
        "| map, tiny tasks, default chunksize | {} | {} | {} | {} | {} | | | ≤ 1.5x local |",
        rate(n, slurm_default),
        rate(n, Some(local_default)),
        times(slurm_default, Some(local_default)),
        rate(n, get("map_default")),
        times(get("map_default"), slurm_default),
    );
    println!(
        "| start + 1 task + close + join | {} | {} | {} | {} | {} | | | < 1 s |",
        ms(slurm_start),
        ms(Some(local_start)),
        times(slurm_start, Some(local_start)),
        ms(get("start1")),
        times(get("start1"), slurm_start),
    );
}
