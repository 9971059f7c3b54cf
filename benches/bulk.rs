//! Large values between processes: 64 MiB `Vec<u8>`, `String` and `Vec<f64>` as a
//! worker's argument, as its result, as queue items (1 MiB and 64 MiB) and as a pipe
//! message, against the
//! floor (one in-process clone of the same value: the child must at least allocate and
//! fill its own copy) and against Python's `multiprocessing` in the same run.
//!
//! ```text
//! cargo bench --bench bulk
//! ```
//!
//! What is timed (GB/s are 64 MiB divided by the time; ratios divide GB/s):
//!
//! - argument: `take::spawn(value)?.join_value()?` of a worker that returns the
//!   value's length, minus the same for a no-op worker with a `u64` argument (medians);
//!   the value is cloned before the clock starts. Python: a forkserver `Process` with
//!   the `bytes` as argument, minus one with `None`.
//! - result: `make::spawn(len)?.join_value()?` of a worker that makes the value and
//!   returns it, minus the no-op spawn and minus making the value in-process. Python:
//!   `Pool(1).apply(make, (len,))` of a function returning `bytes`, minus `apply` of
//!   one returning `None` and minus making the `bytes`.
//! - queue: a child makes the items, says it is ready, waits for a go, then puts them
//!   (64 items of 1 MiB, or one of 64 MiB); the parent times from the go to the last
//!   `get`. Python: the same with an `mp.Queue` of `bytes` (fork context).
//! - pipe: the same with one 64 MiB message on a `Pipe` (`send`, then the parent's
//!   `recv`). Python: `Pipe()`'s `send_bytes` and `recv_bytes` (fork context).
//! - floor: `value.clone()` in this process.
//!
//! `BULK_RUNS=<n>` sets the runs per figure (default 7); a word after `--` keeps only
//! the measurements whose name contains it (and skips Python). The Python side is
//! `benches/python/bulk_bench.py` ("n/a" without `python3`).

mod common;

use common::{Python, Stats, cpu_model, kernel, python};

use std::time::Instant;

use multiproc::{Connection, Pipe, Queue};

const MIB: usize = 1 << 20;
const LEN: usize = 64 * MIB;
const PYTHON_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/bulk_bench.py");

fn runs() -> usize {
    std::env::var("BULK_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(7)
}

// ---------------------------------------------------------------------------------
// The values

/// The three kinds of value measured, each about `len` bytes.
trait Value: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + 'static {
    fn make(len: usize) -> Self;
    fn size(&self) -> usize;
}

impl Value for Vec<u8> {
    fn make(len: usize) -> Self {
        (0..len).map(|i| i as u8).collect()
    }
    fn size(&self) -> usize {
        self.len()
    }
}

