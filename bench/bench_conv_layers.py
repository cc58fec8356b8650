"""Convolution layer benchmark (fastnn issue 4): fastnn vs NumPy im2col + matmul vs
torch.nn.functional.conv2d, forward and forward+backward, batch 32, medians of
alternating runs in one process; "torch at its best" = torch in a child process with
glibc malloc tuned to keep freed memory (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=64G).

    PYTHONPATH=build-x/python python bench/bench_conv_layers.py [--reps 15]
GFLOP/s = 2*N*O*Ho*Wo*C*kh*kw / t (fwd+bwd: 3x that work)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

# (name, C, O, H, W, k, pad)
LAYERS = [("3->32 32x32 3x3", 3, 32, 32, 32, 3, 1), ("32->64 32x32 3x3", 32, 64, 32, 32, 3, 1),
          ("64->128 16x16 3x3", 64, 128, 16, 16, 3, 1), ("128->128 8x8 3x3", 128, 128, 8, 8, 3, 1),
          ("1->32 28x28 5x5", 1, 32, 28, 28, 5, 2)]
N = 32


def flops(C, O, H, W, k, pad):
    Ho, Wo = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    return 2.0 * N * O * Ho * Wo * C * k * k


def data(C, O, H, W, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    Ho, Wo = H + 2 * (k // 2) - k + 1, W + 2 * (k // 2) - k + 1
    gy = rng.standard_normal((N, O, Ho, Wo)).astype(np.float32)
    return x, w, b, gy


def median_time(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


# ---- NumPy im2col (stride tricks) + matmul ----------------------------------------------
def np_fwd(x, w, b, pad):
    O, C, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))  # N C Ho Wo k k
    n, c, ho, wo = col.shape[:4]
    cm = col.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)
    y = cm @ w.reshape(O, -1).T + b
    return y.reshape(n, ho, wo, O).transpose(0, 3, 1, 2), cm


def np_fwd_bwd(x, w, b, gy, pad):
    O, C, k, _ = w.shape
    y, cm = np_fwd(x, w, b, pad)
    n, _, ho, wo = gy.shape
    g = gy.transpose(0, 2, 3, 1).reshape(-1, O)
    dw = (g.T @ cm).reshape(w.shape)
    db = g.sum(0)
    dcol = (g @ w.reshape(O, -1)).reshape(n, ho, wo, C, k, k)
    dxp = np.zeros((n, C, x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), np.float32)
    for r in range(k):
        for s in range(k):
            dxp[:, :, r:r + ho, s:s + wo] += dcol[:, :, :, :, r, s].transpose(0, 3, 1, 2)
    return y, dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw, db


# ---- torch ------------------------------------------------------------------------------
def torch_fns(x, w, b, gy, pad):
    import torch
    import torch.nn.functional as F
    tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, gy))
    txr, twr, tbr = (t.clone().requires_grad_(True) for t in (tx, tw, tb))

    def fwd():
        with torch.no_grad():
            return F.conv2d(tx, tw, tb, padding=pad)

    def fb():
        y = F.conv2d(txr, twr, tbr, padding=pad)
        gx, gw, gb = torch.autograd.grad(y, (txr, twr, tbr), tg)
        return gx

    return fwd, fb


def torch_only(reps):
    import torch
    torch.set_num_threads(2)
    out = {}
    for name, C, O, H, W, k, pad in LAYERS:
        x, w, b, gy = data(C, O, H, W, k)
        fwd, fb = torch_fns(x, w, b, gy, pad)
        tf, tfb = [], []
        for _ in range(reps):
            tf.append(median_time(fwd, 1))
            tfb.append(median_time(fb, 1))
        out[name] = (float(np.median(tf)), float(np.median(tfb)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--torch-only", action="store_true")
    ap.add_argument("--no-torch-best", action="store_true")
    args = ap.parse_args()
    if args.torch_only:
        print(json.dumps(torch_only(args.reps)))
        return
    best = {}
    if not args.no_torch_best:
        env = dict(os.environ, MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_="68719476736")
        r = subprocess.run([sys.executable, __file__, "--torch-only", "--reps", str(args.reps)], env=env,
                           capture_output=True, text=True, check=True)
        best = json.loads(r.stdout.strip().splitlines()[-1])
    import torch

    import fastnn
    from fastnn import ops
    torch.set_num_threads(2)
    print(f"fastnn threads={fastnn.get_num_threads()} simd={fastnn.get_simd_level()}  torch threads=2  batch {N}")
    hdr = f"{'layer':20s} {'pass':7s} {'fastnn ms':>9s} {'GF/s':>6s} {'numpy ms':>9s} {'torch ms':>9s} {'best ms':>8s} {'x numpy':>7s} {'x torch':>7s} {'x best':>7s}"
    print(hdr)
    for name, C, O, H, W, k, pad in LAYERS:
        x, w, b, gy = data(C, O, H, W, k)
        tfwd, tfb = torch_fns(x, w, b, gy, pad)
        fns = {
            "fwd": dict(fastnn=lambda: ops.conv2d(x, w, b, padding=pad), numpy=lambda: np_fwd(x, w, b, pad),
                        torch=tfwd),
            "fwd+bwd": dict(fastnn=lambda: (ops.conv2d(x, w, b, padding=pad),
                                            ops.conv2d_backward(gy, x, w, padding=pad)),
                            numpy=lambda: np_fwd_bwd(x, w, b, gy, pad), torch=tfb),
        }
        for pi, (pas, f) in enumerate(fns.items()):
            ts = {key: [] for key in f}
            for _ in range(args.reps):  # A/B alternating
                for key, fn in f.items():
                    ts[key].append(median_time(fn, 1))
            med = {key: float(np.median(v)) for key, v in ts.items()}
            mins = {key: float(np.min(v)) for key, v in ts.items()}
            tb = best.get(name, (float("nan"), float("nan")))[pi]
            fl = flops(C, O, H, W, k, pad) * (3 if pas == "fwd+bwd" else 1)
            print(f"{name:20s} {pas:7s} {med['fastnn']*1e3:9.2f} {fl/med['fastnn']/1e9:6.1f} {med['numpy']*1e3:9.2f} "
                  f"{med['torch']*1e3:9.2f} {tb*1e3:8.2f} {med['numpy']/med['fastnn']:7.2f} "
                  f"{med['torch']/med['fastnn']:7.2f} {tb/med['fastnn']:7.2f}   (min-based: x numpy "
                  f"{mins['numpy']/mins['fastnn']:.2f}, x torch {mins['torch']/mins['fastnn']:.2f})", flush=True)


if __name__ == "__main__":
    main()
