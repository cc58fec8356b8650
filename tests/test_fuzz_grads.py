"""Fuzzing the public ops that tests/test_fuzz_ops.py does not reach: the backward passes
(GEMM, convolution, pooling, attention, layer norm, losses, reductions, broadcasting, dropout),
gemm with its epilogue, batch norm, the recurrent cells and layers, clip_grad_norm_; and, for
EVERY public op, other dtypes (float64, ints, bool, float16, big-endian, object) and other
memory layouts of its inputs. Same rules as test_fuzz_ops.py (its strategies and profiles are
reused): each call either raises a documented exception or matches a float64 reference —
PyTorch in float64 with autograd for the backward passes — on the CPU and on the emulated CUDA
device. ``test_every_public_op_is_fuzzed`` fails when a public op has no fuzz case here or in
test_fuzz_ops.py (tests/test_fuzz_layers.py does the same for the nn layers).

Tolerances (against float64, inputs rounded to float32 first, so only the kernels' own
arithmetic counts): a float32 sum of k products is within gamma_k * sum|terms| (gamma_k =
k eps / (1 - k eps), eps = 2^-24); we use 2 (k + 2) eps * sum|terms| for products and sums
(bound_check), and a few-ulp relative bound plus an absolute slack that scales with the
magnitudes involved for the normalisations (softmax, layer / batch norm) and transcendental
cells. Gradients of saturated or non-finite inputs are only required to exist where float32
and float64 may legitimately differ (see each test).
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn import ops  # noqa: E402

import op_cases as C  # noqa: E402
import test_fuzz_ops as F  # noqa: E402
from conftest import DEVICES  # noqa: E402
from test_fuzz_ops import FUZZ, LAYOUTS, _tensor, assert_matches, call_op, dims, layout, values  # noqa: E402

# CI ("ci" profile): 5 derandomized examples per test here (these files hold many tests; the
# dev / long profiles keep their counts).
if os.environ.get("FASTNN_FUZZ_PROFILE", "ci") == "ci":
    FUZZ = settings(FUZZ, max_examples=5)  # noqa: F811

EPS = 2.0 ** -24


def T(a, grad=False):
    t = torch.from_numpy(np.array(a, np.float64))
    return t.requires_grad_() if grad else t


def np64(t):
    return t.detach().numpy()


def bound_check(got, ref, bound, k, what, extra=0.0):
    """|got - ref| <= 2 (k + 2) eps bound (+ extra) where bound (the sum of |terms|) is finite in
    float32; NaN / Inf must match there. Elsewhere (float32 overflow of an intermediate) only
    existence is required."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    bound = np.broadcast_to(np.asarray(bound, np.float64), ref.shape)
    fin = np.isfinite(bound) & (bound < 1e37)
    tol = 2.0 * (k + 2) * EPS * np.where(fin, bound, 0.0) + 1e-37 + extra
    with np.errstate(all="ignore"):
        ok = np.isclose(got, np.float32(ref), rtol=0, atol=0, equal_nan=True) | (np.abs(got - ref) <= tol)
    bad = ~(ok | ~fin)
    assert not bad.any(), f"{what}: mismatch at {np.argwhere(bad)[:3].tolist()}: got {got[bad][:3]}, ref {ref[bad][:3]}"


def finite_rows(*arrays, axes=-1):
    """True where every input value entering a row is finite (for backward checks)."""
    ok = None
    for a in arrays:
        r = np.isfinite(a).all(axis=axes, keepdims=True)
        ok = r if ok is None else ok & r
    return ok


# ---- activations through the generic entry points ---------------------------------------------
_ACTS = {"relu": torch.relu, "gelu": lambda x: torch.nn.functional.gelu(x),
         "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"), "sigmoid": torch.sigmoid,
         "tanh": torch.tanh, "silu": torch.nn.functional.silu}


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_activation_by_name(device, data):
    name = data.draw(st.sampled_from(sorted(_ACTS) + ["swish", ""]))
    x, xv, shape = F.draw_input(data)
    out = call_op(lambda: ops.activation(_tensor(xv, device), name), device)
    if name not in _ACTS:
        assert out is None, f"activation accepted name {name!r}"
        return
    assert out is not None
    assert_matches(out[0], _ACTS[name](T(x)).numpy(), rtol=2e-5, atol=2e-6, what=name)
    gy = data.draw(values(shape, kinds=("normal",)))
    g = call_op(lambda: ops.activation_backward(_tensor(gy, device), _tensor(xv, device), name), device)
    xt = T(x, True)
    _ACTS[name](xt).backward(T(gy))
    # see test_fuzz_ops.test_activation: saturated / NaN inputs' derivatives are unspecified
    assert_matches(g[0], np64(xt.grad), rtol=5e-5, atol=5e-6, check=np.abs(x) < 80, what=name + " backward")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("log", [False, True])
@FUZZ
@given(data=st.data())
def test_softmax_backward(log, device, data):
    x, xv, shape = F.draw_input(data, kinds=("normal", "denormal", "huge"))
    gy = data.draw(values(shape, kinds=("normal", "nonfinite")))
    y = (ops.log_softmax if log else ops.softmax)(_tensor(xv, device))
    fn = ops.log_softmax_backward if log else ops.softmax_backward
    out = call_op(lambda: fn(_tensor(gy, device), y), device)
    assert out is not None
    y64, g64 = C.to_numpy(y)[0].astype(np.float64), gy.astype(np.float64)
    with np.errstate(all="ignore"):
        if log:
            ref = g64 - np.exp(y64) * g64.sum(-1, keepdims=True)
            bound = np.abs(g64) + np.exp(y64) * np.abs(g64).sum(-1, keepdims=True)
        else:
            ref = y64 * (g64 - (g64 * y64).sum(-1, keepdims=True))
            bound = np.abs(y64) * (np.abs(g64) + (np.abs(g64 * y64)).sum(-1, keepdims=True))
    # reference computed from the same (float32) forward output: only the backward's arithmetic
    bound_check(out[0], ref, bound, shape[-1] + 2, "softmax_backward" + (" (log)" if log else ""))


