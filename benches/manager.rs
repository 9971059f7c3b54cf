//! What the manager costs: starting a manager and getting a list proxy, and
//! `list.append` (`ListProxy::push`) from a child process, one blocking round trip each;
//! beside Python's `multiprocessing.Manager` doing the same in the same run.
//!
//! ```text
//! cargo bench --bench manager
//! ```
//!
//! Each append is a request and its response through a shared-memory pipe: after the
//! handshake on the Unix socket, the child hands the server one end of a `Pipe`, and
//! both sides then spin briefly (adaptively, as the pipes do) on the other's ring
//! before they sleep, so that a short round trip costs no system call, sleep or
//! wake-up on either side when each has a CPU.
//! Nothing is pipelined: `push` returns only after the server stored the item. The
//! Python side is `benches/python/manager_bench.py` ("n/a" without `python3`).

mod common;

use common::{Python, Stats, cpu_model, kernel, python, ratio};

use std::time::Instant;

use multiproc::{ListProxy, Manager};

const PYTHON_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/python/manager_bench.py"
);

const START_RUNS: usize = 15;
const APPEND_N: u64 = 50_000;
const APPEND_RUNS: usize = 5;

/// Appends `n` items, after one that opens the connection; nanoseconds per append.
#[multiproc::worker]
fn appender(list: ListProxy<u64>, n: u64) -> multiproc::Result<f64> {
    list.push(0)?;
    let start = Instant::now();
    for i in 0..n {
        list.push(i)?;
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}

fn main() -> multiproc::Result<()> {
    let started = Instant::now();
    eprintln!("Manager::start + list ({START_RUNS} runs)...");
    let mut samples = Vec::new();
    for _ in 0..START_RUNS {
        let start = Instant::now();
        let manager = Manager::start()?;
        let list = manager.list::<u64>()?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        drop(list);
        manager.shutdown()?;
    }
    let start_list = Stats::of(samples);

    eprintln!("list.append from a child ({APPEND_RUNS} runs of {APPEND_N})...");
    let manager = Manager::start()?;
    let mut samples = Vec::new();
    for _ in 0..APPEND_RUNS {
        let list = manager.list::<u64>()?;
        samples.push(appender::spawn(list.clone(), APPEND_N)?.join_value()?);
        assert_eq!(list.len()? as u64, APPEND_N + 1);
    }
    manager.shutdown()?;
    let append = Stats::of(samples);

    eprintln!("python3 {PYTHON_SCRIPT}...");
    let py = python(PYTHON_SCRIPT, &[]).unwrap_or_else(|e| {
        eprintln!("no Python figures: {e}");
        Python::default()
    });
    let py_start = py.stats.get("start_list_us").copied();
    let py_append = py.stats.get("append_child_ns").copied();

    let per_sec = |ns: f64| 1e9 / ns;
    println!("# Manager benchmark");
    println!();
    println!(
        "kernel {}, {}, {} CPUs; Python {} ({})",
        kernel(),
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        py.info.get("python_version").map_or("n/a", String::as_str),
        py.info.get("start_method").map_or("n/a", String::as_str),
    );
    println!();
    println!("| figure | multiproc | Python mp | Python / multiproc |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| Manager start + list proxy | {:.2} ms | {} | {} |",
        start_list.median / 1000.0,
        py_start.map_or("n/a".to_owned(), |s| format!("{:.2} ms", s.median / 1000.0)),
        ratio(py_start, Some(start_list)),
    );
    println!(
        "| list.append from a child | {:.0} k ops/s ({:.1} us) | {} | {} |",
        per_sec(append.median) / 1000.0,
        append.median / 1000.0,
        py_append.map_or("n/a".to_owned(), |s| format!(
            "{:.0} k ops/s ({:.1} us)",
            per_sec(s.median) / 1000.0,
            s.median / 1000.0
        )),
        ratio(py_append, Some(append)),
    );
    println!();
    println!("details (median, p10, p90):");
    for (name, s, unit) in [
        ("start + list, multiproc", start_list, "us"),
        ("append, multiproc", append, "ns"),
    ] {
        println!(
            "  {name}: {:.1} {unit} ({:.1}..{:.1}, n={})",
            s.median, s.p10, s.p90, s.n
        );
    }
    for (name, s, unit) in [
        ("start + list, Python", py_start, "us"),
        ("append, Python", py_append, "ns"),
    ] {
        if let Some(s) = s {
            println!(
                "  {name}: {:.1} {unit} ({:.1}..{:.1}, n={})",
                s.median, s.p10, s.p90, s.n
            );
        }
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
