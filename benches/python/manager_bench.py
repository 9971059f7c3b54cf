#!/usr/bin/env python3
"""Python's side of `cargo bench --bench manager`: Manager start and list.append.

Run by benches/manager.rs (or by hand: `python3 benches/python/manager_bench.py`).
Prints `<key> <n> <median> <p10> <p90>` lines and `info <key> <value>` lines. Keys:

    start_list_us     Manager() start + one list proxy, microseconds
    append_child_ns   list.append from a forked child, nanoseconds per append (the
                      child's own clock, after its first append opened its connection)
"""

import multiprocessing as mp
import sys
import time

START_RUNS = 15
APPEND_N = 5_000
APPEND_RUNS = 5


def quantile(sorted_xs, q):
    h = (len(sorted_xs) - 1) * q
    lo = int(h)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (h - lo) * (sorted_xs[hi] - sorted_xs[lo])


def report(key, samples):
    xs = sorted(samples)
    print(
        f"{key} {len(xs)} {quantile(xs, 0.5):.2f} {quantile(xs, 0.1):.2f} {quantile(xs, 0.9):.2f}",
        flush=True,
    )


def appender(lst, n, out):
    lst.append(0)
    start = time.perf_counter_ns()
    for i in range(n):
        lst.append(i)
    out.put((time.perf_counter_ns() - start) / n)


def main():
    print(f"info python_version {sys.version.split()[0]}")
    print(f"info start_method {mp.get_start_method()}")
    samples = []
    for _ in range(START_RUNS):
        start = time.perf_counter_ns()
        m = mp.Manager()
        lst = m.list()
        samples.append((time.perf_counter_ns() - start) / 1000)
        del lst
        m.shutdown()
    report("start_list_us", samples)

    samples = []
    with mp.Manager() as m:
        for _ in range(APPEND_RUNS):
            lst = m.list()
            out = mp.SimpleQueue()
            p = mp.Process(target=appender, args=(lst, APPEND_N, out))
            p.start()
            samples.append(out.get())
            p.join()
    report("append_child_ns", samples)


if __name__ == "__main__":
    main()