# ---- gemm with its epilogue; GEMM backward passes -----------------------------------------------
_EPI = {None: lambda z: z, "relu": lambda z: np.maximum(z, 0)}


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_gemm(device, data):
    m, k, n = data.draw(dims), data.draw(dims), data.draw(dims)
    ta, tb = data.draw(st.booleans()), data.draw(st.booleans())
    alpha = data.draw(st.sampled_from([1.0, -0.5, 2.0, 0.0]))
    beta = data.draw(st.sampled_from([0.0, 1.0, 0.25]))
    act = data.draw(st.sampled_from([None, "relu"]))
    a = data.draw(values((k, m) if ta else (m, k), kinds=("normal", "nonfinite", "huge", "denormal")))
    b = data.draw(values((n, k) if tb else (k, n), kinds=("normal", "denormal")))
    c = data.draw(values((m, n), kinds=("normal",))) if beta else None
    bias = data.draw(values((n,), kinds=("normal",))) if data.draw(st.booleans()) else None
    av, bv = (layout(v, data.draw(st.sampled_from(LAYOUTS))) for v in (a, b))
    a, b = np.array(av), np.array(bv)
    kw = dict(trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, activation=act)
    if c is not None:
        kw["c"] = _tensor(c, device)
    if bias is not None:
        kw["bias"] = _tensor(bias, device)
    out = call_op(lambda: ops.gemm(_tensor(av, device), _tensor(bv, device), **kw), device)
    assert out is not None
    A, B = (a.T if ta else a).astype(np.float64), (b.T if tb else b).astype(np.float64)
    with np.errstate(all="ignore"):
        z = alpha * (A @ B)
        zb = abs(alpha) * (np.abs(np.nan_to_num(A, posinf=0, neginf=0)) @ np.abs(B))
        if alpha == 0:
            z = np.zeros((m, n))  # BLAS: alpha = 0 does not read op(a) @ op(b) (NaN * 0 is not formed)
        if c is not None:
            z, zb = z + beta * c, zb + abs(beta) * np.abs(c)
        if bias is not None:
            z, zb = z + bias, zb + np.abs(bias)
        ref = _EPI[act](z)
    nonfin_rows = ~np.isfinite(A).all(1, keepdims=True) & (alpha != 0)
    if alpha != 0:
        # a row of op(a) with NaN/Inf gives a non-finite row (NaN or the IEEE value): only existence
        zb = np.where(nonfin_rows, np.inf, zb)
    bound_check(out[0], ref, zb, k + 3, "gemm")
    if alpha != 0 and k > 0:  # NaN propagates through the fused epilogue too (relu(NaN) = NaN)
        nan_rows = np.isnan(A).any(1)
        assert np.isnan(out[0][nan_rows]).all(), f"gemm ({act}): a NaN row of op(a) did not give a NaN row"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act", [None, "relu", "gelu"])
def test_fused_activation_propagates_nan(device, act):
    """linear / conv2d with a fused activation: an output that depends on a NaN is NaN."""
    x = np.ones((3, 5), np.float32)
    x[1, 2] = np.nan
    w = -np.ones((4, 5), np.float32)  # all pre-activations negative: relu would give 0 without the NaN
    y = call_op(lambda: ops.linear(_tensor(x, device), _tensor(w, device), activation=act), device)[0]
    assert np.isnan(y[1]).all() and not np.isnan(y[[0, 2]]).any(), f"linear ({act}): {y}"
    xi = np.ones((1, 2, 5, 5), np.float32)
    xi[0, 1, 2, 2] = np.nan
    wi = -np.ones((3, 2, 3, 3), np.float32)
    yc = call_op(lambda: ops.conv2d(_tensor(xi, device), _tensor(wi, device), activation=act), device)[0]
    assert np.isnan(yc).all(), f"conv2d ({act}): every 3x3 window of a 5x5 input holds the centre"


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_matmul_backward(device, data):
    m, k, n = data.draw(dims), data.draw(dims), data.draw(dims)
    batch = tuple(data.draw(st.lists(st.sampled_from([1, 2, 3]), max_size=2)))
    bbatch = batch[len(batch) - data.draw(st.integers(0, len(batch))):]
    a = data.draw(values(batch + (m, k), kinds=("normal", "denormal", "huge")))
    b = data.draw(values(bbatch + (k, n), kinds=("normal", "denormal")))
    g = data.draw(values(batch + (m, n), kinds=("normal",)))
    av, bv = (layout(v, data.draw(st.sampled_from(LAYOUTS))) for v in (a, b))
    a, b = np.array(av), np.array(bv)
    out = call_op(lambda: ops.matmul_backward(_tensor(g, device), _tensor(av, device), _tensor(bv, device)), device)
    assert out is not None
    at, bt = T(a, True), T(b, True)
    (at @ bt).backward(T(g))
    nb = max(int(np.prod(batch)), 1)
    # bounds: the same gradients of |a| @ |b| for |g| (sums of absolute terms)
    aa, ba = T(np.abs(a), True), T(np.abs(b), True)
    (aa @ ba).backward(T(np.abs(g)))
    ga_b, gb_b = np64(aa.grad), np64(ba.grad)
    bound_check(out[0], np64(at.grad), ga_b, n, "matmul_backward grad_a")
    bound_check(out[1], np64(bt.grad), gb_b, m * nb, "matmul_backward grad_b")


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_linear_backward(device, data):
    lead = tuple(data.draw(st.lists(dims, min_size=1, max_size=2)))
    k, n = data.draw(dims), data.draw(dims)
    x = data.draw(values(lead + (k,), kinds=("normal", "denormal", "huge")))
    w = data.draw(values((n, k), kinds=("normal",)))
    g = data.draw(values(lead + (n,), kinds=("normal", "denormal")))
    need_bias = data.draw(st.booleans())
    xv, wv = (layout(v, data.draw(st.sampled_from(LAYOUTS))) for v in (x, w))
    x, w = np.array(xv), np.array(wv)
    out = call_op(lambda: ops.linear_backward(_tensor(g, device), _tensor(xv, device), _tensor(wv, device),
                                              need_bias), device)
    assert out is not None
    rows = int(np.prod(lead))
    g64, x64 = g.reshape(rows, n).astype(np.float64), x.reshape(rows, k).astype(np.float64)
    g2, x2 = np.abs(g64), np.abs(x64)
    bound_check(out[0], g.astype(np.float64) @ w.astype(np.float64), (g2 @ np.abs(w)).reshape(lead + (k,)), n,
                "linear_backward grad_x")
    bound_check(out[1], g64.T @ x64, g2.T @ x2, rows, "linear_backward grad_w")
    if need_bias:
        bound_check(out[2], g64.sum(0), g2.sum(0), rows, "linear_backward grad_b")
    else:
        assert np.isnan(out[2]).all()  # None


