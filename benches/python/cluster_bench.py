#!/usr/bin/env python3
"""Python's side of `cargo bench --bench cluster`: multiprocessing.Pool(4), local.

Python has no pool on Slurm nodes in the standard library; its local pool of the same
size is the comparison (Ray's Pool, the usual cluster answer, runs tiny tasks about 20x
slower than a local pool: ray#21343). Prints `<key> <n> <median_ms> <p10_ms> <p90_ms>`
lines (milliseconds per run) and `info` lines. Usage: cluster_bench.py N RUNS. Keys:

    map_c1        pool.map(sqr, range(N), chunksize=1)
    map_default   pool.map(sqr, range(N))
    start1        Pool(4) + apply(sqr, (1,)) + close() + join(), fork context
"""

import multiprocessing as mp
import sys
import time


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
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(f"info python_version {sys.version.split()[0]}")
    ctx = mp.get_context("fork")
    with ctx.Pool(4) as pool:
        pool.map(sqr, range(1000))
        report("map_c1", timed(lambda: pool.map(sqr, range(n), chunksize=1), runs))
        report("map_default", timed(lambda: pool.map(sqr, range(n)), runs))

    def start1():
        p = ctx.Pool(4)
        p.apply(sqr, (1,))
        p.close()
        p.join()

    start1()
    report("start1", timed(start1, runs))


if __name__ == "__main__":
    main()
