"""Command-line front end of `fastnn bench`."""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def _alternate(fns, repeats, warmup=2):
    """Times each callable in fns alternately; returns per-contender lists of seconds."""
    for _ in range(warmup):
        for f in fns:
            f()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            times[i].append(time.perf_counter() - t0)
    return times


def _bench_gemm(sizes, repeats, threads):
    import fastnn
    from fastnn import ops

    fastnn.set_num_threads(threads)
    rows = []
    rng = np.random.default_rng(0)
    for (m, k, n) in sizes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out_np = np.empty((m, n), np.float32)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        got = ops.gemm(a, b).numpy()
        tol = 4 * k * np.finfo(np.float32).eps * (np.abs(a) @ np.abs(b)).max()
        err = np.abs(got - ref).max()
        if not err <= tol:
            raise SystemExit(f"refusing to benchmark: fastnn gemm {m}x{k}x{n} is wrong (max error {err:.3g} > {tol:.3g})")
        tf, tn = _alternate([lambda: ops.gemm(a, b), lambda: np.matmul(a, b, out=out_np)], repeats)
        mf, mn = statistics.median(tf), statistics.median(tn)
        flops = 2.0 * m * n * k
        rows.append((f"{m}x{k}x{n}", mf * 1e3, mn * 1e3, mn / mf, flops / mf / 1e9, flops / mn / 1e9))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fastnn bench", description=__doc__)
    p.add_argument("suite", nargs="?", default="gemm", choices=["gemm"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    import fastnn

    threads = args.threads or fastnn.get_num_threads()
    if not hasattr(fastnn.ops, "gemm"):
        print("fastnn bench: no GEMM kernel in this build yet")
        return 1
    sizes = [(256, 256, 256), (1024, 1024, 1024)] if args.quick else [(256, 256, 256), (1024, 1024, 1024), (2048, 2048, 2048), (64, 784, 128)]
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"fastnn {fastnn.__version__}  simd={fastnn.get_simd_level()}  threads={threads}  "
          f"numpy {np.__version__} (OpenBLAS env: {env})")
    rows = _bench_gemm(sizes, args.repeats, threads)
    print(f"{'gemm M x K x N':>16} {'fastnn ms':>10} {'numpy ms':>10} {'speedup':>8} {'fastnn GF/s':>12} {'numpy GF/s':>11}")
    for r in rows:
        print(f"{r[0]:>16} {r[1]:10.3f} {r[2]:10.3f} {r[3]:8.2f} {r[4]:12.1f} {r[5]:11.1f}")
    return 0