# ---- convolution and pooling backward ----------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_conv2d_backward(device, data):
    groups = data.draw(st.sampled_from([1, 1, 2]))
    n, c, o = data.draw(st.sampled_from([0, 1, 2])), groups * data.draw(st.sampled_from([1, 2])), \
        groups * data.draw(st.sampled_from([1, 3]))
    h, w = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 8))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride, pad, dil = data.draw(st.integers(1, 2)), data.draw(st.integers(0, 2)), data.draw(st.sampled_from([1, 1, 2]))
    ekh, ekw = dil * (kh - 1) + 1, dil * (kw - 1) + 1
    x = data.draw(values((n, c, h, w), kinds=("normal", "denormal")))
    wt = data.draw(values((o, c // groups, kh, kw), kinds=("normal",)))
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    oh, ow = (h + 2 * pad - ekh) // stride + 1, (w + 2 * pad - ekw) // stride + 1
    if oh < 1 or ow < 1:
        gshape = (n, o, max(oh, 1), max(ow, 1))
    else:
        gshape = (n, o, oh, ow)
    g = data.draw(values(gshape, kinds=("normal",)))
    out = call_op(lambda: ops.conv2d_backward(_tensor(g, device), _tensor(xv, device), _tensor(wt, device),
                                              stride=stride, padding=pad, dilation=dil, groups=groups), device)
    if oh < 1 or ow < 1:
        assert out is None, "an empty output size was accepted"
        return
    assert out is not None
    xt, wtt = T(x, True), T(wt, True)
    bt = T(np.zeros(o), True)
    torch.nn.functional.conv2d(xt, wtt, bt, stride=stride, padding=pad, dilation=dil, groups=groups).backward(T(g))
    ax, aw, ag = np.abs(T(x)), np.abs(T(wt)), np.abs(T(g))
    # bounds: the same convolutions' gradients on absolute values
    xa, wa = ax.clone().requires_grad_(), aw.clone().requires_grad_()
    torch.nn.functional.conv2d(xa, wa, None, stride=stride, padding=pad, dilation=dil, groups=groups).backward(ag)
    bound_check(out[0], np64(xt.grad), np64(xa.grad), o // groups * kh * kw, "conv2d_backward grad_input")
    bound_check(out[1], np64(wtt.grad), np64(wa.grad), n * oh * ow, "conv2d_backward grad_weight")
    bound_check(out[2], np64(bt.grad), np64(ag.sum((0, 2, 3))), n * oh * ow, "conv2d_backward grad_bias")


def _pool_shape(data):
    return (data.draw(st.sampled_from([0, 1, 2])), data.draw(st.sampled_from([1, 3])),
            data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["max", "avg"])
@FUZZ
@given(data=st.data())
def test_pool2d_backward(kind, device, data):
    shape = _pool_shape(data)
    x = data.draw(values(shape, kinds=("normal", "denormal")))
    k, s = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    p = data.draw(st.integers(0, k // 2))
    cip = data.draw(st.booleans())
    if shape[2] + 2 * p < k or shape[3] + 2 * p < k:
        return  # forward refusal: tested in test_fuzz_ops.test_pool2d
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    xt = T(x, True)
    if kind == "max":
        y = torch.nn.functional.max_pool2d(xt, k, stride=s, padding=p)
    else:
        y = torch.nn.functional.avg_pool2d(xt, k, stride=s, padding=p, count_include_pad=cip)
    g = data.draw(values(tuple(y.shape), kinds=("normal",)))
    y.backward(T(g))
    if kind == "max":
        fy, idx = ops.max_pool2d(_tensor(xv, device), k, stride=s, padding=p, return_indices=True)
        out = call_op(lambda: ops.max_pool2d_backward(_tensor(g, device), _tensor(xv, device), idx, k, stride=s,
                                                      padding=p), device)
        assert out is not None
        # ties: fastnn and torch may pick different (equal) maxima; compare through the indices
        nc, hw, ohw = shape[0] * shape[1], shape[2] * shape[3], int(np.prod(g.shape[2:]))
        ii = C.to_numpy(idx)[0].reshape(nc, ohw)
        ref = np.zeros((nc, hw))
        np.add.at(ref, (np.arange(nc)[:, None], ii), g.astype(np.float64).reshape(nc, ohw))
        ref = ref.reshape(shape)
        # the indices point at maxima (checked against torch's values) and the grad is scattered there
        picked = np.take_along_axis(x.reshape(nc, hw), ii, 1)
        assert np.array_equal(picked.reshape(np.shape(C.to_numpy(fy)[0])), np64(y), equal_nan=True)
        bound = np.abs(ref) + np.abs(g).max(initial=0)
        bound_check(out[0], ref, bound, k * k, "max_pool2d_backward")
    else:
        out = call_op(lambda: ops.avg_pool2d_backward(_tensor(g, device), _tensor(xv, device), k, stride=s, padding=p,
                                                      count_include_pad=cip), device)
        assert out is not None
        bound_check(out[0], np64(xt.grad), np.abs(g).max(initial=0) * k * k, k * k, "avg_pool2d_backward")


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_adaptive_avg_pool2d(device, data):
    shape = _pool_shape(data)
    x = data.draw(values(shape, kinds=("normal", "nonfinite", "denormal")))
    osz = (data.draw(st.integers(0, 10)), data.draw(st.integers(1, 10)))
    osz = data.draw(st.sampled_from([osz, 1, osz[1]]))
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    out = call_op(lambda: ops.adaptive_avg_pool2d(_tensor(xv, device), osz), device)
    if isinstance(osz, tuple) and osz[0] == 0:
        assert out is None or out[0].size == 0
        return
    assert out is not None
    xt = T(x, True)
    y = torch.nn.functional.adaptive_avg_pool2d(xt, osz)
    win = max(shape[2] // max(y.shape[2], 1) + 2, 1) * max(shape[3] // max(y.shape[3], 1) + 2, 1)
    assert_matches(out[0], np64(y), rtol=4 * win * EPS, atol=4 * win * EPS * np.abs(np.nan_to_num(x)).max(initial=0),
                   what="adaptive_avg_pool2d")
    g = data.draw(values(tuple(y.shape), kinds=("normal",)))
    gx = call_op(lambda: ops.adaptive_avg_pool2d_backward(_tensor(g, device), _tensor(xv, device)), device)
    y.backward(T(g))
    bound_check(gx[0], np64(xt.grad), np.abs(g).max(initial=0) * 4, 4, "adaptive_avg_pool2d_backward")


# ---- attention backward ------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_attention_backward(device, data):
    b, h, nq, nk = 1, data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([1, 2, 5, 17])), \
        data.draw(st.sampled_from([1, 3, 17]))
    d = data.draw(st.sampled_from([1, 8, 17]))
    causal = data.draw(st.booleans())
    q, k, v = (data.draw(values((b, h, n, d), kinds=("normal", "denormal"))) for n in (nq, nk, nk))
    g = data.draw(values((b, h, nq, d), kinds=("normal",)))
    qv = layout(q, data.draw(st.sampled_from(LAYOUTS)))
    q = np.array(qv)
    tq, tk, tv = (_tensor(a, device) for a in (qv, k, v))
    o, lse = ops.attention(tq, tk, tv, causal=causal, return_lse=True)
    out = call_op(lambda: ops.attention_backward(_tensor(g, device), tq, tk, tv, o, lse, causal=causal), device)
    assert out is not None
    qt, kt, vt = T(q, True), T(k, True), T(v, True)
    s = qt @ kt.transpose(-1, -2) / np.sqrt(d)
    if causal:
        mask = torch.ones(nq, nk, dtype=torch.bool).tril(nk - nq)
        s = s.masked_fill(~mask, -np.inf)
    p = torch.nan_to_num(torch.softmax(s, -1), nan=0.0)
    (p @ vt).backward(T(g))
    # the backward recomputes P from the float32 lse and sums over nk (dq, via dS) or nq (dk, dv)
    # keys: error ~ (nq + nk + d) eps relative to the magnitudes |g| |v| |k|
    scale = (np.abs(g).max(initial=0) + 1) * (np.abs(v).max(initial=0) + 1) * (np.abs(k).max(initial=0)
                                                                                + np.abs(q).max(initial=0) + 1)
    for got, ref, what in zip(out, (qt.grad, kt.grad, vt.grad), ("dq", "dk", "dv")):
        assert_matches(got, np64(ref), rtol=1e-4, atol=8 * (nq + nk + d) * EPS * scale, what="attention_backward " + what)


# ---- layer norm backward ------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_layer_norm_backward(device, data):
    shape = tuple(data.draw(st.lists(dims, min_size=1, max_size=3)))
    d = shape[-1]
    if d == 0:
        return
    x = data.draw(values(shape, kinds=("normal", "denormal")))
    has_w = data.draw(st.booleans())
    w = data.draw(values((d,), kinds=("normal",))) if has_w else None
    g = data.draw(values(shape, kinds=("normal",)))
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    tx, tw = _tensor(xv, device), (_tensor(w, device) if has_w else None)
    _, mean, rstd = ops.layer_norm(tx, tw, None)
    out = call_op(lambda: ops.layer_norm_backward(_tensor(g, device), tx, tw, mean, rstd), device)
    assert out is not None
    xt = T(x, True)
    wt = T(w if has_w else np.ones(d), True)
    bt = T(np.zeros(d), True)
    torch.nn.functional.layer_norm(xt, (d,), wt, bt, 1e-5).backward(T(g))
    rs = float(np.abs(C.to_numpy(rstd)[0]).max(initial=1))
    # dx = rstd * (w g - mean(w g) - xhat mean(w g xhat)): d-term sums scaled by rstd (which is
    # up to 1/sqrt(eps) ~ 316 for a constant row): relative 1e-4 plus 4 d eps rstd |w g|
    wmax = np.abs(w).max(initial=1) if has_w else 1.0
    assert_matches(out[0], np64(xt.grad), rtol=1e-4, atol=(4 * d + 8) * EPS * rs * wmax * np.abs(g).max(initial=1) * 4,
                   what="layer_norm_backward grad_x")
    rows = max(int(np.prod(shape[:-1])), 1)
    if has_w:
        bound_check(out[1], np64(wt.grad), np.abs(g).reshape(-1, d).sum(0) * 10, rows + 8, "layer_norm_backward grad_w",
                    extra=1e-4 * np.abs(np64(wt.grad)))
    bound_check(out[2], np64(bt.grad), np.abs(g).reshape(-1, d).sum(0), rows, "layer_norm_backward grad_b")


# ---- losses: backward and fused forward+backward -------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_cross_entropy_backward(device, data):
    n, c = data.draw(dims), data.draw(st.sampled_from([1, 2, 5, 17]))
    x = data.draw(values((n, c), kinds=("normal", "huge", "denormal")))
    t = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, c, n).astype(np.int64)
    if n and data.draw(st.booleans()):
        t[0] = -100
    ls = data.draw(st.sampled_from([0.0, 0.1]))
    red = data.draw(st.sampled_from(["mean", "sum", "none"]))
    gl = data.draw(values((n,) if red == "none" else (), kinds=("normal",)))
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    tx, tt, tg = _tensor(xv, device), _tensor(t, device), _tensor(gl, device)
    bw = call_op(lambda: ops.cross_entropy_backward(tg, tx, tt, label_smoothing=ls, reduction=red), device)
    fb = call_op(lambda: ops.cross_entropy_forward_backward(tx, tt, label_smoothing=ls, reduction=red, grad_loss=tg),
                 device)
    xt = T(x, True)
    loss = torch.nn.functional.cross_entropy(xt, torch.from_numpy(t), label_smoothing=ls, reduction=red)
    if red == "mean" and not (t != -100).any():
        # torch: 0/0 = NaN; fastnn documents the same or 0 — only existence is required
        assert bw is not None and fb is not None
        return
    loss.backward(T(gl))
    assert bw is not None and fb is not None
    nv = max(int((t != -100).sum()), 1)
    # softmax - onehot per row, times grad_loss (/ count for mean): a few ulp of O(|g|) values
    atol = 8 * c * EPS * np.abs(gl).max(initial=0) / (nv if red == "mean" else 1) + 1e-30
    assert_matches(bw[0], np64(xt.grad), rtol=1e-5, atol=atol, what="cross_entropy_backward")
    assert_matches(fb[1], np64(xt.grad), rtol=1e-5, atol=atol, what="cross_entropy_forward_backward grad")
    if np.abs(x).max(initial=0) < 1e30:  # else a float32 intermediate (logsumexp - x_t) may overflow
        assert_matches(fb[0], np64(loss), rtol=1e-5 * max(n, 1),
                       atol=1e-5 * max(n, 1) * (1 + np.abs(x).max(initial=0)), what="cross_entropy_forward_backward loss")


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_bce_and_mse_backward(device, data):
    shape = tuple(data.draw(st.lists(dims, min_size=1, max_size=2)))
    x = data.draw(values(shape, kinds=("normal", "huge", "denormal")))
    y = data.draw(values(shape, kinds=("normal",)))
    red = data.draw(st.sampled_from(["mean", "sum", "none"]))
    gl = data.draw(values(shape if red == "none" else (), kinds=("normal",)))
    pw = data.draw(values(shape[-1:], kinds=("normal",))) ** 2 if data.draw(st.booleans()) else None
    y01 = (1 / (1 + np.exp(-y))).astype(np.float32)
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    n = max(x.size, 1) if red == "mean" else 1
    tg = _tensor(gl, device)
    # BCE: grad = g * ((1 + (pw - 1) t) sigmoid(x) - pw t) / n: a few ulp of |g| (1 + pw)
    out = call_op(lambda: ops.binary_cross_entropy_with_logits_backward(
        tg, _tensor(xv, device), _tensor(y01, device), pos_weight=None if pw is None else _tensor(pw, device),
        reduction=red), device)
    assert out is not None
    xt = T(x, True)
    torch.nn.functional.binary_cross_entropy_with_logits(xt, T(y01), pos_weight=None if pw is None else T(pw),
                                                         reduction=red).backward(T(gl))
    scale = np.abs(gl).max(initial=0) * (2 + (0 if pw is None else np.abs(pw).max(initial=0))) / n
    assert_matches(out[0], np64(xt.grad), rtol=1e-5, atol=16 * EPS * scale + 1e-30, what="bce_backward")
    out = call_op(lambda: ops.mse_loss_backward(tg, _tensor(xv, device), _tensor(y, device), reduction=red), device)
    xt = T(x, True)
    torch.nn.functional.mse_loss(xt, T(y), reduction=red).backward(T(gl))
    # 2 (x - y) g / n: one subtraction and two products
    fin = np.abs(x) < 1e37
    assert_matches(out[0], np64(xt.grad), rtol=4 * EPS, atol=1e-37, check=fin, what="mse_loss_backward")


# ---- reductions, broadcasting, binary backward ----------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@FUZZ
@given(data=st.data())
def test_reduce_backward(name, device, data):
    shape = tuple(data.draw(st.lists(dims, min_size=1, max_size=3)))
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))))
    keep = data.draw(st.booleans())
    x = data.draw(values(shape, kinds=("normal",)))
    xt = T(x, True)
    if name == "max" and (x.size == 0 or (axis is not None and shape[axis] == 0)):
        return  # max of an empty slice raises (test_fuzz_ops.test_reduce)
    if name == "max":
        vals, idx = ops.max(_tensor(x, device), axis=axis, keepdim=keep)
        y = xt.max() if axis is None else xt.max(dim=axis, keepdim=keep)[0]
    else:
        y = getattr(xt, name)() if axis is None else getattr(xt, name)(dim=axis, keepdim=keep)
    if axis is None and keep:
        return  # keepdim only applies to one axis
    gshape = tuple(y.shape)
    g = data.draw(values(gshape, kinds=("normal", "nonfinite")))
    if name == "max":
        out = call_op(lambda: ops.max_backward(_tensor(g, device), idx, shape, axis=axis, keepdim=keep), device)
        # scattered to the index fastnn's max chose (ties may differ from torch's choice)
        ref = np.zeros(x.size if axis is None else x.shape)
        ii = C.to_numpy(idx)[0].astype(np.int64)
        if axis is None:
            ref[ii] = g
            ref = ref.reshape(shape)
        else:
            np.put_along_axis(ref, ii if keep else np.expand_dims(ii, axis), g if keep else np.expand_dims(g, axis),
                              axis)
        assert out is not None
        assert_matches(out[0], ref, rtol=0, atol=0, what="max_backward")
        return
    out = call_op(lambda: getattr(ops, name + "_backward")(_tensor(g, device), shape, axis=axis, keepdim=keep), device)
    assert out is not None
    y.backward(T(g))
    assert_matches(out[0], np64(xt.grad), rtol=2 * EPS, atol=0, what=name + "_backward")


@st.composite
def broadcast_shapes(draw):
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    sb = list(shape[draw(st.integers(0, len(shape))):])
    sb = tuple(1 if draw(st.booleans()) else s for s in sb)
    return shape, sb


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_broadcast_to_and_sum_to_shape(device, data):
    full, small = data.draw(broadcast_shapes())
    x = data.draw(values(small))
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS))) if x.ndim else x
    x = np.array(xv)
    out = call_op(lambda: ops.broadcast_to(_tensor(xv, device), full), device)
    assert out is not None
    assert np.array_equal(out[0], np.broadcast_to(x, full), equal_nan=True)
    bad = call_op(lambda: ops.broadcast_to(_tensor(np.ones((2, 3), np.float32), device), (3, 3)), device)
    assert bad is None, "broadcast_to accepted an impossible shape"
    g = data.draw(values(full, kinds=("normal", "nonfinite", "denormal")))
    out = call_op(lambda: ops.sum_to_shape(_tensor(g, device), small), device)
    assert out is not None
    g64 = g.astype(np.float64)
    lead = len(full) - len(small)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(small) if s == 1 and full[lead + i] != 1)
    with np.errstate(all="ignore"):
        ref = g64.sum(axis=axes, keepdims=True).reshape(small) if axes else g64.reshape(small)
        bound = np.abs(np.nan_to_num(g64, posinf=0, neginf=0)).sum(axis=axes, keepdims=True).reshape(small) \
            if axes else np.abs(np.nan_to_num(g64)).reshape(small)
    cnt = max(g.size // max(int(np.prod(small)), 1), 1)
    bound_check(out[0], ref, np.where(np.isfinite(ref) | np.isnan(ref), bound, np.inf), cnt, "sum_to_shape")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@FUZZ
@given(data=st.data())
def test_binary_backward(op, device, data):
    sa, sb = data.draw(broadcast_shapes())
    if data.draw(st.booleans()):
        sa, sb = sb, sa
    a = data.draw(values(sa, kinds=("normal", "denormal")))
    b = data.draw(values(sb, kinds=("normal",)))
    if op == "div":
        b = np.where(np.abs(b) < 0.1, np.float32(0.5), b).astype(np.float32)
    full = np.broadcast_shapes(sa, sb)
    g = data.draw(values(full, kinds=("normal",)))
    av = layout(a, data.draw(st.sampled_from(LAYOUTS))) if a.ndim else a
    a = np.array(av)
    out = call_op(lambda: ops.binary_backward(_tensor(g, device), _tensor(av, device), _tensor(b, device), op), device)
    assert out is not None
    at, bt = T(a, True), T(b, True)
    {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[op](at, bt).backward(T(g))
    cnt = max(int(np.prod(full)), 1)
    for got, ref, what in zip(out, (at.grad, bt.grad), ("grad_a", "grad_b")):
        bound = np.abs(np64(ref)) + cnt * np.abs(g).max(initial=0) * (1 + np.abs(a).max(initial=0)) * \
            (1 + (1 / np.abs(b)).max(initial=0)) ** 2
        bound_check(got, np64(ref), bound, cnt + 4, f"binary_backward({op}) {what}")


# ---- dropout backward, clip_grad_norm_ ---------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_dropout_backward(device, data):
    shape = tuple(data.draw(st.lists(dims, min_size=1, max_size=2)))
    p = data.draw(st.sampled_from([0.0, 0.1, 0.5, 0.99, -0.5, 1.5]))
    seed, off = data.draw(st.integers(0, 2**63 - 1)), data.draw(st.integers(0, 2**20))
    g = data.draw(values(shape))
    out = call_op(lambda: ops.dropout_backward(_tensor(g, device), p, seed, off), device)
    if not 0 <= p < 1:
        assert out is None or p == 1.0, f"dropout_backward accepted p={p}"
        return
    assert out is not None
    # the mask is the forward's: dropout of ones gives 1/(1-p) where kept, 0 elsewhere
    mask = C.to_numpy(ops.dropout(_tensor(np.ones(shape, np.float32), device), p, seed, off))[0] != 0
    # p reaches the kernel as a float32: the scale is 1 / (1 - float32(p)), rounded once or twice
    p32 = float(np.float32(p))
    with np.errstate(all="ignore"):
        ref64 = np.where(mask, g.astype(np.float64) / (1 - p32), 0)
    assert_matches(out[0], ref64, rtol=4 * EPS, atol=0, what="dropout_backward")


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_clip_grad_norm_(device, data):
    sizes = data.draw(st.lists(st.sampled_from([0, 1, 17, 33, 129]), min_size=1, max_size=4))
    gs = [data.draw(values((n,), kinds=("normal", "huge", "denormal", "nonfinite"))) for n in sizes]
    max_norm = data.draw(st.sampled_from([0.5, 1.0, 1e30, 0.0]))
    norm_type = data.draw(st.sampled_from([2.0, 1.0, float("inf"), 3.0]))
    tg = [_tensor(a.copy(), device) for a in gs]
    try:
        total = ops.clip_grad_norm_(tg, max_norm, norm_type)
    except Exception as e:  # noqa: BLE001
        if device != "cpu" and C.not_on_device(e):
            pytest.skip(str(e))
        assert isinstance(e, F.DOCUMENTED), e
        return
    with np.errstate(all="ignore"):
        vec = np.concatenate([a.astype(np.float64) for a in gs]) if gs else np.zeros(0)
        if norm_type == float("inf"):
            ref = np.abs(vec).max(initial=0)
        else:
            ref = (np.abs(vec) ** norm_type).sum() ** (1 / norm_type)
        coef = min(1.0, max_norm / (ref + 1e-6)) if np.isfinite(ref) else np.nan
    # the norm of float32 values, accumulated in float64 (or float32 |x|^p terms): 1e-6 relative;
    # a non-finite norm (NaN / Inf gradients, or |x|^p beyond float range) only has to exist
    assert np.isclose(total, ref, rtol=1e-6, atol=1e-30, equal_nan=True) or (np.isinf(ref) and np.isinf(total)) or \
        (not np.isfinite(ref)), f"clip_grad_norm_: {total} vs {ref}"
    for t, a in zip(tg, gs):
        got = t.cpu().numpy()
        if np.isfinite(ref) and coef < 1:
            # the coefficient is a float32 (as torch's): a denormal one carries fewer bits
            crel = abs(float(np.float32(coef)) - coef) / coef if coef > 0 else 0.0
            with np.errstate(all="ignore"):
                assert_matches(got, a.astype(np.float64) * coef, rtol=4 * EPS + crel, atol=1e-37,
                               what="clip_grad_norm_")
        elif np.isfinite(ref):
            assert np.array_equal(got, a, equal_nan=True), "clip_grad_norm_ changed grads below max_norm"


# ---- batch norm -----------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_batch_norm(device, data):
    n, c = data.draw(st.sampled_from([1, 2, 3, 17])), data.draw(st.sampled_from([1, 3, 5]))
    spatial = tuple(data.draw(st.lists(st.sampled_from([1, 2, 5]), max_size=2)))
    shape = (n, c) + spatial
    training = data.draw(st.booleans())
    x = data.draw(values(shape, kinds=("normal", "denormal", "nonfinite")))
    w, b = data.draw(values((c,), kinds=("normal",))), data.draw(values((c,), kinds=("normal",)))
    rm0, rv0 = data.draw(values((c,), kinds=("normal",))), np.abs(data.draw(values((c,), kinds=("normal",)))) + 0.1
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    trm, trv = _tensor(rm0.copy(), device), _tensor(rv0.copy(), device)
    tx, tw = _tensor(xv, device), _tensor(w, device)
    out = call_op(lambda: ops.batch_norm(tx, tw, _tensor(b, device), trm, trv, training=training, momentum=0.1), device)
    count = int(np.prod(shape)) // c
    if training and count <= 1:
        # torch raises ("Expected more than 1 value per channel"); fastnn may raise or normalise
        return
    assert out is not None
    xt, wt, bt = T(x, True), T(w, True), T(b, True)
    rm, rv = T(rm0), T(rv0)
    y = torch.nn.functional.batch_norm(xt, rm, rv, wt, bt, training=training, momentum=0.1, eps=1e-5)
    axes = (0,) + tuple(range(2, len(shape)))
    finite_ch = np.isfinite(x).all(axis=axes)
    chk = finite_ch.reshape((1, c) + (1,) * len(spatial)) if training else np.isfinite(x)
    # statistics in float32 over `count` values: relative count*eps on the normalised value
    atol = (8 * count + 16) * EPS * (np.abs(w).max() * 10 + np.abs(b).max() + 1)
    assert_matches(out[0], np64(y), rtol=1e-4, atol=atol, check=chk, what="batch_norm")
    if training:
        assert_matches(trm.cpu().numpy(), rm.numpy(), rtol=1e-4, atol=1e-5, check=finite_ch, what="running_mean")
        assert_matches(trv.cpu().numpy(), rv.numpy(), rtol=1e-4, atol=1e-5, check=finite_ch, what="running_var")
    else:
        assert np.array_equal(trm.cpu().numpy(), rm0) and np.array_equal(trv.cpu().numpy(), rv0)
    if not finite_ch.all():
        return  # NaN / Inf channels: forward propagation checked above; gradients are NaN too
    g = data.draw(values(shape, kinds=("normal",)))
    _, mean, invstd = ops.batch_norm(tx, tw, None, _tensor(rm0, device), _tensor(rv0, device),
                                                           training=training)
    gb = call_op(lambda: ops.batch_norm_backward(_tensor(g, device), tx, tw, mean, invstd, training=training), device)
    assert gb is not None
    y.backward(T(g))
    istd = np.abs(C.to_numpy(invstd)[0]).max(initial=1)
    gscale = np.abs(g).max(initial=0) * (np.abs(w).max() + 1) * istd
    assert_matches(gb[0], np64(xt.grad), rtol=1e-4, atol=(8 * count + 16) * EPS * gscale * 4, what="batch_norm grad_x")
    assert_matches(gb[1], np64(wt.grad), rtol=1e-4, atol=(8 * count + 16) * EPS * np.abs(g).sum() / c * 4 + 1e-30,
                   what="batch_norm grad_w")
    assert_matches(gb[2], np64(bt.grad), rtol=1e-5, atol=(count + 2) * EPS * np.abs(g).sum() / c * 2 + 1e-30,
                   what="batch_norm grad_b")


# ---- recurrent cells and layers ----------------------------------------------------------------
_G = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def _t_cell(mode, gx, gh, h, c):
    """float64 torch cell (autograd) -> (h', c' or None)."""
    H = h.shape[-1]
    if mode == "lstm":
        a = gx + gh
        i, f, g, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H]), torch.tanh(a[:, 2 * H:3 * H]), \
            torch.sigmoid(a[:, 3 * H:])
        cn = f * c + i * g
        return o * torch.tanh(cn), cn
    if mode == "gru":
        r = torch.sigmoid(gx[:, :H] + gh[:, :H])
        z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        return (1 - z) * n + z * h, None
    pre = gx + gh
    return (torch.tanh(pre) if mode == "rnn_tanh" else torch.relu(pre)), None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", sorted(_G))
