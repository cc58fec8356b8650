"""Batch normalisation: fastnn.ops.batch_norm / batch_norm_backward and nn.BatchNorm1d/2d.

Reference: float64 NumPy forward and hand-derived backward (the backward formula is itself
checked by central finite differences of the float64 forward); nn modules against torch's
(train/eval sequences, running statistics, momentum=None, affine / track_running_stats off,
state_dict keys).

Tolerances: the statistics are accumulated in double and the per-element work is a few float32
operations on normalised values of size O(|x - mean| / std) <= ~5, so outputs agree to
~10 eps32 * 5 ~ 6e-6 (atol 1e-5, rtol 1e-5); grad_input adds two means of O(m) terms summed in
double then rounded once: same bound scaled by |dy| (atol 2e-5). grad_weight/grad_bias are sums
of m float32 products (rounded once from double): rtol 1e-5 + atol 1e-5 * sqrt(m).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fastnn
from fastnn import nn, ops

from gradcheck_util import fd_grads

DEVICES = ["cpu"] + (["cuda"] if fastnn.cuda.is_available() else [])



def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _bc(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def ref_forward(x, w, b, rm, rv, training, momentum, eps):
    ax = _axes(x)
    m = x.size // x.shape[1]
    if training:
        mean, var = x.mean(axis=ax), x.var(axis=ax)
        new_rm = (1 - momentum) * rm + momentum * mean
        new_rv = (1 - momentum) * rv + momentum * var * m / (m - 1)
    else:
        mean, var, new_rm, new_rv = rm, rv, rm, rv
    y = (x - _bc(mean, x)) / np.sqrt(_bc(var, x) + eps) * _bc(w, x) + _bc(b, x)
    return y, new_rm, new_rv


def ref_backward(g, x, w, rm, rv, training, eps):
    ax = _axes(x)
    if training:
        mean, var = x.mean(axis=ax), x.var(axis=ax)
    else:
        mean, var = rm, rv
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (x - _bc(mean, x)) * _bc(inv, x)
    gw, gb = (g * xhat).sum(axis=ax), g.sum(axis=ax)
    if training:
        gx = _bc(inv * w, x) * (g - _bc(g.mean(axis=ax), x) - xhat * _bc((g * xhat).mean(axis=ax), x))
    else:
        gx = g * _bc(inv * w, x)
    return gx, gw, gb


@pytest.mark.parametrize("training", [True, False])
def test_reference_backward_matches_finite_differences(training, rng):
    x = rng.standard_normal((3, 2, 4))
    w, b = rng.standard_normal(2), rng.standard_normal(2)
    rm, rv = rng.standard_normal(2), rng.random(2) + 0.5
    r = rng.standard_normal(x.shape)
    fd = fd_grads(lambda x_, w_, b_: ref_forward(x_, w_, b_, rm, rv, training, 0.1, 1e-5)[0], [x, w, b], r)
    gx, gw, gb = ref_backward(r, x, w, rm, rv, training, 1e-5)
    for got, want in zip((gx, gw, gb), fd):
        np.testing.assert_allclose(got, want, atol=1e-6)


SHAPES = [(2, 3), (17, 5), (3, 4, 1), (3, 4, 33), (2, 3, 5, 13), (1, 2, 1, 129), (4, 3, 65), (2, 2, 8, 8)]


def _case(shape, device, training, rng, affine=True, momentum=0.1, eps=1e-5):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2.5 + 1.5).astype(np.float32)
    w = rng.standard_normal(C).astype(np.float32) if affine else None
    b = rng.standard_normal(C).astype(np.float32) if affine else None
    rm = rng.standard_normal(C).astype(np.float32)
    rv = (rng.random(C) + 0.5).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    t = lambda a: fastnn.tensor(a).to(device) if a is not None else None  # noqa: E731
    rmt, rvt = t(rm.copy()), t(rv.copy())
    y, sm, si = ops.batch_norm(t(x), t(w), t(b), rmt, rvt, training, momentum, eps)
    gx, gw, gb = ops.batch_norm_backward(t(g), t(x), t(w), sm, si, training)
    f64 = lambda a: a.astype(np.float64) if a is not None else None  # noqa: E731
    w64 = f64(w) if affine else np.ones(C)
    b64 = f64(b) if affine else np.zeros(C)
    yr, rmr, rvr = ref_forward(f64(x), w64, b64, f64(rm), f64(rv), training, momentum, eps)
    gxr, gwr, gbr = ref_backward(f64(g), f64(x), w64, f64(rm), f64(rv), training, eps)
    m = x.size // C
    np.testing.assert_allclose(y.cpu().numpy(), yr, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(rmt.cpu().numpy(), rmr, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(rvt.cpu().numpy(), rvr, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(gx.cpu().numpy(), gxr, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(gw.cpu().numpy(), gwr, atol=1e-5 * np.sqrt(m), rtol=1e-5)
    np.testing.assert_allclose(gb.cpu().numpy(), gbr, atol=1e-5 * np.sqrt(m), rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_kernels_cpu(shape, training, simd_level, threads, rng):
    _case(shape, "cpu", training, rng)


def test_kernels_no_affine_and_large_mean(rng):
    _case((8, 3, 40), "cpu", True, rng, affine=False, momentum=0.3, eps=1e-3)
    # a large common offset: the two-pass (double) variance keeps it exact; E[x^2]-E[x]^2 would not
    x = (rng.standard_normal((64, 2, 50)) + 1e4).astype(np.float32)
    y, sm, si = ops.batch_norm(x, None, None, None, None, True)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(1.0 / si.numpy() ** 2 - 1e-5, x64.var(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(y.numpy(), (x64 - x64.mean((0, 2), keepdims=True)) / np.sqrt(
        x64.var((0, 2), keepdims=True) + 1e-5), atol=2e-3)  # x itself is exact only to ~1e4 * eps32


@pytest.mark.skipif("cuda" not in DEVICES, reason="no cuda device (nor the emulator)")
@pytest.mark.parametrize("shape", [(2, 3), (3, 4, 33), (2, 3, 5, 13), (1, 2, 1, 129), (3, 2, 300)])
@pytest.mark.parametrize("training", [True, False])
def test_kernels_cuda(shape, training, emu_order, rng):
    _case(shape, "cuda", training, rng)


# ---- modules vs torch -----------------------------------------------------------------------
def _pair(cls, tcls, C, **kw):
    tm, fm = tcls(C, **kw), cls(C, **kw)
    with torch.no_grad():
        if tm.affine:
            tm.weight.uniform_(0.5, 1.5)
            tm.bias.uniform_(-0.5, 0.5)
    fm.load_state_dict({k: fastnn.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    return tm, fm


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,shape", [("1d", (6, 4)), ("1d", (5, 4, 7)), ("2d", (3, 4, 5, 6))])
@pytest.mark.parametrize("kw", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False},
                                {"momentum": 0.5, "eps": 1e-3}])
def test_module_matches_torch(device, kind, shape, kw, rng):
    cls, tcls = (nn.BatchNorm1d, torch.nn.BatchNorm1d) if kind == "1d" else (nn.BatchNorm2d, torch.nn.BatchNorm2d)
    tm, fm = _pair(cls, tcls, shape[1], **kw)
    assert list(fm.state_dict().keys()) == list(tm.state_dict().keys())
    fm.to(device)
    for step in range(3):
        if step == 2:
            tm.eval()
            fm.eval()
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
        r = rng.standard_normal(shape).astype(np.float32)
        xt = torch.tensor(x, requires_grad=True)
        yt = tm(xt)
        (yt * torch.tensor(r)).sum().backward()
        xf = fastnn.tensor(x).to(device).requires_grad_()
        yf = fm(xf)
        (yf * fastnn.tensor(r).to(device)).sum().backward()
        np.testing.assert_allclose(yf.cpu().numpy(), yt.detach().numpy(), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(xf.grad.cpu().numpy(), xt.grad.numpy(), atol=2e-5, rtol=1e-5)
        if tm.affine:
            np.testing.assert_allclose(fm.weight.grad.cpu().numpy(), tm.weight.grad.numpy(), atol=1e-4, rtol=1e-5)
            np.testing.assert_allclose(fm.bias.grad.cpu().numpy(), tm.bias.grad.numpy(), atol=1e-4, rtol=1e-5)
        for k, v in tm.state_dict().items():
            np.testing.assert_allclose(fm.state_dict()[k].cpu().numpy(), v.numpy(), atol=1e-6, rtol=1e-5, err_msg=k)
        if fm.affine:
            fm.weight.grad = fm.bias.grad = None
            tm.zero_grad()


def test_module_training_output_matches_torch(rng):
    tm, fm = _pair(nn.BatchNorm2d, torch.nn.BatchNorm2d, 3)
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(fm(fastnn.tensor(x)).numpy(), tm(torch.tensor(x)).detach().numpy(), atol=1e-5)
    assert int(fm.num_batches_tracked.numpy()) == 1


def test_errors(rng):
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(fastnn.zeros(1, 3))
    with pytest.raises(ValueError, match="3 channels"):
        bn(fastnn.zeros(4, 2))
    with pytest.raises(ValueError, match="2-D or 3-D"):
        bn(fastnn.zeros(4, 3, 2, 2))
    with pytest.raises(ValueError, match="4-D"):
        nn.BatchNorm2d(3)(fastnn.zeros(4, 3))
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="both or neither"):
        ops.batch_norm(x, None, None, np.zeros(3, np.float32), None)
    with pytest.raises(ValueError, match="training=False"):
        ops.batch_norm(x, None, None, None, None, training=False)
    with pytest.raises(ValueError, match="weight.*\\(3,\\)"):
        ops.batch_norm(x, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="float32"):
        ops.batch_norm(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="running_mean.*contiguous"):
        ops.batch_norm(x, None, None, np.zeros(6, np.float32)[::2], np.zeros(3, np.float32))
    # eval with one sample is fine (running statistics)
    bn.eval()
    assert tuple(bn(fastnn.zeros(1, 3)).shape) == (1, 3)