impl Value for String {
    fn make(len: usize) -> Self {
        (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect()
    }
    fn size(&self) -> usize {
        self.len()
    }
}

impl Value for Vec<f64> {
    fn make(len: usize) -> Self {
        (0..len / 8).map(|i| i as f64 * 0.5).collect()
    }
    fn size(&self) -> usize {
        self.len() * 8
    }
}

// ---------------------------------------------------------------------------------
// Workers

#[multiproc::worker]
fn noop(x: u64) -> u64 {
    x
}

#[multiproc::worker]
fn take_bytes(v: Vec<u8>) -> usize {
    v.len()
}

#[multiproc::worker]
fn take_string(v: String) -> usize {
    v.len()
}

#[multiproc::worker]
fn take_floats(v: Vec<f64>) -> usize {
    v.len() * 8
}

#[multiproc::worker]
fn make_bytes(len: usize) -> Vec<u8> {
    Vec::<u8>::make(len)
}

#[multiproc::worker]
fn make_string(len: usize) -> String {
    String::make(len)
}

#[multiproc::worker]
fn make_floats(len: usize) -> Vec<f64> {
    Vec::<f64>::make(len)
}

/// Makes `count` items of `item` bytes, says it is ready, waits for the go, puts them.
fn put_items<T: Value>(q: Queue<T>, count: usize, item: usize, go: Connection<()>) {
    let items: Vec<T> = (0..count).map(|_| T::make(item)).collect();
    go.send(()).expect("ready");
    go.recv().expect("go");
    for v in items {
        q.put(v).expect("put");
    }
}

#[multiproc::worker]
fn put_bytes(q: Queue<Vec<u8>>, count: usize, item: usize, go: Connection<()>) {
    put_items(q, count, item, go);
}

#[multiproc::worker]
fn put_string(q: Queue<String>, count: usize, item: usize, go: Connection<()>) {
    put_items(q, count, item, go);
}

#[multiproc::worker]
fn put_floats(q: Queue<Vec<f64>>, count: usize, item: usize, go: Connection<()>) {
    put_items(q, count, item, go);
}

/// Makes a value of `len` bytes, says it is ready, waits for the go, sends it on `end`.
fn send_value<T: Value>(end: Connection<T>, len: usize, go: Connection<()>) {
    let value = T::make(len);
    go.send(()).expect("ready");
    go.recv().expect("go");
    end.send(value).expect("send");
}

#[multiproc::worker]
fn send_bytes(end: Connection<Vec<u8>>, len: usize, go: Connection<()>) {
    send_value(end, len, go);
}

#[multiproc::worker]
fn send_string(end: Connection<String>, len: usize, go: Connection<()>) {
    send_value(end, len, go);
}

#[multiproc::worker]
fn send_floats(end: Connection<Vec<f64>>, len: usize, go: Connection<()>) {
    send_value(end, len, go);
}

// ---------------------------------------------------------------------------------
// Measurements (seconds per run)

fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn series(mut f: impl FnMut() -> f64) -> Stats {
    f(); // warm-up
    Stats::of((0..runs()).map(|_| f()).collect())
}

fn noop_spawn() -> Stats {
    series(|| {
        time(|| {
            assert_eq!(
                noop::spawn(7).expect("spawn").join_value().expect("join"),
                7
            )
        })
    })
}

fn argument<T: Value>(spawn: fn(T) -> usize) -> Stats {
    let value = T::make(LEN);
    series(|| {
        let v = value.clone();
        time(|| assert_eq!(spawn(v), LEN))
    })
}

fn result<T: Value>(spawn: fn(usize) -> T) -> Stats {
    series(|| time(|| assert_eq!(spawn(LEN).size(), LEN)))
}

fn make_in_process<T: Value>() -> Stats {
    series(|| time(|| assert_eq!(std::hint::black_box(T::make(LEN)).size(), LEN)))
}

fn floor<T: Value>() -> Stats {
    let value = T::make(LEN);
    series(|| {
        let t = Instant::now();
        let copy = value.clone();
        let elapsed = t.elapsed().as_secs_f64();
        assert_eq!(copy.size(), LEN);
        elapsed
    })
}

fn queue<T: Value>(
    count: usize,
    spawn: fn(Queue<T>, usize, usize, Connection<()>) -> multiproc::Process<()>,
) -> Stats {
    series(|| {
        let q = Queue::new().expect("a queue");
        let (ours, theirs) = Pipe::new().expect("a pipe");
        let child = spawn(q.clone(), count, LEN / count, theirs);
        ours.recv().expect("ready");
        let t = Instant::now();
        ours.send(()).expect("go");
        let mut total = 0;
        for _ in 0..count {
            total += q.get().expect("get").size();
        }
        let elapsed = t.elapsed().as_secs_f64();
        assert_eq!(total, LEN);
        child.join_value().expect("join");
        elapsed
    })
}

fn pipe<T: Value>(
    spawn: fn(Connection<T>, usize, Connection<()>) -> multiproc::Process<()>,
) -> Stats {
    series(|| {
        let (ours, theirs) = Pipe::<T>::new().expect("a pipe");
        let (go, go_theirs) = Pipe::new().expect("a pipe");
        let child = spawn(theirs, LEN, go_theirs);
        go.recv().expect("ready");
        let t = Instant::now();
        go.send(()).expect("go");
        let size = ours.recv().expect("recv").size();
        let elapsed = t.elapsed().as_secs_f64();
        assert_eq!(size, LEN);
        child.join_value().expect("join");
        elapsed
    })
}

// ---------------------------------------------------------------------------------
// Report

/// GB/s of 64 MiB moved in `seconds`, less `minus` seconds.
fn gbps(seconds: f64, minus: f64) -> f64 {
    LEN as f64 / (seconds - minus).max(1e-9) / 1e9
}

struct Row {
    name: String,
    ours: Option<f64>,
    floor: Option<f64>,
    python: Option<f64>,
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} GB/s"))
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    }
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.to_owned());
    let wanted = |name: &str| filter.as_ref().is_none_or(|w| name.contains(w.as_str()));
    let started = Instant::now();
    let mut details: Vec<(String, Stats)> = Vec::new();
    let mut note = |name: &str, s: Stats| {
        details.push((name.to_owned(), s));
        s
    };

    eprintln!("no-op spawn...");
    let noop = note("multiproc no-op spawn+join (s)", noop_spawn()).median;

    let mut rows = Vec::new();
    let python = if filter.is_none() {
        eprintln!("python...");
        match python(PYTHON_SCRIPT, &[&LEN.to_string(), &runs().to_string()]) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("no Python figures: {e}");
                None
            }
        }
    } else {
        None
    };
    let py = |key: &str| -> Option<f64> {
        python
            .as_ref()
            .and_then(|p: &Python| p.stats.get(key))
            .map(|s| s.median)
    };
    let py_noop_process = py("process_noop");
    let py_noop_apply = py("pool_noop");
    let py_make = py("make_bytes");

    macro_rules! kind {
        ($label:literal, $ty:ty, $take:ident, $make:ident, $put:ident, $send:ident, $py:literal) => {
            if wanted($label) {
                eprintln!("{}...", $label);
                let floor = gbps(
                    note(&format!("floor clone {}", $label), floor::<$ty>()).median,
                    0.0,
                );
                let arg = note(
                    &format!("argument {}", $label),
                    argument::<$ty>(|v| {
                        $take::spawn(v).expect("spawn").join_value().expect("join")
                    }),
                );
                let make = note(
                    &format!("make in-process {}", $label),
                    make_in_process::<$ty>(),
                );
                let res = note(
                    &format!("result {}", $label),
                    result::<$ty>(|n| $make::spawn(n).expect("spawn").join_value().expect("join")),
                );
                let q1 = note(
                    &format!("queue 1 MiB items {}", $label),
                    queue::<$ty>(64, |q, c, i, g| $put::spawn(q, c, i, g).expect("spawn")),
                );
                let q64 = note(
                    &format!("queue 64 MiB item {}", $label),
                    queue::<$ty>(1, |q, c, i, g| $put::spawn(q, c, i, g).expect("spawn")),
                );
                let pipe64 = note(
                    &format!("pipe 64 MiB message {}", $label),
                    pipe::<$ty>(|e, l, g| $send::spawn(e, l, g).expect("spawn")),
                );
                let with_py = $py;
                let pyv = |key: &str, minus: Option<f64>| -> Option<f64> {
                    if !with_py {
                        return None;
                    }
                    Some(gbps(py(key)?, minus?))
                };
                let make_py = py_make.zip(py_noop_apply).map(|(a, b)| a + b);
                rows.push(Row {
                    name: format!("{} argument", $label),
                    ours: Some(gbps(arg.median, noop)),
                    floor: Some(floor),
                    python: pyv("process_arg", py_noop_process),
                });
                rows.push(Row {
                    name: format!("{} result", $label),
                    ours: Some(gbps(res.median, noop + make.median)),
                    floor: Some(floor),
                    python: pyv("pool_result", make_py),
                });
                rows.push(Row {
                    name: format!("Queue<{}>, 1 MiB items", $label),
                    ours: Some(gbps(q1.median, 0.0)),
                    floor: Some(floor),
                    python: pyv("queue_1m", Some(0.0)),
                });
                rows.push(Row {
                    name: format!("Queue<{}>, one 64 MiB item", $label),
                    ours: Some(gbps(q64.median, 0.0)),
                    floor: Some(floor),
                    python: pyv("queue_64m", Some(0.0)),
                });
                rows.push(Row {
                    name: format!("Connection<{}>, one 64 MiB message", $label),
                    ours: Some(gbps(pipe64.median, 0.0)),
                    floor: Some(floor),
                    python: pyv("pipe_64m", Some(0.0)),
                });
            }
        };
    }
    kind!(
        "Vec<u8>",
        Vec<u8>,
        take_bytes,
        make_bytes,
        put_bytes,
        send_bytes,
        true
    );
    kind!(
        "String",
        String,
        take_string,
        make_string,
        put_string,
        send_string,
        false
    );
    kind!(
        "Vec<f64>",
        Vec<f64>,
        take_floats,
        make_floats,
        put_floats,
        send_floats,
        false
    );

    println!(
        "# details: median, p10, p90 (seconds per run), {} runs each",
        runs()
    );
    for (name, s) in &details {
        println!("{name}: {:.4} [{:.4}, {:.4}]", s.median, s.p10, s.p90);
    }
    println!();
    println!(
        "machine: {} CPUs ({}), kernel {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        kernel(),
        python
            .as_ref()
            .and_then(|p| p.info.get("python_version"))
            .map_or("no Python".to_owned(), |v| format!("Python {v}"))
    );
    println!();
    println!(
        "| 64 MiB | multiproc | floor (one clone) | ours/floor | Python 3 (`bytes`) | ours/Python |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.name,
            fmt(r.ours),
            fmt(r.floor),
            fmt_ratio(r.ours, r.floor),
            fmt(r.python),
            fmt_ratio(r.ours, r.python),
        );
    }
    eprintln!("done in {:.0?}", started.elapsed());
}
