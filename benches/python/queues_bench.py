#!/usr/bin/env python3
"""Python's side of `cargo bench --bench queues`: the same work with Python's
`multiprocessing` (fork context, Python's default on Linux).

Run by benches/queues.rs (it can also be run by hand:
`python3 benches/python/queues_bench.py`). Prints one measurement per line on stdout,
in a format the Rust bench reads without a JSON parser:

    <key> <runs> <median_us> <p10_us> <p90_us>

where the figures are microseconds per operation (per item, or per round trip), and
`info <key> <value>` lines. Lines starting with `#` are comments. Keys:

    queue8          Queue, 8-byte bytes objects, a child puts, the parent gets
    queue1m         Queue, 1 MiB bytes objects, the same
    pingpong_cross  Pipe round trip of a small int, parent on CPU 0, child on CPU 1
    pingpong_same   the same, both on CPU 0
    joinable        JoinableQueue: a child puts ints then join()s, the parent gets and
                    calls task_done for each

Each run starts a fresh child, which says it is ready and waits for a go before it
starts, so that the process start is not measured. The number of operations per run is
chosen so that a run lasts about 0.3 s.
"""

import gc
import multiprocessing as mp
import os
import sys
import time

RUNS = 5
RUN_SECONDS = 0.3


def quantile(sorted_xs, q):
    """Linear interpolation between closest ranks (the same as the Rust side)."""
    h = (len(sorted_xs) - 1) * q
    lo = int(h)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (h - lo) * (sorted_xs[hi] - sorted_xs[lo])


def report(key, per_op_us):
    xs = sorted(per_op_us)
    print(
        f"{key} {len(xs)} {quantile(xs, 0.5):.4f} {quantile(xs, 0.1):.4f} {quantile(xs, 0.9):.4f}",
        flush=True,
    )


def pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


# --- the children ---


def producer(q, n, payload, ready, go):
    ready.send(1)
    go.recv()
    for _ in range(n):
        q.put(payload)


def ponger(conn, cpu, ready):
    pin(cpu)
    ready.send(1)
    while True:
        x = conn.recv()
        if x is None:
            return
        conn.send(x + 1)


def joinable_producer(q, n, ready, go):
    ready.send(1)
    go.recv()
    for i in range(n):
        q.put(i)
    q.join()


# --- one run each: microseconds per operation ---


def started(ctx, target, args):
    ready_r, ready_w = ctx.Pipe(duplex=False)
    go_r, go_w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=target, args=args + (ready_w, go_r))
    p.start()
    ready_r.recv()
    return p, go_w


def queue_run(ctx, n, payload):
    q = ctx.Queue()
    p, go = started(ctx, producer, (q, n, payload))
    t0 = time.perf_counter_ns()
    go.send(1)
    for _ in range(n):
        q.get()
    dt = time.perf_counter_ns() - t0
    p.join()
    return dt / n / 1000.0


def pingpong_run(ctx, n, cpus):
    saved = os.sched_getaffinity(0)
    pin(cpus[0])
    try:
        a, b = ctx.Pipe()
        ready_r, ready_w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=ponger, args=(b, cpus[1], ready_w))
        p.start()
        ready_r.recv()
        for i in range(100):
            a.send(i)
            a.recv()
        t0 = time.perf_counter_ns()
        for i in range(n):
            a.send(i)
            a.recv()
        dt = time.perf_counter_ns() - t0
        a.send(None)
        p.join()
    finally:
        os.sched_setaffinity(0, saved)
    return dt / n / 1000.0


def joinable_run(ctx, n):
    q = ctx.JoinableQueue()
    p, go = started(ctx, joinable_producer, (q, n))
    t0 = time.perf_counter_ns()
    go.send(1)
    for _ in range(n):
        q.get()
        q.task_done()
    p.join()
    dt = time.perf_counter_ns() - t0
    return dt / n / 1000.0


def measure(key, run):
    """`run(n)` returns microseconds per operation; n is sized for RUN_SECONDS."""
    per_op = run(200)
    n = max(200, int(RUN_SECONDS * 1e6 / max(per_op, 1e-3)))
    gc.collect()
    report(key, [run(n) for _ in range(RUNS)])


def main():
    print(f"info python_version {sys.version.split()[0]}", flush=True)
    ctx = mp.get_context("fork")
    measure("queue8", lambda n: queue_run(ctx, n, b"12345678"))
    mib = bytes(1 << 20)
    measure("queue1m", lambda n: queue_run(ctx, n, mib))
    cpus = len(os.sched_getaffinity(0))
    if cpus >= 2:
        measure("pingpong_cross", lambda n: pingpong_run(ctx, n, (0, 1)))
    measure("pingpong_same", lambda n: pingpong_run(ctx, n, (0, 0)))
    measure("joinable", lambda n: joinable_run(ctx, n))


if __name__ == "__main__":
    main()
