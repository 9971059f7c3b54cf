//! What message passing costs: queue throughput, pipe round trips and a joinable
//! queue, against the raw floor (a bare socket pair, and a bare shared-memory ring,
//! between two processes of this same binary) and against Python's `multiprocessing`
//! doing the same work in the same run.
//!
//! ```text
//! cargo bench --bench queues
//! ```
//!
//! About a minute. It measures, two processes each time (a fresh child per run, which
//! says it is ready and waits for a go, so that the process start is not measured):
//!
//! 1. `Queue<[u8; 8]>`: the child puts, the parent gets; messages per second. Floors:
//!    8-byte `write`s into a socket pair read with 8-byte `read`s; a single-producer
//!    single-consumer ring of 8-byte slots in shared memory, spinning, no locks.
//!    The same with `put_many` and `get_many` of 256 items at a time (Python has no
//!    batch form: its figure is the one-at-a-time one).
//! 2. `Queue<ByteBuf>` of 1 MiB (`serde_bytes`, so that serde copies it in one piece);
//!    bytes per second. Floors: 1 MiB writes and reads on a socket pair; a ring of four
//!    1 MiB slots (one copy in, one copy out). Also `Queue<Vec<u8>>`, which serde
//!    encodes element by element.
//! 3. `Pipe` ping-pong of a `u64`: the round trip, with the two processes on different
//!    CPUs and on the same CPU (each pins itself with `sched_setaffinity`). Floors: 8
//!    bytes back and forth on a blocking socket pair; a word in shared memory, spinning
//!    (yielding the CPU every 64 checks, so that the same-CPU case makes progress).
//! 4. `JoinableQueue<u64>`: the child puts and then `join`s, the parent gets and calls
//!    `task_done` for each; items per second (floors: those of 1).
//! 5. Python, through `python3 benches/python/queues_bench.py` ("n/a" without
//!    `python3`).
//!
//! For instruction counts, `queues --callgrind single|batch|single8|batch8 <n>` (the bench binary,
//! run directly under `valgrind --tool=callgrind`) puts and gets `n` `u64`s in one
//! process (`[u8; 8]`s for the modes ending in 8), one at a time or 256 at a time, and measures nothing itself: the
//! difference between two runs of different `n`, divided by the difference in `n`,
//! is the count per item, without the setup.
//!
//! `cargo bench --bench queues -- <word>` runs only the measurements whose name
//! contains the word (and no Python).
//!
//! Each figure is the median of 7 runs of about 0.2 s (Python: 5 runs of 0.3 s); the
//! details give p10 and p90 too. `QUEUES_BENCH_QUICK=1` makes it 3 runs of 0.02 s, a
//! smoke run. It ends with a markdown table (the one in
//! `benches/README.md`).

mod common;

use common::{Python, Stats, cpu_model, kernel, python, ratio};

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::{Connection, JoinableQueue, Pipe, Queue};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::unistd::Pid;
use serde_bytes::ByteBuf;

/// The first argument of this binary run as a floor's child.
const FLOOR_ARG: &str = "--floor";
/// The first argument of this binary run as a loop for `valgrind --tool=callgrind`.
const CALLGRIND_ARG: &str = "--callgrind";
const RUNS: usize = 7;
/// How long one run should last.
const RUN_TIME: Duration = Duration::from_millis(200);
const MIB: usize = 1 << 20;
const PYTHON_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/python/queues_bench.py"
);

// ---------------------------------------------------------------------------------
// Statistics

/// Runs `run(n)` (which returns the elapsed time of `n` operations) with `n` sized
/// for [`RUN_TIME`], [`RUNS`] times; microseconds per operation.
fn measure(run: &mut dyn FnMut(u64) -> Duration) -> Stats {
    // A smoke run on a shared machine: short runs, and fewer of them.
    let quick = std::env::var_os("QUEUES_BENCH_QUICK").is_some();
    let (run_time, runs) = if quick {
        (RUN_TIME / 10, 3)
    } else {
        (RUN_TIME, RUNS)
    };
    let mut n = 100u64;
    loop {
        let t = run(n);
        if t >= run_time / 8 || n >= 1 << 32 {
            let per_op = t.as_secs_f64() / n as f64;
            n = ((run_time.as_secs_f64() / per_op) as u64).max(20);
            break;
        }
        n *= 4;
    }
    let runs: Vec<f64> = (0..runs)
        .map(|_| run(n).as_secs_f64() * 1e6 / n as f64)
        .collect();
    Stats::of(runs)
}

