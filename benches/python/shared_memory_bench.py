#!/usr/bin/env python3
"""Python's side of `cargo bench --bench shared_memory`: a large read-only float array
reaching 8 worker processes through `multiprocessing.shared_memory`, and the cost of
attaching to a block by name.

Run by benches/shared_memory.rs (it can also be run by hand). Prints one measurement
per line on stdout, in a format the Rust bench reads without a JSON parser:

    <key> <n> <median> <p10> <p90>

and `info <key> <value>` lines; lines starting with `#` are comments. Keys:

    fanout_ms      create a block of MIB MiB, fill it with doubles (i % 1024), start 8
                   forkserver processes that each attach by name and sum their eighth
                   through `shm.buf.cast('d')` (no copy, no NumPy), until all 8 sums
                   are back: milliseconds
    spawn8_ms      the same with an 8-byte block and nothing to sum (the start-up part)
    attach_us      SharedMemory(name) + reading 8 bytes + close(), microseconds each

Sizes come from the environment, as for the Rust side: MULTIPROC_BENCH_SHM_MIB (1024),
MULTIPROC_BENCH_SHM_RUNS (3), MULTIPROC_BENCH_SHM_ATTACH_N (20000).
"""

import multiprocessing as mp
import os
import sys
import time
from array import array
from multiprocessing import shared_memory

MIB = int(os.environ.get("MULTIPROC_BENCH_SHM_MIB", "1024"))
RUNS = int(os.environ.get("MULTIPROC_BENCH_SHM_RUNS", "3"))
ATTACH_N = int(os.environ.get("MULTIPROC_BENCH_SHM_ATTACH_N", "20000"))
WORKERS = 8
# 1 MiB of doubles 0..1023, repeated.
CHUNK = array("d", [float(i % 1024) for i in range(1024)]).tobytes() * 128


def quantile(sorted_xs, q):
    """Linear interpolation between closest ranks (the same as the Rust side)."""
    h = (len(sorted_xs) - 1) * q
    lo = int(h)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (h - lo) * (sorted_xs[hi] - sorted_xs[lo])


def report(key, samples):
    xs = sorted(samples)
    print(
        f"{key} {len(xs)} {quantile(xs, 0.5):.3f} {quantile(xs, 0.1):.3f} {quantile(xs, 0.9):.3f}",
        flush=True,
    )


def sum_part(name, part, parts, results):
    shm = shared_memory.SharedMemory(name=name)
    values = shm.buf.cast("d")
    n = len(values) // parts
    total = sum(values[part * n : (part + 1) * n])
    values.release()
    shm.close()
    results.put(total)


def fanout(ctx, size):
    start = time.perf_counter()
    shm = shared_memory.SharedMemory(create=True, size=size)
    for off in range(0, size - size % len(CHUNK), len(CHUNK)):
        shm.buf[off : off + len(CHUNK)] = CHUNK
    results = ctx.Queue()
    procs = [
        ctx.Process(target=sum_part, args=(shm.name, i, WORKERS, results))
        for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    total = sum(results.get() for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    shm.close()
    shm.unlink()
    return elapsed * 1e3, total


def main():
    ctx = mp.get_context("forkserver")
    print(f"info python_version {sys.version.split()[0]}")
    fanout(ctx, 8)  # warm the forkserver up
    report("spawn8_ms", [fanout(ctx, 8)[0] for _ in range(RUNS)])
    size = MIB << 20
    samples = []
    for _ in range(RUNS):
        ms, total = fanout(ctx, size)
        expected = (size // len(CHUNK)) * 128 * sum(range(1024))
        assert total == expected, (total, expected)
        samples.append(ms)
    report("fanout_ms", samples)

    shm = shared_memory.SharedMemory(create=True, size=4096)
    shm.buf[:8] = b"12345678"
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(ATTACH_N):
            other = shared_memory.SharedMemory(name=shm.name)
            bytes(other.buf[:8])
            other.close()
        samples.append((time.perf_counter() - start) / ATTACH_N * 1e6)
    report("attach_us", samples)
    shm.close()
    shm.unlink()


if __name__ == "__main__":
    main()
