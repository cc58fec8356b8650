"""Python-layer overhead and end-to-end MLP training throughput (fastnn vs NumPy vs torch).

    PYTHONPATH=build-dev/python python bench/python_layer_bench.py [--threads N] [--rounds R]

1. Per-op overhead: a tiny op (1x1 tensors) with no graph, with a graph node, and the same op
   in torch; plus the bare binding call — the difference is Python + autograd cost.
2. 784-128-10 MLP, batch 64, one training step (forward, cross-entropy, backward, Adam):
   fastnn (nn + optim + autograd), a hand-written NumPy implementation, torch (same model,
   same init scale). Rounds alternate between the three in one process; medians reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import fastnn as fnn
from fastnn import nn, optim


def per_call(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def op_overhead(rounds):
    a = fnn.tensor(np.ones((1, 1), np.float32))
    b = fnn.tensor(np.ones((1, 1), np.float32))
    ag = fnn.tensor(np.ones((1, 1), np.float32), requires_grad=True)
    w = fnn.tensor(np.ones((1, 1), np.float32), requires_grad=True)
    ta, tb = torch.ones(1, 1), torch.ones(1, 1)
    tg = torch.ones(1, 1, requires_grad=True)
    tw = torch.ones(1, 1, requires_grad=True)
    cases = {
        "fastnn a+b (no graph)": lambda: a + b,
        "fastnn a+b (records node)": lambda: ag + b,
        "torch a+b": lambda: ta + tb,
        "torch a+b (records node)": lambda: tg + tb,
        "fastnn _C.linear (bare binding)": lambda: fnn._C.linear(a, b),
        "fastnn F.linear (no graph)": lambda: nn.functional.linear(a, b),
        "fastnn F.linear (records node)": lambda: nn.functional.linear(ag, w),
        "torch F.linear (records node)": lambda: torch.nn.functional.linear(tg, tw),
    }
    res = {k: [] for k in cases}
    for _ in range(rounds):
        for k, f in cases.items():
            res[k].append(per_call(f, 2000))
    return {k: statistics.median(v) * 1e6 for k, v in res.items()}


def mlp_fastnn(x, y):
    fnn.manual_seed(0)
    m = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    o = optim.Adam(m.parameters(), lr=1e-3)
    xt, yt = fnn.tensor(x), fnn.tensor(y)
    ce = nn.functional.cross_entropy

    def step():
        loss = ce(m(xt), yt)
        o.zero_grad()
        loss.backward()
        o.step()
    return step


def mlp_torch(x, y):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    o = torch.optim.Adam(m.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    ce = torch.nn.functional.cross_entropy

    def step():
        loss = ce(m(xt), yt)
        o.zero_grad()
        loss.backward()
        o.step()
    return step


def mlp_numpy(x, y):
    rng = np.random.default_rng(0)
    p = [rng.uniform(-1 / 28, 1 / 28, (784, 128)).astype(np.float32), np.zeros(128, np.float32),
         rng.uniform(-1 / 11.3, 1 / 11.3, (128, 10)).astype(np.float32), np.zeros(10, np.float32)]
    m = [np.zeros_like(q) for q in p]
    v = [np.zeros_like(q) for q in p]
    state = {"t": 0}
    n = len(x)
    onehot = np.eye(10, dtype=np.float32)[y]

    def step():
        w1, b1, w2, b2 = p
        h = x @ w1 + b1
        np.maximum(h, 0, out=h)
        z = h @ w2 + b2
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        prob = e / e.sum(1, keepdims=True)
        g2 = (prob - onehot) / n
        gw2 = h.T @ g2
        gb2 = g2.sum(0)
        gh = g2 @ w2.T
        gh[h <= 0] = 0
        gw1 = x.T @ gh
        gb1 = gh.sum(0)
        state["t"] += 1
        t = state["t"]
        for q, g, mm, vv in zip(p, (gw1, gb1, gw2, gb2), m, v):
            mm *= 0.9
            mm += 0.1 * g
            vv *= 0.999
            vv += 0.001 * g * g
            q -= 1e-3 / (1 - 0.9 ** t) * mm / (np.sqrt(vv / (1 - 0.999 ** t)) + 1e-8)
    return step


def mlp_throughput(rounds, steps=50, batch=64):
    rng = np.random.default_rng(0)
    x = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    impls = {"fastnn": mlp_fastnn(x, y), "numpy": mlp_numpy(x, y), "torch": mlp_torch(x, y)}
    for f in impls.values():
        for _ in range(5):
            f()
    res = {k: [] for k in impls}
    for _ in range(rounds):
        for k, f in impls.items():
            res[k].append(batch / per_call(f, steps))
    return {k: statistics.median(v) for k, v in res.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if args.threads:
        fnn.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    print(f"fastnn threads {fnn.get_num_threads()}, simd {fnn.get_simd_level()}, torch threads "
          f"{torch.get_num_threads()}")
    print("kernels:", fnn._kernels.kernel_status())
    print("\nper-op cost (median, us/call):")
    for k, v in op_overhead(args.rounds).items():
        print(f"  {k:36s} {v:8.2f}")
    print("\n784-128-10 MLP, batch 64, Adam: training throughput (median samples/s):")
    r = mlp_throughput(args.rounds)
    for k, v in r.items():
        print(f"  {k:8s} {v:12,.0f}")
    best = max(r["numpy"], r["torch"])
    print(f"  fastnn / faster peer = {r['fastnn'] / best:.2f}x")


if __name__ == "__main__":
    main()