// ---------------------------------------------------------------------------------
// CPUs

fn set_cpus(cpus: &CpuSet) {
    sched_setaffinity(Pid::from_raw(0), cpus).expect("sched_setaffinity");
}

fn only(cpu: usize) -> CpuSet {
    let mut set = CpuSet::new();
    set.set(cpu).expect("a CPU number in range");
    set
}

/// Runs `f` pinned to `cpu`, then restores the mask.
fn pinned<T>(cpu: usize, f: impl FnOnce() -> T) -> T {
    let saved = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    set_cpus(&only(cpu));
    let out = f();
    set_cpus(&saved);
    out
}

fn cpu_count() -> usize {
    sched_getaffinity(Pid::from_raw(0)).map_or(1, |set| {
        (0..CpuSet::count())
            .filter(|c| set.is_set(*c).unwrap_or(false))
            .count()
    })
}

// ---------------------------------------------------------------------------------
// Ours

/// Says it is ready, waits for the go, then puts `n` 8-byte items.
#[multiproc::worker]
fn put8(q: Queue<[u8; 8]>, n: u64, go: Connection<()>) {
    go.send(()).expect("ready");
    go.recv().expect("go");
    for i in 0..n {
        q.put(i.to_le_bytes()).expect("put");
    }
}

/// Items per `put_many` and most per `get_many` in the batch figure.
const BATCH: u64 = 256;

/// As `put8`, with `put_many` of [`BATCH`] items at a time.
#[multiproc::worker]
fn put8_many(q: Queue<[u8; 8]>, n: u64, go: Connection<()>) {
    go.send(()).expect("ready");
    go.recv().expect("go");
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        q.put_many((i..end).map(u64::to_le_bytes))
            .expect("put_many");
        i = end;
    }
}

#[multiproc::worker]
fn put_mib(q: Queue<ByteBuf>, n: u64, go: Connection<()>) {
    let item = ByteBuf::from(vec![7u8; MIB]);
    go.send(()).expect("ready");
    go.recv().expect("go");
    for _ in 0..n {
        q.put(item.clone()).expect("put");
    }
}

#[multiproc::worker]
fn put_mib_vec(q: Queue<Vec<u8>>, n: u64, go: Connection<()>) {
    let item = vec![7u8; MIB];
    go.send(()).expect("ready");
    go.recv().expect("go");
    for _ in 0..n {
        q.put(item.clone()).expect("put");
    }
}

#[multiproc::worker]
fn pong(conn: Connection<u64>, cpu: usize) {
    set_cpus(&only(cpu));
    while let Ok(x) = conn.recv() {
        if conn.send(x + 1).is_err() {
            return;
        }
    }
}

#[multiproc::worker]
fn put_joinable(q: JoinableQueue<u64>, n: u64, go: Connection<()>) {
    go.send(()).expect("ready");
    go.recv().expect("go");
    for i in 0..n {
        q.put(i).expect("put");
    }
    q.join();
}

/// A pipe for the ready/go hand-shake: ours, and the child's end.
fn hand_shake() -> (Connection<()>, Connection<()>) {
    Pipe::new().expect("a pipe")
}

fn ours_queue8(n: u64) -> Duration {
    let q = Queue::new().expect("a queue");
    let (go, theirs) = hand_shake();
    let p = put8::spawn(q.clone(), n, theirs).expect("spawn");
    go.recv().expect("ready");
    let start = Instant::now();
    go.send(()).expect("go");
    for i in 0..n {
        assert_eq!(q.get().expect("get"), i.to_le_bytes());
    }
    let elapsed = start.elapsed();
    assert_eq!(p.join().expect("join"), 0);
    elapsed
}