@FUZZ
@given(data=st.data())
def test_rnn_cell(mode, device, data):
    B, H = data.draw(st.sampled_from([1, 2, 5])), data.draw(st.sampled_from([1, 3, 17, 33]))
    G = _G[mode]
    gx, gh = (data.draw(values((B, G * H), kinds=("normal", "huge", "denormal", "nonfinite"))) for _ in range(2))
    hp = data.draw(values((B, H), kinds=("normal",)))
    dh = data.draw(values((B, H), kinds=("normal",)))
    dc = data.draw(values((B, H), kinds=("normal",)))
    gxv = layout(gx, data.draw(st.sampled_from(LAYOUTS)))
    gx = np.array(gxv)
    d = lambda a: _tensor(a, device)  # noqa: E731
    tgx, tgh, thp = T(gx, True), T(gh, True), T(hp, True)
    hn_r, cn_r = _t_cell(mode, tgx, tgh, thp, thp)
    # transcendental gates (~2 ulp) combined in a handful of float32 operations
    tol = dict(rtol=2e-5, atol=4e-6)
    if mode == "lstm":
        res = call_op(lambda: ops.lstm_cell(d(gxv), d(gh), d(hp)), device)
        assert res is not None
        assert_matches(res[0], np64(hn_r), what="lstm h", **tol)
        assert_matches(res[1], np64(cn_r), what="lstm c", **tol)
        h_, c_, saved = ops.lstm_cell(d(gxv), d(gh), d(hp))
        gr = call_op(lambda: ops.lstm_cell_backward(d(dh), d(dc), saved, d(hp), c_), device)
        (hn_r * T(dh)).sum().add((cn_r * T(dc)).sum()).backward()
        ok = np.isfinite(gx + gh).all(-1, keepdims=True) & (np.abs(gx + gh) < 80).all(-1, keepdims=True)
        assert_matches(gr[0], np64(tgx.grad), check=ok, what="lstm_cell_backward grad_gates", rtol=5e-5, atol=1e-5)
        assert_matches(gr[1], np64(thp.grad), check=ok, what="lstm_cell_backward grad_c_prev", rtol=5e-5, atol=1e-5)
    elif mode == "gru":
        res = call_op(lambda: ops.gru_cell(d(gxv), d(gh), d(hp)), device)
        assert res is not None
        assert_matches(res[0], np64(hn_r), what="gru h", **tol)
        gr = call_op(lambda: ops.gru_cell_backward(d(dh), ops.gru_cell(d(gxv), d(gh), d(hp))[1], d(hp)), device)
        (hn_r * T(dh)).sum().backward()
        ok = np.isfinite(gx + gh).all(-1, keepdims=True) & (np.abs(gx) + np.abs(gh) < 80).all(-1, keepdims=True)
        assert_matches(gr[0], np64(tgx.grad), check=ok, what="gru grad_gates_x", rtol=5e-5, atol=1e-5)
        assert_matches(gr[1], np64(tgh.grad), check=ok, what="gru grad_gates_h", rtol=5e-5, atol=1e-5)
        assert_matches(gr[2], np64(thp.grad), check=ok, what="gru grad_h_prev", rtol=5e-5, atol=1e-5)
    else:
        nl = mode[4:]
        res = call_op(lambda: ops.rnn_cell(d(gxv), d(gh), nl), device)
        assert res is not None
        assert_matches(res[0], np64(hn_r), what=mode, **tol)
        gr = call_op(lambda: ops.rnn_cell_backward(d(dh), d(res[0]), nl), device)
        (hn_r * T(dh)).sum().backward()
        ok = np.isfinite(gx + gh)
        assert_matches(gr[0], np64(tgx.grad), check=ok, what=mode + " backward", rtol=5e-5, atol=1e-5)
    bad = call_op(lambda: ops.rnn_cell(d(gxv), d(gh), "sigmoid"), device)
    assert bad is None


