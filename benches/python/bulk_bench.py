#!/usr/bin/env python3
"""Python's side of `cargo bench --bench bulk`: 64 MiB of `bytes` as a Process
argument (forkserver), as a Pool result, and as mp.Queue items (fork context).

Run by benches/bulk.rs as `python3 benches/python/bulk_bench.py <bytes> <runs>`.
Prints `<key> <runs> <median_s> <p10_s> <p90_s>` lines (seconds per run) and
`info <key> <value>` lines. Keys:

    process_noop  forkserver Process(target=noop, args=(None,)), start + join
    process_arg   the same with the bytes as the argument
    pool_noop     Pool(1).apply(noop, (None,))
    pool_result   Pool(1).apply(make, (len,)), make returning the bytes
    make_bytes    making the bytes in-process (subtracted from pool_result)
    queue_1m      a child puts len / 1 MiB items of 1 MiB, the parent gets them all
                  (timed from the go to the last get)
    queue_64m     the same with one item of len bytes
    pipe_64m      a child sends one message of len bytes on a Pipe (send_bytes), the
                  parent receives it (recv_bytes); timed from the go
"""

import multiprocessing as mp
import sys
import time

MIB = 1 << 20


def quantile(xs, q):
    h = (len(xs) - 1) * q
    lo = int(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def report(key, seconds):
    xs = sorted(seconds)
    print(f"{key} {len(xs)} {quantile(xs, 0.5):.6f} {quantile(xs, 0.1):.6f} {quantile(xs, 0.9):.6f}", flush=True)


def make(n):
    return bytes(i % 256 for i in range(256)) * (n // 256)


def noop(x):
    return None


def take(x):
    return len(x)


def putter(q, count, item, ready, go):
    items = [make(item) for _ in range(count)]
    ready.set()
    go.wait()
    for v in items:
        q.put(v)


def sender(conn, n, ready, go):
    value = make(n)
    ready.set()
    go.wait()
    conn.send_bytes(value)


def series(runs, f):
    f()
    return [f() for _ in range(runs)]


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64 * MIB
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    print(f"info python_version {sys.version.split()[0]}")
    fs = mp.get_context("forkserver")
    value = make(n)

    def process(arg):
        p = fs.Process(target=take if arg is not None else noop, args=(arg,))
        p.start()
        p.join()

    report("process_noop", series(runs, lambda: timed(lambda: process(None))))
    report("process_arg", series(runs, lambda: timed(lambda: process(value))))
    with fs.Pool(1) as pool:
        report("pool_noop", series(runs, lambda: timed(lambda: pool.apply(noop, (None,)))))
        report("pool_result", series(runs, lambda: timed(lambda: pool.apply(make, (n,)))))
    report("make_bytes", series(runs, lambda: timed(lambda: make(n))))

    fork = mp.get_context("fork")

    def queue(count):
        q = fork.Queue()
        ready, go = fork.Event(), fork.Event()
        p = fork.Process(target=putter, args=(q, count, n // count, ready, go))
        p.start()
        ready.wait()
        t = time.perf_counter()
        go.set()
        total = 0
        for _ in range(count):
            total += len(q.get())
        elapsed = time.perf_counter() - t
        p.join()
        assert total == n
        return elapsed

    report("queue_1m", series(runs, lambda: queue(n // MIB)))
    report("queue_64m", series(runs, lambda: queue(1)))

    def pipe():
        ours, theirs = fork.Pipe()
        ready, go = fork.Event(), fork.Event()
        p = fork.Process(target=sender, args=(theirs, n, ready, go))
        p.start()
        ready.wait()
        t = time.perf_counter()
        go.set()
        got = len(ours.recv_bytes())
        elapsed = time.perf_counter() - t
        p.join()
        assert got == n
        return elapsed

    report("pipe_64m", series(runs, pipe))


if __name__ == "__main__":
    main()