fn ours_queue8_many(n: u64) -> Duration {
    let q = Queue::new().expect("a queue");
    let (go, theirs) = hand_shake();
    let p = put8_many::spawn(q.clone(), n, theirs).expect("spawn");
    go.recv().expect("ready");
    let mut items = Vec::with_capacity(BATCH as usize);
    let start = Instant::now();
    go.send(()).expect("go");
    let mut i = 0;
    while i < n {
        items.clear();
        q.get_many(&mut items, BATCH as usize).expect("get_many");
        for item in &items {
            assert_eq!(*item, i.to_le_bytes());
            i += 1;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(p.join().expect("join"), 0);
    elapsed
}

fn ours_queue_mib(n: u64) -> Duration {
    let q = Queue::new().expect("a queue");
    let (go, theirs) = hand_shake();
    let p = put_mib::spawn(q.clone(), n, theirs).expect("spawn");
    go.recv().expect("ready");
    let start = Instant::now();
    go.send(()).expect("go");
    for _ in 0..n {
        assert_eq!(q.get().expect("get").len(), MIB);
    }
    let elapsed = start.elapsed();
    assert_eq!(p.join().expect("join"), 0);
    elapsed
}

fn ours_queue_mib_vec(n: u64) -> Duration {
    let q = Queue::new().expect("a queue");
    let (go, theirs) = hand_shake();
    let p = put_mib_vec::spawn(q.clone(), n, theirs).expect("spawn");
    go.recv().expect("ready");
    let start = Instant::now();
    go.send(()).expect("go");
    for _ in 0..n {
        assert_eq!(q.get().expect("get").len(), MIB);
    }
    let elapsed = start.elapsed();
    assert_eq!(p.join().expect("join"), 0);
    elapsed
}

fn ours_pingpong(n: u64, ours_cpu: usize, their_cpu: usize) -> Duration {
    pinned(ours_cpu, || {
        let (conn, theirs) = Pipe::new().expect("a pipe");
        let p = pong::spawn(theirs, their_cpu).expect("spawn");
        for i in 0..1000 {
            conn.send(i).expect("send");
            conn.recv().expect("recv");
        }
        let start = Instant::now();
        for i in 0..n {
            conn.send(i).expect("send");
            assert_eq!(conn.recv().expect("recv"), i + 1);
        }
        let elapsed = start.elapsed();
        drop(conn);
        assert_eq!(p.join().expect("join"), 0);
        elapsed
    })
}

fn ours_joinable(n: u64) -> Duration {
    let q = JoinableQueue::new().expect("a queue");
    let (go, theirs) = hand_shake();
    let p = put_joinable::spawn(q.clone(), n, theirs).expect("spawn");
    go.recv().expect("ready");
    let start = Instant::now();
    go.send(()).expect("go");
    for i in 0..n {
        assert_eq!(q.get().expect("get"), i);
        q.task_done().expect("task_done");
    }
    assert_eq!(p.join().expect("join"), 0);
    start.elapsed()
}

// ---------------------------------------------------------------------------------
// The floors: this binary started again as a bare child, given descriptors by number.

/// A socket pair whose second end survives `exec` (for the floor's child).
fn inheritable_pair() -> (UnixStream, OwnedFd) {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    (UnixStream::from(a), inheritable(b))
}

/// A duplicate of `fd` without close-on-exec.
fn inheritable(fd: OwnedFd) -> OwnedFd {
    // SAFETY: dup of a valid descriptor; the result is owned by the returned value.
    let raw = unsafe { nix::libc::dup(fd.as_raw_fd()) };
    assert!(raw >= 0, "dup failed");
    // SAFETY: a fresh descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Starts the floor's child with `args` (descriptors already inheritable).
fn floor_child(args: &[String]) -> Child {
    Command::new("/proc/self/exe")
        .arg(FLOOR_ARG)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("the floor's child starts")
}

fn reap(mut child: Child) {
    let status = child.wait().expect("wait for the floor's child");
    assert!(status.success(), "the floor's child failed: {status}");
}

/// A shared-memory area of `len` bytes, as a memfd (inheritable) and its mapping.
struct Shm {
    fd: OwnedFd,
    ptr: *mut u8,
    len: usize,
}

impl Shm {
    fn new(len: usize) -> Shm {
        let fd = nix::sys::memfd::memfd_create(c"floor", nix::sys::memfd::MFdFlags::empty())
            .expect("memfd_create");
        nix::unistd::ftruncate(&fd, len as i64).expect("ftruncate");
        Shm::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> Shm {
        // SAFETY: a fresh shared mapping of a descriptor at least `len` long.
        let ptr = unsafe {
            mmap(
                None,
                std::num::NonZeroUsize::new(len).expect("non-empty"),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                0,
            )
        }
        .expect("mmap");
        Shm {
            fd,
            ptr: ptr.as_ptr().cast(),
            len,
        }
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!((index + 1) * 64 <= 4096);
        // SAFETY: each word is on its own 64-byte line in the first page; atomics
        // accept any bits.
        unsafe { &*self.ptr.add(index * 64).cast::<AtomicU64>() }
    }

    /// The data area after the first page.
    fn data(&self) -> *mut u8 {
        // SAFETY: the mapping is longer than one page.
        unsafe { self.ptr.add(4096) }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`.
        let _ = unsafe { munmap(std::ptr::NonNull::new(self.ptr.cast()).unwrap(), self.len) };
    }
}

/// A single-producer, single-consumer ring of `slots` slots of `size` bytes: words 0
/// (head) and 1 (tail) count slots; data after the first page.
struct SpscRing {
    shm: Shm,
    size: usize,
    slots: u64,
}

impl SpscRing {
    fn push(&self, msg: &[u8]) {
        let (head, tail) = (self.shm.word(0), self.shm.word(1));
        let t = tail.load(Ordering::Relaxed);
        let mut spins = 0u32;
        while t - head.load(Ordering::Acquire) >= self.slots {
            backoff(&mut spins);
        }
        let at = (t % self.slots) as usize * self.size;
        // SAFETY: slot `at` is inside the data area and free (head passed it).
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.shm.data().add(at), msg.len()) };
        tail.store(t + 1, Ordering::Release);
    }

    fn pop(&self, out: &mut [u8]) {
        let (head, tail) = (self.shm.word(0), self.shm.word(1));
        let h = head.load(Ordering::Relaxed);
        let mut spins = 0u32;
        while tail.load(Ordering::Acquire) == h {
            backoff(&mut spins);
        }
        let at = (h % self.slots) as usize * self.size;
        // SAFETY: slot `at` is inside the data area and published (tail passed it).
        unsafe {
            std::ptr::copy_nonoverlapping(self.shm.data().add(at), out.as_mut_ptr(), out.len())
        };
        head.store(h + 1, Ordering::Release);
    }
}

/// Spins, yielding the CPU every 64 checks.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins % 64 == 0 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Waits for the child's ready byte on `ctl`, then sends the go byte.
fn ready_go(ctl: &mut UnixStream) {
    let mut b = [0u8];
    ctl.read_exact(&mut b).expect("ready");
    ctl.write_all(&b).expect("go");
}

fn child_ready_go(ctl: &mut UnixStream) {
    ctl.write_all(&[1]).expect("ready");
    let mut b = [0u8];
    ctl.read_exact(&mut b).expect("go");
}

/// The socket floor of a throughput figure: `n` writes of `size` bytes.
fn floor_sock(n: u64, size: usize) -> Duration {
    let (mut ours, theirs) = inheritable_pair();
    let child = floor_child(&[
        "sock-send".into(),
        theirs.as_raw_fd().to_string(),
        n.to_string(),
        size.to_string(),
    ]);
    drop(theirs);
    ready_go(&mut ours);
    let start = Instant::now();
    let mut buf = vec![0u8; size];
    for _ in 0..n {
        ours.read_exact(&mut buf).expect("read");
    }
    let elapsed = start.elapsed();
    reap(child);
    elapsed
}

/// The shared-memory floor of a throughput figure: `n` messages of `size` bytes
/// through `slots` slots.
fn floor_shm(n: u64, size: usize, slots: u64) -> Duration {
    let ring = SpscRing {
        shm: Shm::new(4096 + size * slots as usize),
        size,
        slots,
    };
    let fd = inheritable(ring.shm.fd.try_clone().expect("dup"));
    let (mut ctl, theirs) = inheritable_pair();
    let child = floor_child(&[
        "shm-send".into(),
        fd.as_raw_fd().to_string(),
        theirs.as_raw_fd().to_string(),
        n.to_string(),
        size.to_string(),
        slots.to_string(),
    ]);
    drop((fd, theirs));
    ready_go(&mut ctl);
    let start = Instant::now();
    let mut buf = vec![0u8; size];
    for _ in 0..n {
        ring.pop(&mut buf);
    }
    let elapsed = start.elapsed();
    reap(child);
    elapsed
}

/// The socket floor of a round trip.
fn floor_sock_pingpong(n: u64, ours_cpu: usize, their_cpu: usize) -> Duration {
    pinned(ours_cpu, || {
        let (mut ours, theirs) = inheritable_pair();
        let child = floor_child(&[
            "sock-pong".into(),
            theirs.as_raw_fd().to_string(),
            their_cpu.to_string(),
        ]);
        drop(theirs);
        let mut b = [0u8; 8];
        for _ in 0..100 {
            ours.write_all(&b).expect("write");
            ours.read_exact(&mut b).expect("read");
        }
        let start = Instant::now();
        for _ in 0..n {
            ours.write_all(&b).expect("write");
            ours.read_exact(&mut b).expect("read");
        }
        let elapsed = start.elapsed();
        drop(ours);
        reap(child);
        elapsed
    })
}

/// The shared-memory floor of a round trip: one word, spinning.
fn floor_shm_pingpong(n: u64, ours_cpu: usize, their_cpu: usize) -> Duration {
    pinned(ours_cpu, || {
        let shm = Shm::new(8192);
        let fd = inheritable(shm.fd.try_clone().expect("dup"));
        let rounds = n + 100;
        let child = floor_child(&[
            "shm-pong".into(),
            fd.as_raw_fd().to_string(),
            their_cpu.to_string(),
            rounds.to_string(),
        ]);
        drop(fd);
        let word = shm.word(0);
        let mut start = Instant::now();
        for i in 0..rounds {
            if i == 100 {
                start = Instant::now();
            }
            word.store(2 * i + 1, Ordering::Release);
            let mut spins = 0;
            while word.load(Ordering::Acquire) != 2 * i + 2 {
                backoff(&mut spins);
            }
        }
        let elapsed = start.elapsed();
        reap(child);
        elapsed
    })
}

/// The floor's child: `--floor <what> <args..>`.
/// `--callgrind single|batch|single8|batch8 <n>`: puts and gets `n` items in this
/// one process (`u64`s; `[u8; 8]`s for the modes ending in 8).
fn callgrind_main(args: &[OsString]) {
    let mode = args.first().and_then(|a| a.to_str()).unwrap_or("single");
    let n: u64 = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let sum = match mode {
        "single8" => put_get_loop(n, false, u64::to_le_bytes, u64::from_le_bytes),
        "batch8" => put_get_loop(n, true, u64::to_le_bytes, u64::from_le_bytes),
        "batch" => put_get_loop(n, true, |i| i, |i| i),
        _ => put_get_loop(n, false, |i| i, |i| i),
    };
    assert_eq!(sum, (0..n).fold(0u64, u64::wrapping_add));
}

/// Puts and gets `n` items made of `0..n` by `make`, one at a time or [`BATCH`] at a
/// time; the sum of what came out, read back by `read`.
fn put_get_loop<T>(n: u64, batch: bool, make: fn(u64) -> T, read: fn(T) -> u64) -> u64
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let q = Queue::<T>::new().expect("a queue");
    let mut sum = 0u64;
    if batch {
        let mut out = Vec::with_capacity(BATCH as usize);
        let mut i = 0;
        while i < n {
            let end = (i + BATCH).min(n);
            q.put_many((i..end).map(make)).expect("put_many");
            out.clear();
            q.get_many(&mut out, BATCH as usize).expect("get_many");
            sum = out.drain(..).fold(sum, |s, v| s.wrapping_add(read(v)));
            i = end;
        }
    } else {
        for i in 0..n {
            q.put(make(i)).expect("put");
            sum = sum.wrapping_add(read(q.get().expect("get")));
        }
    }
    sum
}

fn floor_main(args: &[OsString]) {
    let arg = |i: usize| -> String {
        args.get(i)
            .and_then(|a| a.to_str())
            .expect("floor arguments")
            .to_owned()
    };
    let num = |i: usize| -> u64 { arg(i).parse().expect("a number") };
    let fd = |i: usize| -> OwnedFd {
        let raw: RawFd = arg(i).parse().expect("a descriptor");
        // SAFETY: the parent left this descriptor open for us alone.
        unsafe { OwnedFd::from_raw_fd(raw) }
    };
    match arg(0).as_str() {
        "sock-send" => {
            let mut sock = UnixStream::from(fd(1));
            let (n, size) = (num(2), num(3) as usize);
            child_ready_go(&mut sock);
            let buf = vec![7u8; size];
            for _ in 0..n {
                sock.write_all(&buf).expect("write");
            }
        }
        "shm-send" => {
            let (n, size, slots) = (num(3), num(4) as usize, num(5));
            let ring = SpscRing {
                shm: Shm::map(fd(1), 4096 + size * slots as usize),
                size,
                slots,
            };
            let mut ctl = UnixStream::from(fd(2));
            child_ready_go(&mut ctl);
            let buf = vec![7u8; size];
            for _ in 0..n {
                ring.push(&buf);
            }
        }
        "sock-pong" => {
            let mut sock = UnixStream::from(fd(1));
            set_cpus(&only(num(2) as usize));
            let mut b = [0u8; 8];
            while sock.read_exact(&mut b).is_ok() {
                sock.write_all(&b).expect("write");
            }
        }
        "shm-pong" => {
            let shm = Shm::map(fd(1), 8192);
            set_cpus(&only(num(2) as usize));
            let word = shm.word(0);
            for i in 0..num(3) {
                let mut spins = 0;
                while word.load(Ordering::Acquire) != 2 * i + 1 {
                    backoff(&mut spins);
                }
                word.store(2 * i + 2, Ordering::Release);
            }
        }
        other => panic!("unknown floor `{other}`"),
    }
}

// ---------------------------------------------------------------------------------
// Python

// ---------------------------------------------------------------------------------
// The table

/// How a figure is shown: a rate of items or bytes, or a time per operation.
#[derive(Clone, Copy)]
enum Unit {
    /// Millions of items per second.
    Items,
    /// Gigabytes per second, for items of this many bytes.
    Bytes(usize),
    /// Microseconds per round trip.
    Micros,
}

impl Unit {
    fn show(self, s: Option<Stats>) -> String {
        let Some(s) = s else {
            return "n/a".to_owned();
        };
        match self {
            Unit::Items => format!("{:.2} M/s", 1.0 / s.median),
            Unit::Bytes(size) => format!("{:.2} GB/s", size as f64 / s.median / 1e3),
            Unit::Micros if s.median < 10.0 => format!("{:.2} µs", s.median),
            Unit::Micros => format!("{:.1} µs", s.median),
        }
    }
}

struct Row {
    figure: &'static str,
    unit: Unit,
    ours: Option<Stats>,
    python: Option<Stats>,
    sock: Option<Stats>,
    shm: Option<Stats>,
    aim: &'static str,
}

impl Row {
    fn print(&self) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.figure,
            self.unit.show(self.ours),
            self.unit.show(self.python),
            ratio(self.python, self.ours),
            self.unit.show(self.sock),
            ratio(self.sock, self.ours),
            self.unit.show(self.shm),
            ratio(self.shm, self.ours),
            self.aim,
        );
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == FLOOR_ARG) {
        floor_main(&args[2..]);
        return;
    }
    if args.get(1).is_some_and(|a| a == CALLGRIND_ARG) {
        callgrind_main(&args[2..]);
        return;
    }
    // `cargo bench` passes `--bench`; a word that is not an option keeps only the
    // measurements whose name contains it (and skips Python).
    let filter = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| !a.starts_with('-'))
        .map(str::to_owned);
    let started = Instant::now();
    let two_cpus = cpu_count() >= 2;
    let mut details: Vec<(String, Stats)> = Vec::new();
    let mut run = |name: &str, f: &mut dyn FnMut(u64) -> Duration| -> Option<Stats> {
        if filter.as_ref().is_some_and(|w| !name.contains(w.as_str())) {
            return None;
        }
        let s = measure(f);
        details.push((name.to_owned(), s));
        Some(s)
    };

    eprintln!("queue, 8-byte items...");
    let q8 = run("multiproc Queue<[u8; 8]>", &mut ours_queue8);
    let q8_many = run(
        "multiproc Queue<[u8; 8]> put_many/get_many of 256",
        &mut ours_queue8_many,
    );
    let q8_sock = run("floor socket pair, 8-byte writes", &mut |n| {
        floor_sock(n, 8)
    });
    let q8_shm = run("floor shm ring, 8-byte slots", &mut |n| {
        floor_shm(n, 8, 1 << 16)
    });

    eprintln!("queue, 1 MiB items...");
    let qm = run("multiproc Queue<ByteBuf>, 1 MiB", &mut ours_queue_mib);
    let qm_vec = run("multiproc Queue<Vec<u8>>, 1 MiB", &mut ours_queue_mib_vec);
    let qm_sock = run("floor socket pair, 1 MiB writes", &mut |n| {
        floor_sock(n, MIB)
    });
    let qm_shm = run("floor shm ring, 4 x 1 MiB slots", &mut |n| {
        floor_shm(n, MIB, 4)
    });

    eprintln!("pipe ping-pong...");
    let (mut pp_cross, mut pp_cross_sock, mut pp_cross_shm) = (None, None, None);
    if two_cpus {
        pp_cross = run("multiproc Pipe round trip, CPUs 0 and 1", &mut |n| {
            ours_pingpong(n, 0, 1)
        });
        pp_cross_sock = run("floor socket pair round trip, CPUs 0 and 1", &mut |n| {
            floor_sock_pingpong(n, 0, 1)
        });
        pp_cross_shm = run("floor shm spin round trip, CPUs 0 and 1", &mut |n| {
            floor_shm_pingpong(n, 0, 1)
        });
    }
    let pp_same = run("multiproc Pipe round trip, both on CPU 0", &mut |n| {
        ours_pingpong(n, 0, 0)
    });
    let pp_same_sock = run("floor socket pair round trip, both on CPU 0", &mut |n| {
        floor_sock_pingpong(n, 0, 0)
    });
    let pp_same_shm = run("floor shm spin round trip, both on CPU 0", &mut |n| {
        floor_shm_pingpong(n, 0, 0)
    });

    eprintln!("joinable queue...");
    let jq = run(
        "multiproc JoinableQueue<u64> put+get+task_done",
        &mut ours_joinable,
    );

    eprintln!("Python ({PYTHON_SCRIPT}, about 15 s)...");
    let py = if filter.is_some() {
        Python::default()
    } else {
        python(PYTHON_SCRIPT, &[]).unwrap_or_else(|why| {
            eprintln!("no Python figures: {why}");
            Python::default()
        })
    };
    let mut keys: Vec<&String> = py.stats.keys().collect();
    keys.sort();
    for key in keys {
        details.push((format!("Python {key}"), py.stats[key]));
    }
    let py_get = |key: &str| py.stats.get(key).copied();

    println!();
    println!(
        "machine: {} CPUs ({}), kernel {}, Python {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        kernel(),
        py.info.get("python_version").map_or("n/a", String::as_str),
    );
    println!();
    println!("| measurement | runs | median | p10 | p90 |");
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in &details {
        println!(
            "| {name} | {} | {:.3} µs | {:.3} µs | {:.3} µs |",
            s.n, s.median, s.p10, s.p90
        );
    }
    println!();
    println!(
        "| figure | multiproc | Python | vs Python | socket pair | vs socket | shm ring | vs shm | aim |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let rows = [
        Row {
            figure: "Queue, 8-byte items, 2 processes",
            unit: Unit::Items,
            ours: q8,
            python: py_get("queue8"),
            sock: q8_sock,
            shm: q8_shm,
            aim: "≥ 25 M/s",
        },
        Row {
            figure: "Queue, 8-byte items, `put_many`/`get_many` of 256",
            unit: Unit::Items,
            ours: q8_many,
            python: py_get("queue8"),
            sock: q8_sock,
            shm: q8_shm,
            aim: "≥ 25 M/s",
        },
        Row {
            figure: "Queue, 1 MiB items (`ByteBuf`)",
            unit: Unit::Bytes(MIB),
            ours: qm,
            python: py_get("queue1m"),
            sock: qm_sock,
            shm: qm_shm,
            aim: "≥ 5 GB/s",
        },
        Row {
            figure: "Queue, 1 MiB items (`Vec<u8>`)",
            unit: Unit::Bytes(MIB),
            ours: qm_vec,
            python: py_get("queue1m"),
            sock: qm_sock,
            shm: qm_shm,
            aim: "",
        },
        Row {
            figure: "Pipe round trip, different CPUs",
            unit: Unit::Micros,
            ours: pp_cross,
            python: py_get("pingpong_cross"),
            sock: pp_cross_sock,
            shm: pp_cross_shm,
            aim: "≤ socket pair; < 1 µs",
        },
        Row {
            figure: "Pipe round trip, same CPU",
            unit: Unit::Micros,
            ours: pp_same,
            python: py_get("pingpong_same"),
            sock: pp_same_sock,
            shm: pp_same_shm,
            aim: "≤ socket pair",
        },
        Row {
            figure: "JoinableQueue put+get+task_done",
            unit: Unit::Items,
            ours: jq,
            python: py_get("joinable"),
            sock: q8_sock,
            shm: q8_shm,
            aim: "10x Python",
        },
    ];
    for row in &rows {
        row.print();
    }
    println!();
    println!(
        "medians; \"vs\": how many times faster multiproc is. The JoinableQueue row's floors \
         are those of the 8-byte row. Total time {:.0} s.",
        started.elapsed().as_secs_f64()
    );
}
