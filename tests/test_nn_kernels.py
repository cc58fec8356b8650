"""Training kernels (fastnn.ops nn family) against float64 NumPy references.

Tolerances: elementwise kernels evaluate a handful of float32 operations plus one polynomial
exp/log/erf (~2-3 ulp), so 2e-6 relative + 1e-6 absolute (the absolute part covers outputs that
pass through zero). Row kernels (softmax, CE, LayerNorm) sum K terms in float32 lanes: error
grows like K * eps32 in the worst case, ~sqrt(K) * eps32 typically; with K <= 1000 we allow
1e-5 relative. Backward kernels are checked against analytic float64 gradients, and those
analytic formulas against central finite differences of the float64 forward reference.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import fastnn as fnn
from fastnn import ops

A = np.asarray


def _rng(seed=0):
    return np.random.default_rng(seed)


# Sizes straddle vector widths (16 / 8 / 1) and, for 70000, the 2-thread threshold (32K per thread)
SIZES = [0, 1, 15, 17, 1000, 70000]


# ---- float64 references --------------------------------------------------------------------
def _sig(x):
    return special.expit(x)


ACTS = {
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(np.float64)),
    "gelu": (lambda x: x * special.ndtr(x), lambda x: special.ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    "gelu_tanh": (
        lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
        lambda x: (0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
                   + 0.5 * x * (1 - np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)) ** 2)
                   * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)),
    ),
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x)))),
}


def _fd(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name", list(ACTS))
def test_activation_reference_derivatives_match_finite_differences(name):
    # guards the analytic float64 backward formulas used below
    f, df = ACTS[name]
    x = np.linspace(-6, 6, 1001) + 1e-3
    np.testing.assert_allclose(df(x), _fd(f, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("n", SIZES)
def test_activation_forward_backward(name, n, simd_level, threads):
    rng = _rng(n)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    if n >= 17:  # exercise every branch of the polynomial pieces and the tails
        x[:9] = [0.0, -0.0, 1e-7, -1e-7, 0.6, -0.95, 12.0, -12.0, -30.0]
    gy = rng.standard_normal(n).astype(np.float32)
    f, df = ACTS[name]
    xd = x.astype(np.float64)
    y = A(ops.activation(x, name))
    np.testing.assert_allclose(y, f(xd), rtol=2e-6, atol=1e-6)
    gx = A(ops.activation_backward(gy, x, name))
    np.testing.assert_allclose(gx, gy * df(xd), rtol=2e-6, atol=2e-6)


@pytest.mark.filterwarnings("ignore:invalid value")  # the float64 reference's -inf * 0
def test_activation_nan_and_inf_propagate(simd_level):
    x = np.array([np.nan, np.inf, -np.inf] + [0.5] * 16, np.float32)
    for name in ACTS:
        y = A(ops.activation(x, name))
        assert np.isnan(y[0]), name
        ref = ACTS[name][0](np.array([np.inf, -np.inf]))
        np.testing.assert_allclose(y[1:3], ref, err_msg=name)  # x * 0 at -inf is NaN, as in torch


def test_named_activation_wrappers():
    x = np.linspace(-3, 3, 50).astype(np.float32)
    np.testing.assert_array_equal(A(ops.gelu(x, approximate="tanh")), A(ops.activation(x, "gelu_tanh")))
    np.testing.assert_array_equal(A(ops.silu_backward(np.ones_like(x), x)), A(ops.activation_backward(np.ones_like(x), x, "silu")))
    with pytest.raises(ValueError, match="approximate"):
        ops.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match=r"activation.*'swish'"):
        ops.activation(x, "swish")
    with pytest.raises(TypeError, match=r"'x'.*float32.*float64"):
        ops.relu(x.astype(np.float64))


# ---- softmax -------------------------------------------------------------------------------
def _softmax64(x):
    z = x - x.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _log_softmax64(x):
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (5, 1000), (70, 1000), (2, 3, 33)])
def test_softmax_log_softmax(shape, simd_level, threads):
    rng = _rng(1)
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    xd = x.astype(np.float64)
    y = A(ops.softmax(x))
    np.testing.assert_allclose(y, _softmax64(xd), rtol=1e-5, atol=1e-7)
    ly = A(ops.log_softmax(x))
    np.testing.assert_allclose(ly, _log_softmax64(xd), rtol=1e-5, atol=1e-5)
    # backward from the outputs
    s = _softmax64(xd)
    ref = s * (gy - (gy * s).sum(-1, keepdims=True))
    # the row dot product sum(gy * y) has K terms: absolute error ~K * eps32 * max|gy * y|
    np.testing.assert_allclose(A(ops.softmax_backward(gy, y)), ref, rtol=1e-5, atol=1e-5)
    ref = gy - s * gy.sum(-1, keepdims=True)
    np.testing.assert_allclose(A(ops.log_softmax_backward(gy, ly)), ref, rtol=1e-5, atol=1e-5)


def test_softmax_extreme_logits_finite(simd_level):
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1], [-1e4] * 4], np.float32)
    y = A(ops.softmax(x))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, _softmax64(x.astype(np.float64)), atol=1e-7)
    ly = A(ops.log_softmax(x))
    assert np.all(np.isfinite(ly))
    np.testing.assert_allclose(ly, _log_softmax64(x.astype(np.float64)), rtol=1e-6)
    with pytest.raises(ValueError, match="last axis"):
        ops.softmax(x, axis=0)


# ---- cross entropy ------------------------------------------------------------------------
def _ce64(x, t, ls, ignore, reduction):
    x = x.astype(np.float64)
    C = x.shape[1]
    lsm = _log_softmax64(x)
    valid = t != ignore
    tt = np.where(valid, t, 0)
    nll = -lsm[np.arange(len(t)), tt]
    smooth = -lsm.mean(1)
    per = np.where(valid, (1 - ls) * nll + ls * smooth, 0.0)
    p = np.exp(lsm)
    onehot = np.zeros_like(x)
    onehot[np.arange(len(t)), tt] = 1
    g = (p - (1 - ls) * onehot - ls / C) * valid[:, None]
    if reduction == "none":
        return per, g
    if reduction == "sum":
        return per.sum(), g
    cnt = valid.sum()
    return per.sum() / cnt, g / cnt


@pytest.mark.parametrize("shape", [(1, 1), (4, 17), (64, 10), (9, 1000), (40, 1000)])
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(shape, ls, reduction, simd_level, threads):
    rng = _rng(2)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = rng.integers(0, shape[1], shape[0])
    t[::3] = -100  # ignored rows
    if shape[0] == 1:
        t[0] = 0
    for tdt in (np.int64, np.int32):
        loss, g = ops.cross_entropy_forward_backward(x, t.astype(tdt), label_smoothing=ls, reduction=reduction)
        rl, rg = _ce64(x, t, ls, -100, reduction)
        np.testing.assert_allclose(A(loss), rl, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(A(g), rg, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(A(ops.cross_entropy(x, t, ls, reduction=reduction)), rl, rtol=1e-5, atol=1e-6)
    gl = np.float32(0.5) if reduction != "none" else rng.standard_normal(shape[0]).astype(np.float32)
    gb = A(ops.cross_entropy_backward(gl if reduction == "none" else 0.5, x, t, ls, reduction=reduction))
    ref = rg * (gl[:, None] if reduction == "none" else 0.5)
    np.testing.assert_allclose(gb, ref, rtol=1e-5, atol=1e-7)


def test_cross_entropy_gradient_finite_differences():
    # the analytic gradient of the float64 reference vs central differences of its loss
    rng = _rng(3)
    x = rng.standard_normal((3, 5))
    t = np.array([1, -100, 4])
    _, g = _ce64(x, t, 0.2, -100, "mean")
    for i, j in [(0, 0), (0, 1), (2, 4), (1, 3)]:
        e = np.zeros_like(x)
        e[i, j] = 1e-6
        fd = (_ce64(x + e, t, 0.2, -100, "mean")[0] - _ce64(x - e, t, 0.2, -100, "mean")[0]) / 2e-6
        assert g[i, j] == pytest.approx(fd, abs=1e-8)


def test_cross_entropy_extreme_logits(simd_level):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, -1e4]], np.float32)
    t = np.array([1, 2, 0])
    loss, g = ops.cross_entropy_forward_backward(x, t, label_smoothing=0.1, reduction="none")
    assert np.all(np.isfinite(A(loss))) and np.all(np.isfinite(A(g)))
    rl, rg = _ce64(x, t, 0.1, -100, "none")
    np.testing.assert_allclose(A(loss), rl, rtol=1e-6)
    np.testing.assert_allclose(A(g), rg, atol=1e-6)


def test_cross_entropy_all_ignored_and_errors():
    x = np.zeros((2, 3), np.float32)
    assert np.isnan(A(ops.cross_entropy(x, np.array([-100, -100]))))
    with pytest.raises(IndexError, match=r"target.*value 3.*position 1.*\[0, 3\)"):
        ops.cross_entropy(x, np.array([0, 3]))
    with pytest.raises(IndexError, match=r"value -1"):
        ops.cross_entropy(x, np.array([0, -1]))
    with pytest.raises(ValueError, match=r"target.*\(2,\).*\(3,\)"):
        ops.cross_entropy(x, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match=r"target.*int64 or int32.*float32"):
        ops.cross_entropy(x, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"reduction.*'avg'"):
        ops.cross_entropy(x, np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing"):
        ops.cross_entropy(x, np.array([0, 1]), label_smoothing=1.5)


# ---- BCE with logits, MSE ------------------------------------------------------------------
def _bce64(x, y, pw):
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    pw = np.ones(x.shape[-1]) if pw is None else pw.astype(np.float64)
    lw = 1 + (pw - 1) * y
    loss = (1 - y) * x + lw * (np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0))
    grad = lw * _sig(x) - pw * y
    return loss, grad


@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 19), (300, 240)])
@pytest.mark.parametrize("use_pw", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits(shape, use_pw, reduction, simd_level, threads):
    rng = _rng(4)
    x = (rng.standard_normal(shape) * 6).astype(np.float32)
    if x.size > 4:
        x.reshape(-1)[:4] = [40.0, -40.0, 1e-8, 88.0]
    y = rng.uniform(0, 1, shape).astype(np.float32)
    pw = rng.uniform(0.5, 3, shape[-1]).astype(np.float32) if use_pw else None
    rl, rg = _bce64(x, y, pw)
    n = max(x.size, 1)
    loss = A(ops.binary_cross_entropy_with_logits(x, y, pw, reduction))
    g = A(ops.binary_cross_entropy_with_logits_backward(1.0 if reduction != "none" else np.ones(shape, np.float32),
                                                        x, y, pw, reduction))
    if reduction == "none":
        # (1 - y) x + lw * softplus(-x) cancels for x << 0: absolute error ~ eps32 * |x| * lw
        # (|x| <= ~30, lw <= 3 here) -> 1e-5; the same float32 formula as torch
        np.testing.assert_allclose(loss, rl, rtol=2e-6, atol=1e-5)
        np.testing.assert_allclose(g, rg, rtol=2e-6, atol=1e-6)
    else:
        scale = 1 / x.size if (reduction == "mean" and x.size) else 1
        if x.size:
            np.testing.assert_allclose(loss, rl.sum() * scale, rtol=1e-5)
            np.testing.assert_allclose(g, rg * scale, rtol=2e-6, atol=1e-6 * scale)
    assert n >= 1


def test_bce_extremes_stay_finite():
    x = np.array([1e4, -1e4, 0.0, 100.0], np.float32)
    y = np.array([1.0, 0.0, 0.5, 1.0], np.float32)
    loss = A(ops.binary_cross_entropy_with_logits(x, y, reduction="none"))
    assert np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss, _bce64(x, y, None)[0], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse(n, reduction, simd_level):
    rng = _rng(5)
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    d = a.astype(np.float64) - b
    loss = A(ops.mse_loss(a, b, reduction))
    gl = 1.0 if reduction != "none" else np.full(n, 2.0, np.float32)
    g = A(ops.mse_loss_backward(gl, a, b, reduction))
    if reduction == "none":
        np.testing.assert_allclose(loss, d * d, rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(g, 4 * d, rtol=2e-6, atol=1e-6)
    elif n:
        s = 1 / n if reduction == "mean" else 1
        np.testing.assert_allclose(loss, (d * d).sum() * s, rtol=1e-6)
        np.testing.assert_allclose(g, 2 * d * s, rtol=2e-6, atol=1e-9)


# ---- LayerNorm ------------------------------------------------------------------------------
def _ln64(x, w, b, eps):
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)
    y = (x - mu) * rstd
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y, mu[..., 0], rstd[..., 0]


def _ln_bwd64(gy, x, w, eps):
    x = x.astype(np.float64)
    gy = gy.astype(np.float64)
    _, mu, rstd = _ln64(x, None, None, eps)
    xh = (x - mu[..., None]) * rstd[..., None]
    g = gy * (w if w is not None else 1.0)
    dx = rstd[..., None] * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))
    red = tuple(range(x.ndim - 1))
    return dx, (gy * xh).sum(red), gy.sum(red)


def test_layer_norm_backward_reference_finite_differences():
    rng = _rng(6)
    x = rng.standard_normal((2, 5))
    w = rng.standard_normal(5)
    gy = rng.standard_normal((2, 5))
    dx, dw, _ = _ln_bwd64(gy, x, w, 1e-5)
    for i, j in [(0, 0), (1, 3)]:
        e = np.zeros_like(x)
        e[i, j] = 1e-6
        fd = ((_ln64(x + e, w, None, 1e-5)[0] - _ln64(x - e, w, None, 1e-5)[0]) * gy).sum() / 2e-6
        assert dx[i, j] == pytest.approx(fd, abs=1e-7)
    e = np.zeros_like(w)
    e[2] = 1e-6
    fd = ((_ln64(x, w + e, None, 1e-5)[0] - _ln64(x, w - e, None, 1e-5)[0]) * gy).sum() / 2e-6
    assert dw[2] == pytest.approx(fd, abs=1e-7)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (64, 256), (130, 1000), (2, 3, 40)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, affine, simd_level, threads):
    rng = _rng(7)
    x = (rng.standard_normal(shape) * 3 + 10).astype(np.float32)  # offset mean: tests the centred variance
    w = rng.standard_normal(shape[-1]).astype(np.float32) if affine else None
    b = rng.standard_normal(shape[-1]).astype(np.float32) if affine else None
    gy = rng.standard_normal(shape).astype(np.float32)
    y, mu, rstd = ops.layer_norm(x, w, b, 1e-5)
    ry, rmu, rrstd = _ln64(x, w, b, 1e-5)
    np.testing.assert_allclose(A(y), ry, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(A(mu), rmu, rtol=1e-6)
    np.testing.assert_allclose(A(rstd), rrstd, rtol=1e-5)
    dx, dw, db = ops.layer_norm_backward(gy, x, w, mu, rstd)
    rdx, rdw, rdb = _ln_bwd64(gy, x, w, 1e-5)
    # dx uses 2 row reductions of K = 1000 terms summed in float32 (sequentially in the generic
    # build: error up to ~K * eps32 * |terms| ~ 5e-5) times rstd; dw/db sum over up to 130 rows
    np.testing.assert_allclose(A(dx), rdx, rtol=1e-4, atol=5e-5)
    if affine:
        np.testing.assert_allclose(A(dw), rdw, rtol=1e-4, atol=1e-4)
    else:
        assert dw is None
    np.testing.assert_allclose(A(db), rdb, rtol=1e-5, atol=1e-4)


def test_layer_norm_errors():
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight.*\(4,\).*\(3,\)"):
        ops.layer_norm(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"eps"):
        ops.layer_norm(x, eps=0.0)


# ---- dropout --------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_statistics_and_scale(p, simd_level, threads):
    n = 200_003
    x = np.ones(n, np.float32)
    y = A(ops.dropout(x, p, seed=1234))
    kept = y != 0
    # binomial: keep count within 6 standard deviations of n (1 - p)
    k = kept.sum()
    assert abs(k - n * (1 - p)) < 6 * math.sqrt(n * p * (1 - p))
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-6)
    # no visible structure: keep fraction by lane (e % 4) and by halves also binomial
    for lane in range(4):
        sub = kept[lane::4]
        assert abs(sub.sum() - sub.size * (1 - p)) < 6 * math.sqrt(sub.size * p * (1 - p))


def test_dropout_determinism_and_philox_mapping(simd_level, threads):
    x = np.arange(1, 100_001, dtype=np.float32)
    a = A(ops.dropout(x, 0.3, seed=7, offset=5))
    b = A(ops.dropout(x, 0.3, seed=7, offset=5))
    np.testing.assert_array_equal(a, b)
    c = A(ops.dropout(x, 0.3, seed=8, offset=5))
    d = A(ops.dropout(x, 0.3, seed=7, offset=6))
    assert (a != c).mean() > 0.2 and (a != d).mean() > 0.2
    # the mask of element e depends on e only (not on the tensor length / thread split)
    e = A(ops.dropout(x[:1001], 0.3, seed=7, offset=5))
    np.testing.assert_array_equal(e, a[:1001])
    # backward regenerates the same mask
    g = A(ops.dropout_backward(np.ones_like(x), 0.3, seed=7, offset=5))
    np.testing.assert_array_equal(g != 0, a != 0)
    # independent Python Philox-4x32-10 for the first elements (documented mapping)
    assert list(_philox_keep(7, 5, 12, 0.3)) == list(a[:12] != 0)
    assert np.array_equal(A(ops.dropout(x, 0.0, 1)), x)
    assert not A(ops.dropout(x, 1.0, 1)).any()
    with pytest.raises(ValueError, match=r"'p'.*1.5"):
        ops.dropout(x, 1.5, 1)


def _philox_keep(seed, offset, n, p):
    M = 0xFFFFFFFF
    thr = int((1 - p) * 2 ** 32)
    for e in range(n):
        blk = e // 4
        c = [blk & M, blk >> 32, offset & M, offset >> 32]
        k0, k1 = seed & M, seed >> 32
        for _ in range(10):
            p0 = 0xD2511F53 * c[0]
            p1 = 0xCD9E8D57 * c[2]
            c = [(p1 >> 32) ^ c[1] ^ k0, p1 & M, (p0 >> 32) ^ c[3] ^ k1, p0 & M]
            k0, k1 = (k0 + 0x9E3779B9) & M, (k1 + 0xBB67AE85) & M
        yield c[e % 4] < thr


# ---- embedding ------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [1, 17, 64])
def test_embedding(dim, simd_level, threads):
    rng = _rng(8)
    table = rng.standard_normal((50, dim)).astype(np.float32)
    idx = rng.integers(0, 50, (30, 40))
    idx[0, :5] = 3  # duplicates
    out = A(ops.embedding(idx, table))
    np.testing.assert_array_equal(out, table[idx])
    np.testing.assert_array_equal(A(ops.embedding(idx.astype(np.int32), table)), table[idx])
    go = rng.standard_normal((30, 40, dim)).astype(np.float32)
    g = A(ops.embedding_backward(go, idx, 50))
    ref = np.zeros((50, dim))
    np.add.at(ref, idx.reshape(-1), go.reshape(-1, dim).astype(np.float64))
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(A(ops.embedding_backward(go, idx, 50)), g)  # deterministic
    with pytest.raises(IndexError, match=r"indices.*value 50.*\[0, 50\)"):
        ops.embedding(np.array([1, 50]), table)


# ---- broadcast arithmetic and reductions ----------------------------------------------------
BCAST = [((3, 4), (4,)), ((2, 1, 5), (3, 1)), ((), (3, 2)), ((6, 1), (1, 7)), ((1,), (1,)), ((0, 3), (3,)),
         ((4, 3, 33), (4, 1, 33)), ((300, 200), (300, 1))]


@pytest.mark.parametrize("sa,sb", BCAST)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_broadcast_and_backward(sa, sb, op, simd_level, threads):
    rng = _rng(9)
    a = rng.standard_normal(sa).astype(np.float32)
    b = (rng.uniform(0.5, 2, sb) * rng.choice([-1, 1], sb)).astype(np.float32)
    f = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op]
    out = A(getattr(ops, op)(a, b))
    ref = f(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
    g = rng.standard_normal(ref.shape).astype(np.float32)
    ga, gb = ops.binary_backward(g, a, b, op)
    a64, b64, g64 = a.astype(np.float64), b.astype(np.float64), g.astype(np.float64)
    da = {"add": g64, "sub": g64, "mul": g64 * b64, "div": g64 / b64}[op]
    db = {"add": g64, "sub": -g64, "mul": g64 * a64, "div": -g64 * a64 / b64 ** 2}[op]

    def unb(x, shape):
        while x.ndim > len(shape):
            x = x.sum(0)
        for i, s in enumerate(shape):
            if s == 1 and x.shape[i] != 1:
                x = x.sum(i, keepdims=True)
        return x

    np.testing.assert_allclose(A(ga), unb(da, sa), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(A(gb), unb(db, sb), rtol=1e-5, atol=1e-4)
    assert A(ga).shape == sa and A(gb).shape == sb


def test_binary_scalars_and_errors():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(A(ops.add(a, 2)), a + 2)
    np.testing.assert_array_equal(A(ops.div(1, a[:, 1:])), 1 / a[:, 1:])
    np.testing.assert_array_equal(A(ops.mul(a.T, 3.0)), a.T * 3)  # non-contiguous input
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2,\).*cannot be broadcast"):
        ops.add(a, np.ones(2, np.float32))


@pytest.mark.parametrize("shape,axis", [((5,), None), ((4, 7), 0), ((4, 7), 1), ((3, 40, 33), 1), ((3, 40, 33), (0, 2)),
                                        ((300, 300), -1), ((2, 3, 4), (0, 1, 2)), ((0, 4), 0)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions(shape, axis, keepdim, simd_level, threads):
    rng = _rng(10)
    x = rng.standard_normal(shape).astype(np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(A(ops.sum(x, axis, keepdim)), x64.sum(axis=axis, keepdims=keepdim), rtol=1e-5, atol=1e-5)
    if x.size:
        np.testing.assert_allclose(A(ops.mean(x, axis, keepdim)), x64.mean(axis=axis, keepdims=keepdim), rtol=1e-5,
                                   atol=1e-6)
    g = rng.standard_normal(np.shape(x64.sum(axis=axis, keepdims=keepdim))).astype(np.float32)
    gs = A(ops.sum_backward(g, shape, axis, keepdim))
    ax = axis if axis is not None else tuple(range(len(shape)))
    np.testing.assert_array_equal(gs, np.broadcast_to(np.expand_dims(g, ax) if not keepdim else g, shape))
    if isinstance(axis, tuple) or not x.size:
        return
    v, i = ops.max(x, axis, keepdim)
    np.testing.assert_array_equal(A(v), x.max(axis=axis, keepdims=keepdim))
    ri = np.argmax(x, axis=axis)
    np.testing.assert_array_equal(A(i), ri if not keepdim or axis is None else np.expand_dims(ri, axis))
    gm = A(ops.max_backward(g, i, shape, axis, keepdim))
    ref = np.zeros(x.size if axis is None else shape)
    if axis is None:
        ref[ri] = g.reshape(-1)[0]
        ref = ref.reshape(shape)
    else:
        np.put_along_axis(ref, np.expand_dims(ri, axis), np.expand_dims(g, axis) if not keepdim else g, axis)
    np.testing.assert_array_equal(gm, ref)


def test_max_ties_and_nan():
    x = np.array([[1, 3, 3], [np.nan, 5, 2]], np.float32)
    v, i = ops.max(x, 1)
    assert A(i).tolist() == [1, 0] and np.isnan(A(v)[1])
    with pytest.raises(IndexError, match="axis"):
        ops.sum(x, 2)
