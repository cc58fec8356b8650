"""Benchmarks of the fused optimizers and the fused softmax+cross-entropy (issue 6).

    PYTHONPATH=build-x/python python bench/train_quick.py [--quick]

Adam on flat 1M / 10M / 50M float32 and on 200 mixed tensors totalling 10M, against NumPy
in-place ufuncs with out= and torch.optim.Adam(foreach=True) / (fused=True); all variants of a
case run alternately in one process on reused buffers, medians reported. GB/s counts 28 B/param
(read p, g, m, v; write p, m, v) and is compared with fastnn's adam-pattern bandwidth probe.
Cross entropy forward+backward on (4096, 32000) against a float32 NumPy implementation.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastnn as fnn
from fastnn import _C, ops

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def _alternate(fns: dict, repeats: int) -> dict:
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up (first touch, caches)
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _numpy_adam(ps, gs, ms, vs, tmp, step, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    bc1 = 1 - b1 ** step
    bc2s = (1 - b2 ** step) ** 0.5
    for p, g, m, v, t in zip(ps, gs, ms, vs, tmp):
        t = t[: p.size].reshape(p.shape)
        np.subtract(g, m, out=t)
        np.multiply(t, 1 - b1, out=t)
        np.add(m, t, out=m)
        np.multiply(v, b2, out=v)
        np.multiply(g, g, out=t)
        np.multiply(t, 1 - b2, out=t)
        np.add(v, t, out=v)
        np.sqrt(v, out=t)
        np.divide(t, bc2s, out=t)
        np.add(t, eps, out=t)
        np.divide(m, t, out=t)
        np.multiply(t, -lr / bc1, out=t)
        np.add(p, t, out=p)


def bench_adam(sizes, repeats, threads):
    fnn.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    rows = []
    for name, shapes in sizes:
        total = sum(int(np.prod(s)) for s in shapes)
        rng = np.random.default_rng(0)
        ps = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        gs = [rng.standard_normal(s).astype(np.float32) * 1e-2 for s in shapes]
        ms = [np.zeros(s, np.float32) for s in shapes]
        vs = [np.zeros(s, np.float32) for s in shapes]
        tmp = [np.empty(max(int(np.prod(s)) for s in shapes), np.float32)]
        state = {"step": 0}

        def fastnn_step():
            state["step"] += 1
            ops.adam_(ps, gs, ms, vs, step=state["step"])

        np_state = {"step": 0}
        nps = [p.copy() for p in ps]
        nms = [m.copy() for m in ms]
        nvs = [v.copy() for v in vs]

        def numpy_step():
            np_state["step"] += 1
            _numpy_adam(nps, gs, nms, nvs, tmp * len(nps), np_state["step"])

        fns = {"fastnn": fastnn_step, "numpy": numpy_step}
        if torch is not None:
            for mode in ("foreach", "fused"):
                tp = [torch.from_numpy(p.copy()).requires_grad_() for p in ps]
                for t, g in zip(tp, gs):
                    t.grad = torch.from_numpy(g)
                opt = torch.optim.Adam(tp, lr=1e-3, **{mode: True})
                fns[f"torch_{mode}"] = opt.step
        med = _alternate(fns, repeats)
        gbs = {k: 28 * total / v / 1e9 for k, v in med.items()}
        rows.append((name, total, med, gbs))
    return rows


def bench_ce(rows_, classes, repeats, threads):
    fnn.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows_, classes)).astype(np.float32)
    t = rng.integers(0, classes, rows_)
    g_np = np.empty_like(x)
    mx = np.empty((rows_, 1), np.float32)
    s = np.empty((rows_, 1), np.float32)

    def numpy_ce():
        np.max(x, axis=1, keepdims=True, out=mx)
        np.subtract(x, mx, out=g_np)
        np.exp(g_np, out=g_np)
        np.sum(g_np, axis=1, keepdims=True, out=s)
        lse = np.log(s[:, 0]) + mx[:, 0]
        loss = np.mean(lse - x[np.arange(rows_), t])
        np.divide(g_np, s * rows_, out=g_np)
        g_np[np.arange(rows_), t] -= 1.0 / rows_
        return loss

    def fastnn_ce():
        return ops.cross_entropy_forward_backward(x, t)

    fns = {"fastnn": fastnn_ce, "numpy": numpy_ce}
    if torch is not None:
        torch.set_num_threads(threads)
        tx = torch.from_numpy(x).requires_grad_()
        tt = torch.from_numpy(t)

        def torch_ce():
            tx.grad = None
            torch.nn.functional.cross_entropy(tx, tt).backward()

        fns["torch"] = torch_ce
    return _alternate(fns, repeats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=fnn.get_num_threads())
    args = ap.parse_args()
    rep = 5 if args.quick else 15
    rng = np.random.default_rng(1)
    mixed = rng.integers(1, 100_000, 200).astype(np.float64)
    mixed = np.maximum(1, (mixed / mixed.sum() * 10_000_000).astype(int))
    mixed[0] += 10_000_000 - mixed.sum()
    sizes = [("flat 1M", [(1_000_000,)]), ("flat 10M", [(10_000_000,)])]
    if not args.quick:
        sizes.append(("flat 50M", [(50_000_000,)]))
    sizes.append(("200 mixed = 10M", [(int(n),) for n in mixed]))
    print(f"threads={args.threads} simd={fnn.get_simd_level()}")
    probe = _C._probe_bandwidth_gbs("adam", 20_000_000, args.threads, 5)
    print(f"adam-pattern probe (read 4, write 3 arrays, best of 5): {probe:.2f} GB/s")
    for name, total, med, gbs in bench_adam(sizes, rep, args.threads):
        line = "  ".join(f"{k} {med[k] * 1e3:8.2f} ms ({gbs[k]:5.2f} GB/s)" for k in med)
        ratios = "  ".join(f"vs {k} x{med[k] / med['fastnn']:.2f}" for k in med if k != "fastnn")
        print(f"Adam {name:16s}: {line}\n    {ratios}  fastnn = {gbs['fastnn'] / probe * 100:.0f}% of probe")
    med = bench_ce(4096, 32000, 3 if args.quick else 7, args.threads)
    print("CE fwd+bwd (4096, 32000): " + "  ".join(f"{k} {v * 1e3:.1f} ms" for k, v in med.items())
          + "  " + "  ".join(f"vs {k} x{v / med['fastnn']:.2f}" for k, v in med.items() if k != "fastnn"))


if __name__ == "__main__":
    main()
