#!/usr/bin/env python3
"""Python's side of `cargo bench --bench pool`: multiprocessing.Pool(2).

Run by benches/pool.rs (or by hand: `python3 benches/python/pool_bench.py`). Prints
`<key> <n> <median_ms> <p10_ms> <p90_ms>` lines (milliseconds per run) and
`info <key> <value>` lines. Keys:

    map_c1        pool.map(sqr, range(100_000), chunksize=1)
    map_default   pool.map(sqr, range(100_000))  (Python's default chunksize)
    apply_async   20_000 apply_async(sqr, (i,)), then every get()
    start1        Pool(2) + apply(sqr, (1,)) + close() + join(), fork context
    start1_spawn  the same with the spawn context

The pool of the first three is started once, outside the timing.
"""

import multiprocessing as mp
import sys
import time

N_MAP = 100_000
N_APPLY = 20_000
RUNS = 5
START_RUNS = 20


def sqr(x):
    return x * x


def quantile(sorted_xs, q):
    h = (len(sorted_xs) - 1) * q
    lo = int(h)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (h - lo) * (sorted_xs[hi] - sorted_xs[lo])


def report(key, samples_ms):
    xs = sorted(samples_ms)
    print(
        f"{key} {len(xs)} {quantile(xs, 0.5):.4f} {quantile(xs, 0.1):.4f} {quantile(xs, 0.9):.4f}",
        flush=True,
    )


def timed(f, runs):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main():
    print(f"info python_version {sys.version.split()[0]}")
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.map(sqr, range(1000))
        report("map_c1", timed(lambda: pool.map(sqr, range(N_MAP), chunksize=1), RUNS))
        report("map_default", timed(lambda: pool.map(sqr, range(N_MAP)), RUNS))

        def apply_all():
            rs = [pool.apply_async(sqr, (i,)) for i in range(N_APPLY)]
            for r in rs:
                r.get()

        report("apply_async", timed(apply_all, RUNS))

    for key, method in (("start1", "fork"), ("start1_spawn", "spawn")):
        c = mp.get_context(method)

        def start1():
            p = c.Pool(2)
            p.apply(sqr, (1,))
            p.close()
            p.join()

        start1()
        report(key, timed(start1, START_RUNS if method == "fork" else 5))


if __name__ == "__main__":
    main()
