#!/usr/bin/env python3
"""Python's side of `cargo bench --bench spawn`: start + join of a no-op process.

Run by benches/spawn.rs (it can also be run by hand: `python3 benches/python/spawn_bench.py`).
Prints one measurement per line on stdout, in a format the Rust bench reads without a
JSON parser:

    <key> <n> <median_us> <p10_us> <p90_us>

and `info <key> <value>` lines. Lines starting with `#` are comments. Keys:

    fork, forkserver, spawn          start + join of one process, default CPU affinity
    batch32_fork, batch32_forkserver start 32 processes, then join all 32 (per batch)
    fork_pinned                      fork, this process pinned to CPU 0
    fork_1g, forkserver_1g, spawn_1g as the first three, the parent holding 1 GiB of
                                     touched memory (a bytearray, one byte per page written)

The child runs `noop(7)`, a module-level function (so spawn and forkserver can pickle
it). Python's Process returns no value, so unlike the Rust figure nothing is sent back.
"""

import gc
import multiprocessing as mp
import os
import sys
import time

RUNS = 200  # fork, forkserver
WARMUP = 20
SPAWN_RUNS = 30  # spawn starts a fresh interpreter: ~45 ms each
SPAWN_WARMUP = 3
BATCH = 32
BATCH_RUNS = 20
BATCH_WARMUP = 2
BIG_RUNS = 100  # with 1 GiB held
BIG_SPAWN_RUNS = 15
if "--quick" in sys.argv:  # a smoke test: a few runs of each
    RUNS, WARMUP, SPAWN_RUNS, SPAWN_WARMUP = 8, 2, 2, 1
    BATCH_RUNS, BATCH_WARMUP, BIG_RUNS, BIG_SPAWN_RUNS = 2, 1, 4, 2
GIB = 1 << 30
PAGE = 4096


def noop(x):
    return x


def quantile(sorted_xs, q):
    """Linear interpolation between closest ranks (the same as the Rust side)."""
    h = (len(sorted_xs) - 1) * q
    lo = int(h)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (h - lo) * (sorted_xs[hi] - sorted_xs[lo])


def report(key, samples_ns):
    xs = sorted(s / 1000.0 for s in samples_ns)
    print(
        f"{key} {len(xs)} {quantile(xs, 0.5):.1f} {quantile(xs, 0.1):.1f} {quantile(xs, 0.9):.1f}",
        flush=True,
    )


def one(ctx):
    t0 = time.perf_counter_ns()
    p = ctx.Process(target=noop, args=(7,))
    p.start()
    p.join()
    dt = time.perf_counter_ns() - t0
    if p.exitcode != 0:
        raise SystemExit(f"child exited with {p.exitcode}")
    p.close()
    return dt


def batch(ctx):
    t0 = time.perf_counter_ns()
    ps = [ctx.Process(target=noop, args=(i,)) for i in range(BATCH)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    dt = time.perf_counter_ns() - t0
    for p in ps:
        if p.exitcode != 0:
            raise SystemExit(f"child exited with {p.exitcode}")
        p.close()
    return dt


def measure(key, fn, ctx, runs, warmup):
    for _ in range(warmup):
        fn(ctx)
    gc.collect()
    report(key, [fn(ctx) for _ in range(runs)])


def main():
    print(f"info python_version {sys.version.split()[0]}", flush=True)
    methods = mp.get_all_start_methods()
    ctxs = {m: mp.get_context(m) for m in ("fork", "forkserver", "spawn") if m in methods}

    # One process at a time, default affinity.
    for m, ctx in ctxs.items():
        if m == "spawn":
            measure(m, one, ctx, SPAWN_RUNS, SPAWN_WARMUP)
        else:
            measure(m, one, ctx, RUNS, WARMUP)

    # 32 started, then 32 joined.
    for m in ("fork", "forkserver"):
        if m in ctxs:
            measure(f"batch32_{m}", batch, ctxs[m], BATCH_RUNS, BATCH_WARMUP)

    # Pinned to CPU 0 (children of fork inherit the mask). forkserver's children
    # inherit the server's mask, not ours, and spawn is dominated by the interpreter's
    # start-up, so only fork is measured pinned.
    if "fork" in ctxs and hasattr(os, "sched_setaffinity"):
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {0})
        try:
            measure("fork_pinned", one, ctxs["fork"], RUNS, WARMUP)
        finally:
            os.sched_setaffinity(0, saved)

    # The parent holds 1 GiB of touched memory: fork copies its page tables.
    big = bytearray(GIB)
    big[::PAGE] = b"\x01" * (GIB // PAGE)
    for m, ctx in ctxs.items():
        if m == "spawn":
            measure(f"{m}_1g", one, ctx, BIG_SPAWN_RUNS, SPAWN_WARMUP)
        else:
            measure(f"{m}_1g", one, ctx, BIG_RUNS, WARMUP)
    del big
    stop_helpers()


def stop_helpers():
    """Stops the forkserver and the resource tracker and reaps them, so that they do
    not end after this process as orphans (zombies until init reaps them). Private
    methods (Python's own tests use them); skipped where they do not exist."""
    from multiprocessing import forkserver, resource_tracker

    for helper in (
        getattr(forkserver, "_forkserver", None),
        getattr(resource_tracker, "_resource_tracker", None),
    ):
        stop = getattr(helper, "_stop", None)
        if stop is not None:
            stop()


if __name__ == "__main__":
    main()
