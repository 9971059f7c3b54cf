#!/usr/bin/env python3
"""Python's side of `cargo bench --bench sync`: Lock, RLock, Semaphore, Value and Event.

Run by benches/sync.rs (it can also be run by hand: `python3 benches/python/sync_bench.py`).
Prints one measurement per line on stdout, in a format the Rust bench reads without a
JSON parser:

    <key> <n> <median_ns> <p10_ns> <p90_ns>

(nanoseconds per operation, or per round trip) and `info <key> <value>` lines. Lines
starting with `#` are comments. Keys:

    lock, rlock, semaphore     acquire() + release() in a loop, one process
    lock_with                  `with lock: pass` in a loop
    value                      `with v.get_lock(): v.value += 1`, v = Value('Q')
    lock_2p, rlock_2p,         the same, two processes at once (this one on CPU 0 and a
    semaphore_2p, value_2p     forked child on CPU 1), per operation of the pair:
                               wall time / (2 n)
    event_rt_same              Event round trip between two processes on one CPU
    event_rt_apart             the same on two CPUs

The contended runs start together at a Barrier and read time.monotonic_ns()
(CLOCK_MONOTONIC) at their start and end; the child writes its times into a shared
Array. Children are forked (the fastest start method; start-up is not measured).
"""

import gc
import multiprocessing as mp
import os
import sys
import time

LOOP_N = 1_000_000
LOOP_RUNS = 7
CONTENDED_N = 300_000
CONTENDED_RUNS = 5
RT_N = 2_000
RT_RUNS = 5


def quantile(sorted_xs, q):
    """Linear interpolation between closest ranks (the same as the Rust side)."""
    h = (len(sorted_xs) - 1) * q
    lo = int(h)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (h - lo) * (sorted_xs[hi] - sorted_xs[lo])


def report(key, samples_ns):
    xs = sorted(samples_ns)
    print(
        f"{key} {len(xs)} {quantile(xs, 0.5):.2f} {quantile(xs, 0.1):.2f} {quantile(xs, 0.9):.2f}",
        flush=True,
    )


# The loops: each does n operations on its object.


def loop_acquire_release(obj, n):
    acquire, release = obj.acquire, obj.release
    for _ in range(n):
        acquire()
        release()


def loop_with(obj, n):
    for _ in range(n):
        with obj:
            pass


def loop_value(v, n):
    lock = v.get_lock()
    for _ in range(n):
        with lock:
            v.value += 1


def per_op(loop, obj, n, runs):
    loop(obj, n // 10)  # warm-up
    gc.collect()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        loop(obj, n)
        samples.append((time.perf_counter_ns() - t0) / n)
    return samples


def contender(loop, obj, n, barrier, times, cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    barrier.wait()
    t0 = time.monotonic_ns()
    loop(obj, n)
    times[0] = t0
    times[1] = time.monotonic_ns()


def contended(ctx, loop, obj, n, runs):
    """As the Rust side: this process on CPU 0, the child on CPU 1 (if there are two)."""
    saved = os.sched_getaffinity(0)
    two = len(saved) >= 2
    if two:
        os.sched_setaffinity(0, {0})
    samples = []
    try:
        for i in range(runs + 1):
            barrier = ctx.Barrier(2)
            times = ctx.Array("Q", 2, lock=False)
            p = ctx.Process(
                target=contender, args=(loop, obj, n, barrier, times, 1 if two else None)
            )
            p.start()
            barrier.wait()
            t0 = time.monotonic_ns()
            loop(obj, n)
            t1 = time.monotonic_ns()
            p.join()
            if p.exitcode != 0:
                raise SystemExit(f"contender exited with {p.exitcode}")
            if i > 0:  # the first run warms up
                samples.append((max(t1, times[1]) - min(t0, times[0])) / (2 * n))
    finally:
        os.sched_setaffinity(0, saved)
    return samples


def echo(ping, pong, barrier, n, cpu):
    os.sched_setaffinity(0, {cpu})
    barrier.wait()
    for _ in range(n):
        ping.wait()
        ping.clear()
        pong.set()


def round_trips(ctx, my_cpu, child_cpu):
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {my_cpu})
    samples = []
    try:
        for i in range(RT_RUNS + 1):
            ping, pong, barrier = ctx.Event(), ctx.Event(), ctx.Barrier(2)
            p = ctx.Process(target=echo, args=(ping, pong, barrier, RT_N, child_cpu))
            p.start()
            barrier.wait()
            t0 = time.perf_counter_ns()
            for _ in range(RT_N):
                ping.set()
                pong.wait()
                pong.clear()
            elapsed = time.perf_counter_ns() - t0
            p.join()
            if i > 0:
                samples.append(elapsed / RT_N)
    finally:
        os.sched_setaffinity(0, saved)
    return samples


def main():
    print(f"info python_version {sys.version.split()[0]}", flush=True)
    ctx = mp.get_context("fork")

    report("lock", per_op(loop_acquire_release, ctx.Lock(), LOOP_N, LOOP_RUNS))
    report("lock_with", per_op(loop_with, ctx.Lock(), LOOP_N, LOOP_RUNS))
    report("rlock", per_op(loop_acquire_release, ctx.RLock(), LOOP_N, LOOP_RUNS))
    report("semaphore", per_op(loop_acquire_release, ctx.Semaphore(1), LOOP_N, LOOP_RUNS))
    report("value", per_op(loop_value, ctx.Value("Q", 0), LOOP_N, LOOP_RUNS))

    report("lock_2p", contended(ctx, loop_acquire_release, ctx.Lock(), CONTENDED_N, CONTENDED_RUNS))
    report("rlock_2p", contended(ctx, loop_acquire_release, ctx.RLock(), CONTENDED_N, CONTENDED_RUNS))
    report(
        "semaphore_2p",
        contended(ctx, loop_acquire_release, ctx.Semaphore(1), CONTENDED_N, CONTENDED_RUNS),
    )
    report("value_2p", contended(ctx, loop_value, ctx.Value("Q", 0), CONTENDED_N, CONTENDED_RUNS))

    report("event_rt_same", round_trips(ctx, 0, 0))
    if len(os.sched_getaffinity(0)) >= 2:
        report("event_rt_apart", round_trips(ctx, 0, 1))
    stop_helpers()


def stop_helpers():
    """Stops the resource tracker and reaps it, so that it does not end after this
    process as an orphan. Private method (Python's own tests use it); skipped where it
    does not exist."""
    from multiprocessing import resource_tracker

    helper = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(helper, "_stop", None)
    if stop is not None:
        stop()


if __name__ == "__main__":
    main()