def _t_layer(mode, xps, whs, bhs, h0, c0, lengths):
    """float64 torch recurrence over (T, B, G*H) projections, 1 or 2 directions, with lengths."""
    Tn, B = xps[0].shape[:2]
    outs, hns, cns = [], [], []
    for d, (xp, wh, bh) in enumerate(zip(xps, whs, bhs)):
        h, c = h0[d], (c0[d] if c0 is not None else None)
        ys = [None] * Tn
        for t in (range(Tn - 1, -1, -1) if d == 1 else range(Tn)):
            act = torch.from_numpy((t < lengths)[:, None]) if lengths is not None else torch.ones(B, 1, dtype=torch.bool)
            gh = h @ wh.T + (bh if bh is not None else 0)
            hh, cc = _t_cell(mode, xp[t], gh, h, c)
            h = torch.where(act, hh, h)
            if c is not None:
                c = torch.where(act, cc, c)
            ys[t] = torch.where(act, hh, torch.zeros_like(hh))
        outs.append(torch.stack(ys))
        hns.append(h)
        cns.append(c)
    return torch.cat(outs, -1), torch.stack(hns), (torch.stack(cns) if c0 is not None else None)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", sorted(_G))
@FUZZ
@given(data=st.data())
def test_rnn_layer(mode, device, data):
    Tn, B, H = data.draw(st.sampled_from([1, 2, 5])), data.draw(st.sampled_from([1, 3])), data.draw(
        st.sampled_from([1, 4, 17]))
    D, G = data.draw(st.sampled_from([1, 2])), _G[mode]
    lstm = mode == "lstm"
    xps = [data.draw(values((Tn, B, G * H), kinds=("normal", "denormal"))) for _ in range(D)]
    whs = [data.draw(values((G * H, H), kinds=("normal",))) * np.float32(0.5) for _ in range(D)]
    bhs = [data.draw(values((G * H,), kinds=("normal",))) for _ in range(D)] if data.draw(st.booleans()) else None
    h0 = data.draw(values((D, B, H), kinds=("normal",))) if data.draw(st.booleans()) else None
    c0 = data.draw(values((D, B, H), kinds=("normal",))) if lstm and data.draw(st.booleans()) else None
    lengths = np.array(data.draw(st.lists(st.integers(1, Tn), min_size=B, max_size=B)), np.int64) \
        if data.draw(st.booleans()) else None
    d = lambda a: _tensor(a, device)  # noqa: E731
    out = call_op(lambda: ops.rnn_layer_forward(mode, [d(a) for a in xps], [d(a) for a in whs],
                                                None if bhs is None else [d(a) for a in bhs],
                                                None if h0 is None else d(h0), None if c0 is None else d(c0),
                                                None if lengths is None else d(lengths)), device)
    assert out is not None
    y, hs, cs, saved = ops.rnn_layer_forward(mode, [d(a) for a in xps], [d(a) for a in whs],
                                             None if bhs is None else [d(a) for a in bhs],
                                             None if h0 is None else d(h0), None if c0 is None else d(c0),
                                             None if lengths is None else d(lengths))
    txp, twh = [T(a, True) for a in xps], [T(a, True) for a in whs]
    tbh = [T(a, True) for a in bhs] if bhs is not None else [None] * D
    th0 = T(h0 if h0 is not None else np.zeros((D, B, H)), True)
    tc0 = T(c0 if c0 is not None else np.zeros((D, B, H)), True) if lstm else None
    yr, hn, cn = _t_layer(mode, txp, twh, tbh, th0, tc0, lengths)
    # each step: one length-H dot product and the gate math, propagated (contracting) through Tn
    # steps: 2e-5 (1 + |ref|) as in tests/test_rnn.py (a NaN/Inf never enters: normal values only)
    assert_matches(out[0], np64(yr), rtol=2e-5, atol=2e-5 * (1 + np.abs(np64(yr)).max(initial=0)), what="rnn y")
    for dd in range(D):
        final = Tn if dd == 0 else 0
        assert_matches(C.to_numpy(hs[dd])[0][final], np64(hn[dd]), rtol=2e-5,
                       atol=2e-5 * (1 + np.abs(np64(hn)).max(initial=0)), what="rnn h_n")
    gy = data.draw(values((Tn, B, D * H), kinds=("normal",)))
    ghn = data.draw(values((D, B, H), kinds=("normal",)))
    gcn = data.draw(values((D, B, H), kinds=("normal",))) if lstm else None
    need_bias = bhs is not None
    gr = call_op(lambda: ops.rnn_layer_backward(mode, d(gy), d(ghn), None if gcn is None else d(gcn),
                                                [d(a) for a in whs], hs, cs if lstm else None,
                                                saved if mode in ("lstm", "gru") else None,
                                                None if lengths is None else d(lengths), need_bias), device)
    assert gr is not None
    loss = (yr * T(gy)).sum() + (hn * T(ghn)).sum() + ((cn * T(gcn)).sum() if lstm else 0)
    loss.backward()
    dxp, dwh, dbh, dh0, dc0 = ops.rnn_layer_backward(mode, d(gy), d(ghn), None if gcn is None else d(gcn),
                                                     [d(a) for a in whs], hs, cs if lstm else None,
                                                     saved if mode in ("lstm", "gru") else None,
                                                     None if lengths is None else d(lengths), need_bias)
    # gradients sum Tn * B terms more (tests/test_rnn.py): 5e-5 (1 + |ref|)
    def close(got, ref, what):
        ref = np64(ref)
        assert_matches(C.to_numpy(got)[0], ref, rtol=5e-5, atol=5e-5 * (1 + np.abs(ref).max(initial=0)), what=what)
    for dd in range(D):
        close(dxp[dd], txp[dd].grad, f"rnn grad_xproj[{dd}]")
        close(dwh[dd], twh[dd].grad, f"rnn grad_w_hh[{dd}]")
        if need_bias:
            close(dbh[dd], tbh[dd].grad, f"rnn grad_b_hh[{dd}]")
    close(dh0, th0.grad, "rnn grad_h0")
    if lstm:
        close(dc0, tc0.grad, "rnn grad_c0")
    bad = call_op(lambda: ops.rnn_layer_forward("lstm2", [d(a) for a in xps], [d(a) for a in whs]), device)
    assert bad is None


