"""Quick GEMM measurement (not a test): fastnn vs NumPy in one process, alternating A/B,
median of repeats. Usage:  PYTHONPATH=build-x/python python bench/gemm_quick.py [--reps N]

Reports GFLOP/s, the fastnn/NumPy speed ratio and, for squares, the fraction of the FMA
peak measured by fastnn's built-in FMA probe (also `fastnn bench --probe`)."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import fastnn
from fastnn.ops import gemm, linear


def measure_peak(threads):
    """Peak FP32 FMA GFLOP/s at the current SIMD level (fastnn's built-in probe)."""
    return fastnn._C._probe_fma_gflops(threads, 0.5)


CLOCK = time.perf_counter


def bench(fns, reps, min_time=0.02):
    """Alternates the functions; returns the median seconds per call of each."""
    times = [[] for _ in fns]
    for f in fns:  # warm-up (caches, allocator, thread pool)
        f()
        f()
    inner = []
    for f in fns:
        t0 = CLOCK()
        f()
        dt = CLOCK() - t0
        inner.append(max(1, int(min_time / max(dt, 1e-7))))
    for _ in range(reps):
        for i, f in enumerate(fns):
            t0 = CLOCK()
            for _ in range(inner[i]):
                f()
            times[i].append((CLOCK() - t0) / inner[i])
    return [statistics.median(t) for t in times], [min(t) for t in times]


def row(name, flops, med, best, peak=None):
    """Median and best (min time) of the alternated runs; on a shared, loaded VM the best
    is the better estimate of what the code can do, the median of what a user sees."""
    (t_fnn, t_np), (b_fnn, b_np) = med, best
    g_f, g_n = flops / t_fnn / 1e9, flops / t_np / 1e9
    bg_f, bg_n = flops / b_fnn / 1e9, flops / b_np / 1e9
    extra = f"  best {100 * bg_f / peak:5.1f}% of peak" if peak else ""
    print(f"{name:34s} median: fastnn {g_f:6.1f} numpy {g_n:6.1f} GF/s ({t_np / t_fnn:4.2f}x) | "
          f"best: fastnn {bg_f:6.1f} numpy {bg_n:6.1f} GF/s ({b_np / b_fnn:4.2f}x){extra}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="skip 4096^3")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with process CPU time (summed over threads): GFLOP per CPU-second, "
                         "insensitive to preemption on an oversubscribed machine")
    args = ap.parse_args()
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    fastnn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    peak = measure_peak(args.threads)
    print(f"simd {fastnn.get_simd_level()}, threads {args.threads}, FMA peak "
          f"{peak if peak else float('nan'):.1f} GFLOP/s; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}", flush=True)

    def r(*s):
        return rng.standard_normal(s, dtype=np.float32)

    sizes = [1024, 2048] + ([] if args.quick else [4096])
    for n in sizes:
        a, b = r(n, n), r(n, n)
        reps = args.reps if n < 4096 else max(3, args.reps // 2)
        t = bench([lambda: gemm(a, b), lambda: a @ b], reps)
        row(f"square {n}", 2.0 * n**3, *t, peak=peak)
    for (m, k, n, tb) in [(64, 784, 128, False), (64, 128, 10, False), (256, 4096, 1024, False),
                          (8192, 512, 512, False), (512, 512, 8192, False), (1024, 1024, 1024, True)]:
        a = r(m, k)
        b = r(n, k) if tb else r(k, n)
        if tb:
            t = bench([lambda: gemm(a, b, trans_b=True), lambda: a @ b.T], args.reps)
        else:
            t = bench([lambda: gemm(a, b), lambda: a @ b], args.reps)
        row(f"({m},{k},{n}){' trans_b' if tb else ''}", 2.0 * m * k * n, *t)
    for (m, k, n) in [(64, 784, 128), (512, 1024, 1024), (4096, 1024, 1024)]:
        x, w, bias = r(m, k), r(n, k), r(n)
        t = bench([lambda: linear(x, w, bias, activation="relu"), lambda: np.maximum(x @ w.T + bias, 0)],
                  args.reps)
        row(f"linear+bias+relu ({m},{k})->{n}", 2.0 * m * k * n, *t)
    fastnn.set_num_threads(1)
    a, b = r(1024, 1024), r(1024, 1024)
    print("1 thread (NumPy still uses its default thread count unless OPENBLAS_NUM_THREADS=1):")
    t = bench([lambda: gemm(a, b), lambda: a @ b], args.reps)
    row("square 1024, 1 thread", 2.0 * 1024**3, *t, peak=measure_peak(1))


if __name__ == "__main__":
    sys.exit(main())
