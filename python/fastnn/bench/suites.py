"""The kernel suites of `fastnn bench`: gemm, conv2d, attention, adam (+ softmax/cross-entropy).

Each suite is a generator of Case objects (core.py), built lazily so that only one case's
arrays are alive at a time. Shapes come from the kernel issues; ``cfg.size`` picks the
'full', 'quick' or 'tiny' (test) set. Work counts (the GFLOP/s and GB/s columns):
  GEMM 2MNK · conv 2·N·O·Ho·Wo·C·kh·kw, fwd+bwd 3x · attention 4·B·H·N²·D (halved when
  causal), fwd+bwd 3.5x (FlashAttention's count: 7 N²D matmuls, the backward recomputes P) ·
  Adam 28 bytes/param (read p, g, m, v; write p, m, v) · softmax+CE 12 bytes/logit (forward
  reads the logits, backward reads them again and writes the gradient).
Tolerances: a float32 dot product of length K is compared with float64 under
8·sqrt(K)·eps32·max(|a|·|b|): blocked/FMA summation errors grow like sqrt(K)·eps (the
worst-case K·eps bound would hide real bugs at K=4096), and 8 standard deviations leave
no false alarms over millions of outputs; a dropped or doubled term (O(|a||b|)) fails.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .core import EPS32, LIMIT, Case, Contender, NotAvailable
from .machine import optional_torch


@dataclasses.dataclass
class Config:
    size: str = "full"                   # 'full' | 'quick' | 'tiny'
    baselines: tuple = ("numpy", "torch")
    device: str = "cpu"
    threads: int = 1
    only_peers: tuple = ()               # child runs: keep only these contender names (plus fastnn)
    tour: bool = False                   # bare `fastnn bench` (quick sizes, <= 90 s in all)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))


def dot_tol(k: int, absprod_max: float) -> float:
    return 8.0 * math.sqrt(max(k, 1)) * EPS32 * absprod_max + 1e-30


class _Dev:
    """Moves fastnn inputs to the benchmark device once; synchronises after timed calls."""

    def __init__(self, device):
        import fastnn

        self.fnn = fastnn
        self.device = device
        self.sync = fastnn.cuda.synchronize if device == "cuda" else None

    def __call__(self, a):
        t = self.fnn.from_numpy(np.ascontiguousarray(a))
        return t.to(self.device) if self.device != "cpu" else t


def _op(name):
    """fastnn.ops.<name>, or NotAvailable."""
    import fastnn

    f = getattr(fastnn.ops, name, None)
    if f is None:
        raise NotAvailable(f"fastnn.ops.{name}")
    return f


def _torch_peer(cfg):
    if "torch" not in cfg.baselines:
        return None
    return optional_torch()


def _want(cfg, name):
    return not cfg.only_peers or name == "fastnn" or name in cfg.only_peers


def _keep(cfg, contenders):
    return [c for c in contenders if _want(cfg, c.name)]


# ---- GEMM ----------------------------------------------------------------------------------
def _gemm_shapes(cfg):
    if cfg.size == "tiny":
        return [(48, 40, 24, False)], [(16, 24, 8)], 32
    squares = [512, 1024] if cfg.size == "quick" else [1024, 2048, 4096]
    shapes = [(n, n, n, False) for n in squares]
    shapes += [(64, 784, 128, False), (64, 128, 10, False), (256, 4096, 1024, False), (8192, 512, 512, False),
               (512, 512, 8192, False), (1024, 1024, 1024, True)]
    return shapes, [(64, 784, 128), (1024, 1024, 1024)], 1024


def gemm_cases(cfg):
    gemm = _op("gemm")
    dev = _Dev(cfg.device)
    torch = _torch_peer(cfg)
    shapes, linear_shapes, n1 = _gemm_shapes(cfg)

    def make(m, k, n, trans_b, threads=None):
        rng = _rng(m * 7 + k * 3 + n)
        a = _randn(rng, m, k)
        b = _randn(rng, n, k) if trans_b else _randn(rng, k, n)
        bm = b.T if trans_b else b
        fa, fb = dev(a), dev(b)
        cs = [Contender("fastnn", "fastnn", lambda: gemm(fa, fb, trans_b=trans_b), sync=dev.sync)]
        if "numpy" in cfg.baselines:
            o = np.empty((m, n), np.float32)
            cs.append(Contender("numpy", "numpy", lambda: a @ bm))
            cs.append(Contender("numpy[out=]", "numpy", lambda: np.matmul(a, bm, out=o), variant="out=", best=True))
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            tbm = tb.T if trans_b else tb
            to = torch.empty((m, n))
            cs.append(Contender("torch", "torch", lambda: torch.matmul(ta, tbm)))
            cs.append(Contender("torch[out=]", "torch", lambda: torch.matmul(ta, tbm, out=to), variant="out=",
                                best=True))
        tol = dot_tol(k, float((np.abs(a) @ np.abs(bm)).max()) if m * n * k > 0 else 0.0)
        shape = f"{m}x{k}x{n}" + (" trans_b" if trans_b else "")
        return Case("gemm", "gemm", shape, 2.0 * m * n * k, "GFLOP/s", "fma", _keep(cfg, cs),
                    reference=lambda: a.astype(np.float64) @ bm.astype(np.float64), atol=tol, threads=threads,
                    intensity=2.0 * m * n * k / (4.0 * (m * k + k * n + m * n)))

    for (m, k, n, tb) in shapes:
        yield make(m, k, n, tb)
    yield make(n1, n1, n1, False, threads=1)

    linear = _op("linear")
    for (m, k, n) in linear_shapes:
        rng = _rng(m + k + n)
        x, w, bias = _randn(rng, m, k), _randn(rng, n, k, scale=1 / math.sqrt(k)), _randn(rng, n)
        fx, fw, fb = dev(x), dev(w), dev(bias)
        cs = [Contender("fastnn", "fastnn", lambda: linear(fx, fw, fb, activation="relu"), sync=dev.sync)]
        if "numpy" in cfg.baselines:
            o = np.empty((m, n), np.float32)

            def np_best(x=x, w=w, bias=bias, o=o):
                np.matmul(x, w.T, out=o)
                o += bias
                return np.maximum(o, 0, out=o)
            cs.append(Contender("numpy", "numpy", lambda x=x, w=w, bias=bias: np.maximum(x @ w.T + bias, 0)))
            cs.append(Contender("numpy[out=]", "numpy", np_best, variant="out=", best=True))
        if torch is not None:
            tx, tw, tbias = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias)
            to = torch.empty((m, n))
            F = torch.nn.functional
            cs.append(Contender("torch", "torch", lambda tx=tx, tw=tw, tb=tbias: F.relu(F.linear(tx, tw, tb))))
            cs.append(Contender("torch[out=]", "torch",
                                lambda tx=tx, tw=tw, tb=tbias, to=to: torch.relu_(torch.addmm(tb, tx, tw.T, out=to)),
                                variant="out=", best=True))
        tol = dot_tol(k, float((np.abs(x) @ np.abs(w.T)).max() + np.abs(bias).max()))
        ref = (lambda x=x, w=w, bias=bias:
               np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + bias.astype(np.float64), 0))
        yield Case("gemm", "linear+bias+relu", f"{m}x{k}x{n}", 2.0 * m * n * k, "GFLOP/s", "fma", _keep(cfg, cs),
                   reference=ref, atol=tol, intensity=2.0 * m * n * k / (4.0 * (m * k + k * n + m * n + n)))


# ---- conv2d --------------------------------------------------------------------------------
def _conv_shapes(cfg):
    # (batch, C, O, H=W, k, pad)
    if cfg.size == "tiny":
        return [(2, 3, 4, 6, 3, 1)]
    return [(32, 3, 32, 32, 3, 1), (32, 32, 64, 32, 3, 1), (32, 64, 128, 16, 3, 1), (32, 128, 128, 8, 3, 1),
            (32, 1, 32, 28, 5, 2)]


class NumpyConv:
    """im2col with stride tricks + one BLAS matmul; backward: two matmuls + col2im (a loop
    over the kh*kw taps, each a strided add over whole tensors). ``prealloc`` keeps the
    padded input, the column matrix and the outputs between calls (NumPy at its best)."""

    def __init__(self, x, w, b, pad, prealloc):
        self.x, self.w, self.b, self.pad, self.pre = x, w, b, pad, prealloc
        n, c, h, wd = x.shape
        o, _, kh, kw = w.shape
        self.kh, self.kw = kh, kw
        self.ho, self.wo = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
        self.wmat = w.reshape(o, c * kh * kw)
        if prealloc:
            self.xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), np.float32)
            self.cols = np.empty((n, self.ho, self.wo, c, kh, kw), np.float32)
            self.y2 = np.empty((n * self.ho * self.wo, o), np.float32)
            self.y = np.empty((n, o, self.ho, self.wo), np.float32)
            self.dcols = np.empty((n * self.ho * self.wo, c * kh * kw), np.float32)
            self.dxp = np.empty_like(self.xp)
            self.dw = np.empty((o, c * kh * kw), np.float32)
            self.dy2 = np.empty((n, self.ho, self.wo, o), np.float32)

    def _im2col(self):
        x, p = self.x, self.pad
        n, c, h, wd = x.shape
        if self.pre:
            xp = self.xp
            xp[:, :, p:p + h, p:p + wd] = x
        else:
            xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        win = np.lib.stride_tricks.sliding_window_view(xp, (self.kh, self.kw), axis=(2, 3))  # n c ho wo kh kw
        win = win.transpose(0, 2, 3, 1, 4, 5)
        if self.pre:
            np.copyto(self.cols, win)
            cols = self.cols
        else:
            cols = np.ascontiguousarray(win)
        return cols.reshape(n * self.ho * self.wo, -1)

    def forward(self):
        n = self.x.shape[0]
        o = self.w.shape[0]
        cols = self._im2col()
        if self.pre:
            np.matmul(cols, self.wmat.T, out=self.y2)
            self.y2 += self.b
            np.copyto(self.y, self.y2.reshape(n, self.ho, self.wo, o).transpose(0, 3, 1, 2))
            return self.y
        y2 = cols @ self.wmat.T + self.b
        return np.ascontiguousarray(y2.reshape(n, self.ho, self.wo, o).transpose(0, 3, 1, 2))

    def forward_backward(self, dy):
        y = self.forward()
        cols = (self.cols if self.pre else self._last_cols()).reshape(-1, self.wmat.shape[1])
        n, c, h, wd = self.x.shape
        o, p = self.w.shape[0], self.pad
        if self.pre:
            np.copyto(self.dy2, dy.transpose(0, 2, 3, 1))
            dy2 = self.dy2.reshape(-1, o)
            np.matmul(dy2.T, cols, out=self.dw)
            dw = self.dw
            np.matmul(dy2, self.wmat, out=self.dcols)
            dcols = self.dcols
            dxp = self.dxp
            dxp.fill(0)
        else:
            dy2 = np.ascontiguousarray(dy.transpose(0, 2, 3, 1)).reshape(-1, o)
            dw = dy2.T @ cols
            dcols = dy2 @ self.wmat
            dxp = np.zeros((n, c, h + 2 * p, wd + 2 * p), np.float32)
        db = dy.sum(axis=(0, 2, 3))
        d6 = dcols.reshape(n, self.ho, self.wo, c, self.kh, self.kw)
        for r in range(self.kh):
            for s in range(self.kw):
                dxp[:, :, r:r + self.ho, s:s + self.wo] += d6[:, :, :, :, r, s].transpose(0, 3, 1, 2)
        dx = dxp[:, :, p:p + h, p:p + wd]
        return y, dx, dw.reshape(self.w.shape), db

    def _last_cols(self):
        return self._im2col()


def conv2d_cases(cfg):
    conv2d = _op("conv2d")
    conv2d_backward = _op("conv2d_backward")
    dev = _Dev(cfg.device)
    torch = _torch_peer(cfg)
    for (n, c, o, hw, k, pad) in _conv_shapes(cfg):
        rng = _rng(n + c * 5 + o * 11 + hw)
        x = _randn(rng, n, c, hw, hw)
        w = _randn(rng, o, c, k, k, scale=1 / math.sqrt(c * k * k))
        b = _randn(rng, o)
        ho = hw + 2 * pad - k + 1
        dy = _randn(rng, n, o, ho, ho)
        fx, fw, fb, fdy = dev(x), dev(w), dev(b), dev(dy)
        flops = 2.0 * n * o * ho * ho * c * k * k
        shape = f"b{n} {c}->{o} {hw}x{hw} k{k}" + (f" p{pad}" if pad else "")
        # Output i is a sum of terms[i] products (y: C*k*k, dx: O*k*k, dw and db: N*Ho*Wo); with random
        # inputs its rounding error grows like sqrt(terms) * eps * its magnitude (blocked/FMA sums).
        # 8x that bound; measured 10-30x below it. A wrong tap, channel or padding is O(|value|).
        terms = [c * k * k, o * k * k, n * ho * ho, n * ho * ho]

        def conv_tol(i, r, terms=terms):
            return 8.0 * math.sqrt(terms[i]) * EPS32 * float(np.abs(r).max()) + 1e-30

        def ref_fwd(x=x, w=w, b=b, pad=pad):
            return NumpyConv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), pad, False).forward()

        def ref_fb(x=x, w=w, b=b, pad=pad, dy=dy):
            return NumpyConv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), pad,
                             False).forward_backward(dy.astype(np.float64))

        for mode in ("fwd", "fwd+bwd"):
            if mode == "fwd":
                cs = [Contender("fastnn", "fastnn", lambda fx=fx, fw=fw, fb=fb, pad=pad: conv2d(fx, fw, fb, 1, pad),
                                sync=dev.sync)]
            else:
                def fnn_fb(fx=fx, fw=fw, fb=fb, fdy=fdy, pad=pad):
                    y = conv2d(fx, fw, fb, 1, pad)
                    return (y,) + tuple(conv2d_backward(fdy, fx, fw, 1, pad))
                cs = [Contender("fastnn", "fastnn", fnn_fb, sync=dev.sync)]
            if "numpy" in cfg.baselines:
                shipped, best = NumpyConv(x, w, b, pad, False), NumpyConv(x, w, b, pad, True)
                if mode == "fwd":
                    cs.append(Contender("numpy", "numpy", shipped.forward, variant="im2col+matmul"))
                    cs.append(Contender("numpy[out=]", "numpy", best.forward, variant="out=", best=True))
                else:
                    cs.append(Contender("numpy", "numpy", lambda s=shipped, dy=dy: s.forward_backward(dy),
                                        variant="im2col+matmul"))
                    cs.append(Contender("numpy[out=]", "numpy", lambda s=best, dy=dy: s.forward_backward(dy),
                                        variant="out=", best=True))
            if torch is not None:
                F = torch.nn.functional
                tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
                if mode == "fwd":
                    cs.append(Contender("torch", "torch", lambda tx=tx, tw=tw, tb=tb, pad=pad:
                                        F.conv2d(tx, tw, tb, padding=pad)))
                else:
                    gx, gw, gb = (t.clone().requires_grad_(True) for t in (tx, tw, tb))

                    def torch_fb(gx=gx, gw=gw, gb=gb, tdy=tdy, pad=pad):
                        y = F.conv2d(gx, gw, gb, padding=pad)
                        return (y,) + torch.autograd.grad(y, (gx, gw, gb), tdy)
                    cs.append(Contender("torch", "torch", torch_fb, variant="autograd"))
            if mode == "fwd":
                yield Case("conv2d", "conv2d fwd", shape, flops, "GFLOP/s", "fma", _keep(cfg, cs), reference=ref_fwd,
                           atol=conv_tol, intensity=flops / (4.0 * (x.size + w.size + dy.size)))
            else:
                yield Case("conv2d", "conv2d fwd+bwd", shape, 3 * flops, "GFLOP/s", "fma", _keep(cfg, cs),
                           reference=ref_fb, atol=conv_tol,
                           intensity=3 * flops / (4.0 * (3 * x.size + 3 * w.size + 3 * dy.size)))


# ---- attention -----------------------------------------------------------------------------
class NumpyAttention:
    """A careful NumPy attention: one batch element at a time (peak memory H·N² instead of
    B·H·N²), scale folded into q, softmax in place (max-subtract, exp, normalise with out=),
    causal mask as a precomputed additive -inf matrix; the backward keeps P and uses the
    identity dS = P * (dP - rowsum(dO * O)). ``prealloc`` keeps every buffer between calls."""

    def __init__(self, q, k, v, causal, prealloc):
        self.q, self.k, self.v, self.causal, self.pre = q, k, v, causal, prealloc
        b, h, n, d = q.shape
        self.scale = 1.0 / math.sqrt(d)
        nk = k.shape[2]
        dt = q.dtype
        self.mask = None
        if causal:
            self.mask = np.where(np.arange(nk)[None, :] <= np.arange(n)[:, None] + (nk - n), 0.0, -np.inf).astype(dt)
        if prealloc:
            self.s = np.empty((h, n, nk), dt)
            self.out = np.empty_like(q)
            self.qs = np.empty((h, n, d), dt)
            self.dp = np.empty((h, n, nk), dt)
            self.dq, self.dk, self.dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
            self.rowmax = np.empty((h, n, 1), dt)
            self.rowsum = np.empty((h, n, 1), dt)

    def _probs(self, i):
        q, k = self.q[i], self.k[i]
        if self.pre:
            np.multiply(q, self.q.dtype.type(self.scale), out=self.qs)
            s = np.matmul(self.qs, k.transpose(0, 2, 1), out=self.s)
        else:
            s = (q * self.q.dtype.type(self.scale)) @ k.transpose(0, 2, 1)
        if self.mask is not None:
            s += self.mask
        m = np.max(s, axis=-1, keepdims=True, out=self.rowmax if self.pre else None)
        s -= m
        np.exp(s, out=s)
        l_ = np.sum(s, axis=-1, keepdims=True, out=self.rowsum if self.pre else None)
        s /= l_
        return s

    def forward(self):
        out = self.out if self.pre else np.empty_like(self.q)
        for i in range(self.q.shape[0]):
            p = self._probs(i)
            np.matmul(p, self.v[i], out=out[i])
        return out

    def forward_backward(self, do):
        out = self.out if self.pre else np.empty_like(self.q)
        dq = self.dq if self.pre else np.empty_like(self.q)
        dk = self.dk if self.pre else np.empty_like(self.k)
        dv = self.dv if self.pre else np.empty_like(self.v)
        sc = self.q.dtype.type(self.scale)
        for i in range(self.q.shape[0]):
            p = self._probs(i)
            np.matmul(p, self.v[i], out=out[i])
            np.matmul(p.transpose(0, 2, 1), do[i], out=dv[i])
            dp = np.matmul(do[i], self.v[i].transpose(0, 2, 1), out=self.dp if self.pre else None)
            delta = np.sum(do[i] * out[i], axis=-1, keepdims=True)
            dp -= delta
            dp *= p  # dS (unscaled)
            np.matmul(dp, self.k[i], out=dq[i])
            dq[i] *= sc
            np.matmul(dp.transpose(0, 2, 1), self.q[i], out=dk[i])
            dk[i] *= sc
        return out, dq, dk, dv


def attention_cases(cfg):
    attention = _op("attention")
    attention_backward = _op("attention_backward")
    import fastnn

    dev = _Dev(cfg.device)
    torch = _torch_peer(cfg)
    B, H, D = (1, 2, 16) if cfg.size == "tiny" else (4, 8, 64)
    ns = {"tiny": [24], "quick": [256, 1024], "full": [256, 512, 1024, 2048, 4096]}[cfg.size]
    if cfg.tour and cfg.size == "quick":
        ns = [256, 512]  # the N = 1024 cases and their float64 check took ~25 s of the tour's 90
    for n in ns:
        rng = _rng(n)
        q, k, v, do = (_randn(rng, B, H, n, D) for _ in range(4))
        fq, fk, fv, fdo = dev(q), dev(k), dev(v), dev(do)
        for causal in (False, True):
            flops = 4.0 * B * H * n * n * D * (0.5 if causal else 1.0)
            shape = f"B{B} H{H} N{n} D{D}" + (" causal" if causal else "")
            # Every output (o, dq, dk, dv) is a sum over N keys (or queries) of products whose
            # factors carry ~sqrt(D)-term dot-product rounding: its error grows like
            # sqrt(max(N, D)) * eps * its magnitude. 8x that (measured: 1x-1.5x at N <= 1024);
            # a dropped key, a wrong mask or a wrong scale is O(|value|) and fails.
            def att_tol(i, r, n=n, D=D):
                return 8.0 * math.sqrt(max(n, D)) * EPS32 * float(np.abs(r).max()) + 1e-30
            for mode in ("fwd", "fwd+bwd"):
                if mode == "fwd":
                    fnn = Contender("fastnn", "fastnn", lambda fq=fq, fk=fk, fv=fv, c=causal: attention(fq, fk, fv, causal=c),
                                    sync=dev.sync)
                else:
                    def fnn_fb(fq=fq, fk=fk, fv=fv, fdo=fdo, c=causal):
                        o, lse = attention(fq, fk, fv, causal=c, return_lse=True)
                        return (o,) + tuple(attention_backward(fdo, fq, fk, fv, o, lse, causal=c))
                    fnn = Contender("fastnn", "fastnn", fnn_fb, sync=dev.sync)
                if cfg.device == "cpu":
                    def fnn_mem(f=fnn.fn):
                        before = fastnn.memory_stats()["allocated_bytes"]
                        fastnn._C.reset_peak_memory_stats()
                        r = f()
                        peak = fastnn.memory_stats()["peak_allocated_bytes"]
                        return int(peak - before), _output_bytes(r)
                    fnn.memory = fnn_mem
                cs = [fnn]
                if "numpy" in cfg.baselines:
                    shipped, best = NumpyAttention(q, k, v, causal, False), NumpyAttention(q, k, v, causal, True)
                    if mode == "fwd":
                        a, bst = Contender("numpy", "numpy", shipped.forward), Contender(
                            "numpy[out=]", "numpy", best.forward, variant="out=", best=True)
                    else:
                        a = Contender("numpy", "numpy", lambda s=shipped, do=do: s.forward_backward(do))
                        bst = Contender("numpy[out=]", "numpy", lambda s=best, do=do: s.forward_backward(do),
                                        variant="out=", best=True)
                    a.memory = _tracemalloc_peak(a.fn)
                    cs += [a, bst]
                if torch is not None:
                    F = torch.nn.functional
                    tq, tk, tv, tdo = (torch.from_numpy(t) for t in (q, k, v, do))
                    if mode == "fwd":
                        cs.append(Contender("torch", "torch", lambda tq=tq, tk=tk, tv=tv, c=causal:
                                            F.scaled_dot_product_attention(tq, tk, tv, is_causal=c), variant="SDPA"))
                    else:
                        gq, gk, gv = (t.clone().requires_grad_(True) for t in (tq, tk, tv))

                        def torch_fb(gq=gq, gk=gk, gv=gv, tdo=tdo, c=causal):
                            o = F.scaled_dot_product_attention(gq, gk, gv, is_causal=c)
                            return (o,) + torch.autograd.grad(o, (gq, gk, gv), tdo)
                        cs.append(Contender("torch", "torch", torch_fb, variant="SDPA autograd"))

                def ref(q=q, k=k, v=v, do=do, c=causal, mode=mode):
                    r = NumpyAttention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), c, False)
                    return r.forward() if mode == "fwd" else r.forward_backward(do.astype(np.float64))
                yield Case("attention", f"attention {mode}", shape, flops * (1.0 if mode == "fwd" else 3.5),
                           "GFLOP/s", "fma", _keep(cfg, cs), reference=ref,
                           atol=att_tol,
                           intensity=flops * (1.0 if mode == "fwd" else 3.5) / (4.0 * q.size * (4 if mode == "fwd" else 10)))


def _tracemalloc_peak(fn):
    def measure():
        import tracemalloc

        tracemalloc.start()
        try:
            r = fn()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return int(peak), _output_bytes(r)
    return measure


def _output_bytes(r):
    """Bytes of the arrays a call returned: the part of its peak memory that is its result, not
    workspace (o, dq, dk, dv and lse for attention fwd+bwd)."""
    if isinstance(r, (tuple, list)):
        return sum(_output_bytes(x) for x in r)
    n = getattr(r, "nbytes", None)
    if n is None and hasattr(r, "numel") and hasattr(r, "element_size"):
        n = r.numel() * r.element_size()
    return int(n) if n is not None else 0


# ---- Adam ----------------------------------------------------------------------------------
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)


class NumpyAdam:
    """Adam in NumPy at its best: in place, in chunks of 32K elements so that the five
    temporaries stay in L1/L2, every ufunc with out=."""

    CHUNK = 1 << 15

    def __init__(self, params, grads, ms, vs):
        self.p, self.g, self.m, self.v = params, grads, ms, vs
        self.step = 0
        self.t1 = np.empty(self.CHUNK, np.float32)
        self.t2 = np.empty(self.CHUNK, np.float32)

    def __call__(self):
        self.step += 1
        b1, b2, lr, eps = ADAM["beta1"], ADAM["beta2"], ADAM["lr"], ADAM["eps"]
        bc1, bc2 = 1 - b1 ** self.step, 1 - b2 ** self.step
        step_size = np.float32(lr / bc1)
        inv_sqrt_bc2 = np.float32(1 / math.sqrt(bc2))
        b1f, b2f = np.float32(b1), np.float32(b2)
        omb1, omb2, epsf = np.float32(1 - b1), np.float32(1 - b2), np.float32(eps)
        for p, g, m, v in zip(self.p, self.g, self.m, self.v):
            for s in range(0, p.size, self.CHUNK):
                e = min(s + self.CHUNK, p.size)
                pc, gc, mc, vc = p[s:e], g[s:e], m[s:e], v[s:e]
                t1, t2 = self.t1[: e - s], self.t2[: e - s]
                mc *= b1f
                np.multiply(gc, omb1, out=t1)
                mc += t1
                vc *= b2f
                np.multiply(gc, gc, out=t1)
                t1 *= omb2
                vc += t1
                np.sqrt(vc, out=t2)
                t2 *= inv_sqrt_bc2
                t2 += epsf
                np.divide(mc, t2, out=t1)
                t1 *= step_size
                pc -= t1


def _adam_ref(p, g, m, v, step=1):
    p, g, m, v = (x.astype(np.float64) for x in (p, g, m, v))
    b1, b2 = ADAM["beta1"], ADAM["beta2"]
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mh, vh = m / (1 - b1 ** step), v / (1 - b2 ** step)
    return p - ADAM["lr"] * mh / (np.sqrt(vh) + ADAM["eps"]), m, v


# A set of up to 2M parameters (its 28 B/param sit in this machine's 105 MB L3) takes well under
# a millisecond a step. Timed one call at a time right after a peer's multi-millisecond
# single-threaded run, it measured that run's after-effects, not Adam (session 5, 1M): the bench
# parks idle OpenMP workers after 20000 spins (cli._BENCH_ENV), so each 2-thread call first
# waited for a parked worker (OMP_WAIT_POLICY=passive reproduces the quiet bench's 28.4 GB/s; a
# spinning worker gives ~68 GB/s), and after any ~4 ms pause (NumPy's step, even a sleep) the
# next three calls of any contender ran ~45/25/10 % slower than the steady state. The same-buffer
# probe, run right after fastnn, paid neither. So these sizes are timed as the mean of 8
# back-to-back steps after 2 untimed ones (core.alternate), every contender alike.
ADAM_STEADY_CALLS, ADAM_STEADY_MAX = 8, 1 << 21


def _adam_sizes(cfg):
    if cfg.size == "tiny":
        return [("flat", [5000])], 2
    sizes = [("flat", [1 << 20])]
    if cfg.size == "full":  # the quick tour keeps 1M and the 200-tensor 10M case
        sizes += [("flat", [10 * 1000 * 1000]), ("flat", [50 * 1000 * 1000])]
    rng = _rng(200)
    w = rng.lognormal(0.0, 1.5, 200)
    counts = np.maximum(1, np.round(w / w.sum() * 10_000_000)).astype(int)
    counts[np.argmax(counts)] += 10_000_000 - counts.sum()
    sizes.append(("200 mixed", [int(c) for c in counts]))
    return sizes, None


def adam_cases(cfg):
    adam_ = _op("adam_")
    dev = _Dev(cfg.device)
    torch = _torch_peer(cfg)
    sizes, _ = _adam_sizes(cfg)
    for label, counts in sizes:
        total = sum(counts)
        rng = _rng(total % 1000)
        init = [(_randn(rng, c), _randn(rng, c, scale=1e-2), _randn(rng, c, scale=1e-3),
                 np.abs(_randn(rng, c, scale=1e-4))) for c in counts]

        def fresh(init=init):
            return [tuple(a.copy() for a in t) for t in init]

        shape = f"{total / 1e6:g}M params" + ("" if label == "flat" else f" ({label})")
        st = fresh()
        fp, fg, fm, fv = ([dev(t[i]) for t in st] for i in range(4))
        step = [0]

        def fnn_step(fp=fp, fg=fg, fm=fm, fv=fv, step=step):
            step[0] += 1
            adam_(fp, fg, fm, fv, step=step[0], **ADAM)

        def fnn_check(init=init):
            s = [tuple(dev(a) for a in t) for t in fresh(init)]
            ps, gs, ms, vs = (list(x) for x in zip(*s))
            adam_(ps, gs, ms, vs, step=1, **ADAM)
            return ps + ms + vs
        cs = [Contender("fastnn", "fastnn", fnn_step, check=fnn_check, sync=dev.sync)]
        import fastnn

        probe = getattr(fastnn._C, "_probe_adam_pattern", None)
        if probe is not None and cfg.device == "cpu":
            # this machine's limit for the pattern, on fastnn's own buffers (values unchanged)
            cs.append(Contender("probe[adam pattern]", LIMIT, lambda fp=fp, fg=fg, fm=fm, fv=fv: probe(fp, fg, fm, fv),
                                variant="same buffers, plain loop"))
        if "numpy" in cfg.baselines:
            ns = fresh()
            opt = NumpyAdam(*([t[i] for t in ns] for i in range(4)))

            def np_check(init=init):
                s = fresh(init)
                o = NumpyAdam(*([t[i] for t in s] for i in range(4)))
                o()
                return [t[0] for t in s] + [t[2] for t in s] + [t[3] for t in s]
            cs.append(Contender("numpy[out=]", "numpy", opt, variant="in place, chunked out=", check=np_check,
                                best=True))
        if torch is not None:
            for impl in ("foreach", "fused"):
                ts = fresh()
                params = [torch.from_numpy(t[0]).requires_grad_(False) for t in ts]
                opt = _torch_adam(torch, params, [t[1] for t in ts], [t[2] for t in ts], [t[3] for t in ts], impl)
                if opt is None:
                    continue

                def t_check(init=init, impl=impl):
                    s = fresh(init)
                    ps = [torch.from_numpy(t[0]) for t in s]
                    o = _torch_adam(torch, ps, [t[1] for t in s], [t[2] for t in s], [t[3] for t in s], impl)
                    o.step()
                    st = [o.state[p] for p in ps]
                    return ps + [x["exp_avg"] for x in st] + [x["exp_avg_sq"] for x in st]
                cs.append(Contender(f"torch[{impl}]", "torch", opt.step, variant=impl, check=t_check, best=True))

        def ref(init=init):
            rs = [_adam_ref(*t) for t in init]
            return [r[0] for r in rs] + [r[1] for r in rs] + [r[2] for r in rs]

        def atol(i, r):
            # one step: p moves by <= lr; m, v are two-term float32 sums: a few ulps of the values.
            return 4 * EPS32 * float(np.abs(r).max()) + 4 * EPS32 * ADAM["lr"] * 10 + 1e-12
        yield Case("adam", "adam step", shape, 28.0 * total, "GB/s", "adam", _keep(cfg, cs), reference=ref,
                   atol=atol, intensity=12.0 / 28.0,  # ~12 flops per parameter
                   calls=ADAM_STEADY_CALLS if total <= ADAM_STEADY_MAX else 1)


def _torch_adam(torch, params, grads, ms, vs, impl):
    """torch.optim.Adam on params with the given grads and state (step 0), or None if unsupported."""
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g)
    kw = {"foreach": True} if impl == "foreach" else {"fused": True}
    try:
        opt = torch.optim.Adam(params, lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"], **kw)
    except (RuntimeError, TypeError, ValueError):
        return None
    for p, m, v in zip(params, ms, vs):
        opt.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.from_numpy(m), "exp_avg_sq": torch.from_numpy(v)}
    return opt


# ---- softmax + cross-entropy ---------------------------------------------------------------
def _ce_op():
    """fastnn's fused softmax cross-entropy: one call returning (mean loss, dloss/dlogits):
    fastnn.ops.cross_entropy_forward_backward (ops/nn.py), i.e. the kernel fastnn._C.cross_entropy."""
    import fastnn

    f = getattr(fastnn.ops, "cross_entropy_forward_backward", None)
    if f is not None and hasattr(fastnn._C, "cross_entropy"):
        return lambda x, t: f(x, t)
    raise NotAvailable("fastnn.ops.cross_entropy_forward_backward (the fused softmax cross-entropy kernel)")


def softmax_ce_cases(cfg):
    ce = _ce_op()
    dev = _Dev(cfg.device)
    torch = _torch_peer(cfg)
    n, c = {"tiny": (16, 100), "quick": (1024, 32000)}.get(cfg.size, (4096, 32000))
    rng = _rng(5)
    x = _randn(rng, n, c, scale=3.0)
    t = rng.integers(0, c, n).astype(np.int64)
    fx, ft = dev(x), dev(t)

    def fnn_fb():
        return tuple(ce(fx, ft))
    cs = [Contender("fastnn", "fastnn", fnn_fb, sync=dev.sync)]
    if "numpy" in cfg.baselines:
        tmp = np.empty_like(x)
        rows = np.arange(n)

        def np_fb(out=None):
            buf = tmp if out else np.empty_like(x)
            m = x.max(axis=1, keepdims=True)
            np.subtract(x, m, out=buf)
            np.exp(buf, out=buf)
            s = buf.sum(axis=1, keepdims=True)
            lse = np.log(s) + m
            loss = np.mean(lse[:, 0] - x[rows, t])
            buf /= s
            buf[rows, t] -= 1
            buf *= np.float32(1.0 / n)
            return loss, buf
        cs.append(Contender("numpy", "numpy", np_fb))
        cs.append(Contender("numpy[out=]", "numpy", lambda: np_fb(True), variant="out=", best=True))
    if torch is not None:
        tx = torch.from_numpy(x).clone().requires_grad_(True)
        tt = torch.from_numpy(t)

        def torch_fb():
            loss = torch.nn.functional.cross_entropy(tx, tt)
            return loss, torch.autograd.grad(loss, (tx,))[0]
        cs.append(Contender("torch", "torch", torch_fb, variant="autograd"))

    def ref():
        x64 = x.astype(np.float64)
        m = x64.max(axis=1, keepdims=True)
        e = np.exp(x64 - m)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x64[np.arange(n), t])
        g = e / s
        g[np.arange(n), t] -= 1
        return np.float64(loss), g / n
    # loss: a mean of n log-sum-exps of c terms; grad: softmax / n, normalised by a c-term sum: errors grow
    # like sqrt(c + n) * eps * magnitude; 8x that. A wrong row, max or target index is O(value).
    def ce_tol(i, r, k=c + n):
        return 8.0 * math.sqrt(k) * EPS32 * float(np.abs(r).max()) + 1e-30
    yield Case("softmax_ce", "softmax+CE fwd+bwd", f"{n}x{c}", 12.0 * n * c, "GB/s", "triad", _keep(cfg, cs),
               reference=ref, atol=ce_tol,
               intensity=6.0 / 12.0)  # max, sub, exp, sum, div, scale per logit


# ---- LSTM layer ------------------------------------------------------------------------------
def lstm_cases(cfg):
    """One LSTM layer forward + backward (output, grad input, grad weights) vs torch.nn.LSTM with
    the same weights; work = 3 x the forward's 2 * T * B * (I + H) * 4H GEMM FLOPs."""
    import fastnn

    if not hasattr(fastnn.nn, "LSTM"):
        raise NotAvailable("fastnn.nn.LSTM")
    B, T, H = {"tiny": (4, 5, 8), "quick": (64, 32, 256)}.get(cfg.size, (64, 128, 256))
    I = H
    rng = _rng(7)
    x = _randn(rng, T, B, I)
    dy = _randn(rng, T, B, H)
    fastnn.manual_seed(0)
    fm = fastnn.nn.LSTM(I, H).to(cfg.device)
    weights = {n: p.numpy() if cfg.device == "cpu" else p.cpu().numpy() for n, p in fm.named_parameters()}
    dev = _Dev(cfg.device)
    fx, fdy = dev(x).requires_grad_(), dev(dy)

    def fnn_fb():
        fx.grad = None
        for p in fm.parameters():
            p.grad = None
        y, _ = fm(fx)
        y.backward(fdy)
        return (y, fx.grad) + tuple(p.grad for p in fm.parameters())
    cs = [Contender("fastnn", "fastnn", fnn_fb, sync=dev.sync)]
    torch = _torch_peer(cfg)
    if torch is not None:
        tm = torch.nn.LSTM(I, H)
        with torch.no_grad():
            for n, p in tm.named_parameters():
                p.copy_(torch.from_numpy(weights[n]))
        tx = torch.from_numpy(x).clone().requires_grad_(True)
        tdy = torch.from_numpy(dy)
        params = [tx] + list(tm.parameters())

        def torch_fb():
            y, _ = tm(tx)
            return (y.detach(),) + torch.autograd.grad(y, params, tdy)
        cs.append(Contender("torch", "torch", torch_fb, variant="autograd (MKL GEMMs)"))

    # no float64 reference: compared with torch (the first other peer). Both are float32 through T
    # recurrent steps; outputs and grads agree to ~sqrt(T * (I + H)) * eps32 relative to their
    # largest magnitude, and 8x that is the bound (a wrong gate or step is O(value)).
    def lstm_tol(i, r, k=T * (I + H)):
        return 8.0 * math.sqrt(k) * EPS32 * float(np.abs(r).max()) + 1e-30
    yield Case("lstm", "LSTM layer fwd+bwd", f"B{B}xT{T}xH{H}", 3 * 2.0 * T * B * (I + H) * 4 * H, "GFLOP/s", "fma",
               _keep(cfg, cs), atol=lstm_tol)


SUITES = {
    "gemm": gemm_cases,
    "conv2d": conv2d_cases,
    "attention": attention_cases,
    "adam": adam_cases,
    "softmax_ce": softmax_ce_cases,
    "lstm": lstm_cases,
}