# ---- every public op: dtypes and memory layouts of its inputs --------------------------------
_DTYPES = ["float64", "float16", "int32", "int64", "bool", ">f4", "object"]


def _with_dev(replace):
    """op_cases.dev with the float32 arrays of a case replaced by replace(array) (a NumPy value
    passed to the op as it is), for one case construction."""
    orig = C.dev

    def dev(a, device):
        a = np.array(a)
        if a.dtype == np.float32 and device == "cpu":
            return replace(a)
        return orig(a, device)
    return orig, dev


def _build(name, device, replace):
    orig, patched = _with_dev(replace)
    C.dev = patched
    try:
        return C.make(name, device)
    finally:
        C.dev = orig


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("name", sorted(C.CASES))
def test_every_op_rejects_or_converts_dtypes(name, dtype):
    """Every public op, its float32 inputs given as NumPy arrays of another dtype: a documented
    TypeError / ValueError, or (if the op converts) the float32 result."""
    def conv(a):
        if dtype == "object":
            return a.astype(object)
        if dtype == "bool":
            return a > 0
        if dtype in ("int32", "int64"):
            return np.round(a * 4).astype(dtype)
        return a.astype(dtype)
    try:
        call = _build(name, "cpu", conv)
        got = C.run(call)
    except (TypeError, ValueError) as e:
        assert str(e), "a documented exception must say what is wrong"
        return
    # accepted: the result must be that of the same values in float32
    ref = C.run(_build(name, "cpu", lambda a: fnn.from_numpy(conv(a).astype(np.float32))))
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} with {dtype} inputs")


_VIEWS = ["transposed", "negative", "strided", "offset"]


@pytest.mark.parametrize("how", _VIEWS)
@pytest.mark.parametrize("name", sorted(C.CASES))
def test_every_op_input_layouts(name, how):
    """Every public op, its float32 inputs passed as non-contiguous NumPy views (transposed,
    negative steps, every other element, offset) of the same values: the same result as with
    contiguous inputs (bitwise: a kernel may copy to a contiguous buffer or read through the
    strides, but the arithmetic is the same), or a documented refusal of the layout."""
    ref = C.run(C.make(name, "cpu"))
    try:
        got = C.run(_build(name, "cpu", lambda a: layout(a, how) if a.ndim else a))
    except (TypeError, ValueError) as e:
        assert "contiguous" in str(e) or "stride" in str(e), f"{name}: {how} inputs refused with {e}"
        return
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), rtol=1e-6, atol=1e-6,
                                   err_msg=f"{name} with {how} inputs")


# ---- the list: every public op has a fuzz case ---------------------------------------------
# op -> the test (here or in test_fuzz_ops.py) that fuzzes it against a float64 reference.
FUZZED = {
    "relu": F.test_activation, "gelu": F.test_activation, "sigmoid": F.test_activation, "tanh": F.test_activation,
    "silu": F.test_activation, "relu_backward": F.test_activation, "gelu_backward": F.test_activation,
    "sigmoid_backward": F.test_activation, "tanh_backward": F.test_activation, "silu_backward": F.test_activation,
    "activation": test_activation_by_name, "activation_backward": test_activation_by_name,
    "softmax": F.test_softmax, "log_softmax": F.test_softmax,
    "softmax_backward": test_softmax_backward, "log_softmax_backward": test_softmax_backward,
    "add": F.test_binary, "sub": F.test_binary, "mul": F.test_binary, "div": F.test_binary,
    "binary_backward": test_binary_backward,
    "sum": F.test_reduce, "mean": F.test_reduce, "max": F.test_reduce,
    "sum_backward": test_reduce_backward, "mean_backward": test_reduce_backward, "max_backward": test_reduce_backward,
    "broadcast_to": test_broadcast_to_and_sum_to_shape, "sum_to_shape": test_broadcast_to_and_sum_to_shape,
    "gemm": test_gemm, "matmul": F.test_matmul, "linear": F.test_linear,
    "matmul_backward": test_matmul_backward, "linear_backward": test_linear_backward,
    "conv2d": F.test_conv2d, "conv2d_backward": test_conv2d_backward,
    "max_pool2d": F.test_pool2d, "avg_pool2d": F.test_pool2d,
    "max_pool2d_backward": test_pool2d_backward, "avg_pool2d_backward": test_pool2d_backward,
    "adaptive_avg_pool2d": test_adaptive_avg_pool2d, "adaptive_avg_pool2d_backward": test_adaptive_avg_pool2d,
    "attention": F.test_attention, "attention_backward": test_attention_backward,
    "layer_norm": F.test_layer_norm, "layer_norm_backward": test_layer_norm_backward,
    "cross_entropy": F.test_cross_entropy, "cross_entropy_backward": test_cross_entropy_backward,
    "cross_entropy_forward_backward": test_cross_entropy_backward,
    "mse_loss": F.test_mse_and_bce, "binary_cross_entropy_with_logits": F.test_mse_and_bce,
    "mse_loss_backward": test_bce_and_mse_backward, "binary_cross_entropy_with_logits_backward": test_bce_and_mse_backward,
    "dropout": F.test_dropout, "dropout_backward": test_dropout_backward,
    "embedding": F.test_embedding, "embedding_backward": F.test_embedding,
    "adam_": F.test_adam_sgd_norm, "sgd_": F.test_adam_sgd_norm, "grad_norm": F.test_adam_sgd_norm,
    "clip_grad_norm_": test_clip_grad_norm_,
    "batch_norm": test_batch_norm, "batch_norm_backward": test_batch_norm,
    "lstm_cell": test_rnn_cell, "gru_cell": test_rnn_cell, "rnn_cell": test_rnn_cell,
    "lstm_cell_backward": test_rnn_cell, "gru_cell_backward": test_rnn_cell, "rnn_cell_backward": test_rnn_cell,
    "rnn_layer_forward": test_rnn_layer, "rnn_layer_backward": test_rnn_layer,
}


def test_every_public_op_is_fuzzed():
    """Fails when a public op of fastnn.ops has no fuzz case (add one here or in test_fuzz_ops.py
    and list it in FUZZED), or has no op_cases entry (the dtype / layout sweeps above and the
    determinism / concurrency / memory suites take their ops from there)."""
    public = set(C.public_ops())
    missing = sorted(public - set(FUZZED))
    assert not missing, f"public ops without a fuzz case: {missing}"
    stale = sorted(set(FUZZED) - public)
    assert not stale, f"FUZZED names ops that fastnn.ops does not have: {stale}"
    for name, fn in FUZZED.items():
        assert inspect.isfunction(fn) and hasattr(fn, "hypothesis"), f"{name}: {fn} is not a hypothesis test"
    no_case = sorted(public - set(C.CASES))
    assert not no_case, f"public ops without an op_cases entry: {no_case}"
