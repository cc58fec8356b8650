"""max_pool2d / avg_pool2d / adaptive_avg_pool2d and their backward passes against
float64 NumPy loop references (windows enumerated explicitly), every SIMD level, 1 and 2
threads; ties, padding, NaN, error contract."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn  # noqa: F401
from fastnn import ops

EPS32 = float(np.finfo(np.float32).eps)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _windows(H, W, k, s, p):
    kh, kw = _pair(k)
    sh, sw = _pair(s if s is not None else k)
    ph, pw = _pair(p)
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    for i in range(Ho):
        for j in range(Wo):
            hs, ws = i * sh - ph, j * sw - pw
            yield i, j, max(hs, 0), min(hs + kh, H), max(ws, 0), min(ws + kw, W), kh * kw
    return


def _out_hw(H, W, k, s, p):
    kh, kw = _pair(k)
    sh, sw = _pair(s if s is not None else k)
    ph, pw = _pair(p)
    return (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


def ref_max(x, k, s, p):
    N, C, H, W = x.shape
    Ho, Wo = _out_hw(H, W, k, s, p)
    y = np.empty((N, C, Ho, Wo))
    idx = np.empty((N, C, Ho, Wo), np.int64)
    for i, j, h0, h1, w0, w1, _ in _windows(H, W, k, s, p):
        win = x[:, :, h0:h1, w0:w1].reshape(N, C, -1)
        a = np.argmax(win, axis=2)  # first maximum in row-major order
        y[:, :, i, j] = np.take_along_axis(win, a[..., None], 2)[..., 0]
        idx[:, :, i, j] = (h0 + a // (w1 - w0)) * W + w0 + a % (w1 - w0)
    return y, idx


def ref_avg(x, k, s, p, cip):
    N, C, H, W = x.shape
    Ho, Wo = _out_hw(H, W, k, s, p)
    y = np.empty((N, C, Ho, Wo))
    for i, j, h0, h1, w0, w1, full in _windows(H, W, k, s, p):
        y[:, :, i, j] = x[:, :, h0:h1, w0:w1].astype(np.float64).sum(axis=(2, 3)) / (
            full if cip else (h1 - h0) * (w1 - w0))
    return y


def ref_avg_backward(gy, shape, k, s, p, cip):
    N, C, H, W = shape
    dx = np.zeros(shape)
    for i, j, h0, h1, w0, w1, full in _windows(H, W, k, s, p):
        dx[:, :, h0:h1, w0:w1] += (gy[:, :, i, j] / (full if cip else (h1 - h0) * (w1 - w0)))[:, :, None, None]
    return dx


def _adaptive_windows(H, W, oh, ow):
    for i in range(oh):
        for j in range(ow):
            yield i, j, (i * H) // oh, -((-(i + 1) * H) // oh), (j * W) // ow, -((-(j + 1) * W) // ow)


def ref_adaptive(x, oh, ow):
    N, C, H, W = x.shape
    y = np.empty((N, C, oh, ow))
    for i, j, h0, h1, w0, w1 in _adaptive_windows(H, W, oh, ow):
        y[:, :, i, j] = x[:, :, h0:h1, w0:w1].astype(np.float64).mean(axis=(2, 3))
    return y


def ref_adaptive_backward(gy, shape):
    N, C, H, W = shape
    oh, ow = gy.shape[2:]
    dx = np.zeros(shape)
    for i, j, h0, h1, w0, w1 in _adaptive_windows(H, W, oh, ow):
        dx[:, :, h0:h1, w0:w1] += (gy[:, :, i, j] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
    return dx


# (N, C, H, W, kernel, stride, padding)
WINDOW_CASES = [
    (2, 3, 8, 8, 2, None, 0),
    (2, 3, 9, 7, 3, 2, 1),
    (1, 5, 11, 10, 3, 1, 1),       # overlapping windows
    (3, 2, 7, 12, (2, 3), (1, 2), (1, 1)),
    (33, 2, 5, 5, 3, 3, 0),
    (1, 1, 13, 13, 5, 2, 2),
    (2, 4, 1, 1, 1, None, 0),
]


@pytest.mark.parametrize("case", WINDOW_CASES, ids=str)
def test_max_pool(case, simd_level, threads, rng):
    N, C, H, W, k, s, p = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    y, idx = ops.max_pool2d(x, k, s, p, return_indices=True)
    ry, ridx = ref_max(x, k, s, p)
    np.testing.assert_array_equal(np.asarray(y), ry.astype(np.float32))  # max is exact
    np.testing.assert_array_equal(np.asarray(idx), ridx)
    np.testing.assert_array_equal(np.asarray(ops.max_pool2d(x, k, s, p)), np.asarray(y))
    gy = rng.standard_normal(ry.shape).astype(np.float32)
    gx = np.asarray(ops.max_pool2d_backward(gy, x, idx, k, s, p))
    want = np.zeros((N * C, H * W))
    np.add.at(want, (np.arange(N * C)[:, None], ridx.reshape(N * C, -1)), gy.reshape(N * C, -1))
    # Each input gets a sum of at most ceil(k/s)^2 routed gradients: a few float32 roundings.
    np.testing.assert_allclose(gx.reshape(N * C, -1), want, rtol=16 * EPS32, atol=16 * EPS32)


def test_max_pool_ties_and_nan():
    # Integer values in {0, 1, 2}: every window has ties; PyTorch takes the first maximum.
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (2, 3, 9, 9)).astype(np.float32)
    y, idx = ops.max_pool2d(x, 3, 2, 1, return_indices=True)
    ry, ridx = ref_max(x, 3, 2, 1)
    np.testing.assert_array_equal(np.asarray(idx), ridx)
    np.testing.assert_array_equal(np.asarray(y), ry)
    # All-equal windows: the first (top-left, non-padding) element.
    z = np.ones((1, 1, 4, 4), np.float32)
    _, idx = ops.max_pool2d(z, 2, 2, 1, return_indices=True)
    np.testing.assert_array_equal(np.asarray(idx)[0, 0], [[0, 1, 3], [4, 5, 7], [12, 13, 15]])
    # NaN propagates (counts as the maximum); -inf everywhere still gives a valid index.
    x = np.full((1, 1, 4, 4), -np.inf, np.float32)
    x[0, 0, 1, 2] = np.nan
    y, idx = ops.max_pool2d(x, 2, return_indices=True)
    y, idx = np.asarray(y), np.asarray(idx)
    assert np.isnan(y[0, 0, 0, 1]) and idx[0, 0, 0, 1] == 6
    assert y[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == 0


@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("case", WINDOW_CASES, ids=str)
def test_avg_pool(case, cip, simd_level, threads, rng):
    N, C, H, W, k, s, p = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    y = np.asarray(ops.avg_pool2d(x, k, s, p, count_include_pad=cip))
    ry = ref_avg(x, k, s, p, cip)
    kk = np.prod(_pair(k))
    # A float32 sum of <= kh*kw terms and a division: 2*(kh*kw + 1)*eps relative to sum|x|/count.
    mag = ref_avg(np.abs(x), k, s, p, cip)
    assert np.all(np.abs(y - ry) <= 2 * (kk + 1) * EPS32 * mag + 1e-30)
    gy = rng.standard_normal(ry.shape).astype(np.float32)
    gx = np.asarray(ops.avg_pool2d_backward(gy, x, k, s, p, count_include_pad=cip))
    want = ref_avg_backward(gy.astype(np.float64), x.shape, k, s, p, cip)
    amag = ref_avg_backward(np.abs(gy).astype(np.float64), x.shape, k, s, p, cip)
    assert np.all(np.abs(gx - want) <= 2 * (kk + 1) * EPS32 * amag + 1e-30)


@pytest.mark.parametrize("shape, out", [((2, 3, 7, 7), 1), ((2, 3, 7, 9), (3, 4)), ((1, 2, 5, 5), (5, 5)),
                                        ((33, 4, 6, 6), (4, 3)), ((1, 1, 3, 3), (5, 4))], ids=str)
def test_adaptive_avg_pool(shape, out, simd_level, threads, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    oh, ow = _pair(out)
    y = np.asarray(ops.adaptive_avg_pool2d(x, out))
    ry = ref_adaptive(x, oh, ow)
    # Windows hold at most ceil(H/oh)+1 rows x ceil(W/ow)+1 columns.
    n = (shape[2] // oh + 2) * (shape[3] // ow + 2)
    mag = ref_adaptive(np.abs(x), oh, ow)
    assert np.all(np.abs(y - ry) <= 2 * (n + 1) * EPS32 * mag + 1e-30)
    gy = rng.standard_normal(ry.shape).astype(np.float32)
    gx = np.asarray(ops.adaptive_avg_pool2d_backward(gy, x))
    want = ref_adaptive_backward(gy.astype(np.float64), shape)
    amag = ref_adaptive_backward(np.abs(gy).astype(np.float64), shape)
    assert np.all(np.abs(gx - want) <= 2 * (n + 1) * EPS32 * amag + 1e-30)


def test_pool_backward_vs_finite_differences(rng):
    """The references' adjoints are exact for these linear maps; spot-check one of them by
    finite differences (float64, linear => the difference quotient is exact up to rounding)."""
    x = rng.standard_normal((1, 2, 7, 6))
    gy = rng.standard_normal((1, 2) + _out_hw(7, 6, 3, 2, 1))
    v = rng.standard_normal(x.shape)
    lhs = (ref_avg(x + v, 3, 2, 1, False) - ref_avg(x, 3, 2, 1, False)) * gy
    rhs = ref_avg_backward(gy, x.shape, 3, 2, 1, False) * v
    assert abs(lhs.sum() - rhs.sum()) < 1e-10
    gy = rng.standard_normal((1, 2, 3, 4))
    lhs = (ref_adaptive(x + v, 3, 4) - ref_adaptive(x, 3, 4)) * gy
    rhs = ref_adaptive_backward(gy, x.shape) * v
    assert abs(lhs.sum() - rhs.sum()) < 1e-10


def _x(*s):
    return np.zeros(s, np.float32)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: ops.max_pool2d(np.zeros((1, 1, 4, 4)), 2), TypeError, ["'x'", "float32", "float64"]),
    (lambda: ops.max_pool2d(_x(4, 4), 2), ValueError, ["'x'", "4-D", "2-D"]),
    (lambda: ops.max_pool2d(_x(1, 1, 4, 4), 0), ValueError, ["'kernel_size'", ">= 1"]),
    (lambda: ops.max_pool2d(_x(1, 1, 4, 4), 2, padding=2), ValueError, ["'padding'", "half"]),
    (lambda: ops.avg_pool2d(_x(1, 1, 2, 2), 3, padding=1, stride=1), None, []),
    (lambda: ops.avg_pool2d(_x(1, 1, 2, 5), 3), ValueError, ["output size", "input size (2, 5)", "kernel (3, 3)"]),
    (lambda: ops.avg_pool2d(_x(1, 1, 4, 4), 2, stride=(1, 0)), ValueError, ["'stride'", ">= 1"]),
    (lambda: ops.adaptive_avg_pool2d(_x(1, 1, 4, 4), 0), ValueError, ["'output_size'", ">= 1"]),
    (lambda: ops.max_pool2d_backward(_x(1, 1, 2, 2), _x(1, 1, 4, 4), np.zeros((1, 1, 2, 2), np.int32), 2), TypeError,
     ["'indices'", "int64", "int32"]),
    (lambda: ops.max_pool2d_backward(_x(1, 1, 2, 2), _x(1, 1, 4, 4), np.full((1, 1, 2, 2), 16, np.int64), 2),
     IndexError, ["'indices'", "[0, 16)", "16"]),
    (lambda: ops.max_pool2d_backward(_x(1, 1, 3, 2), _x(1, 1, 4, 4), np.zeros((1, 1, 2, 2), np.int64), 2),
     ValueError, ["'grad_out'", "(1, 1, 2, 2)", "(1, 1, 3, 2)"]),
    (lambda: ops.adaptive_avg_pool2d_backward(_x(2, 1, 2, 2), _x(1, 1, 4, 4)), ValueError, ["'grad_out'"]),
])
def test_errors(call, exc, words):
    if exc is None:
        call()
        return
    with pytest.raises(exc) as ei:
        call()
    for w in words:
        assert w in str(ei.value), f"{w!r} not in {str(ei.value)!r}"


def test_zero_size():
    y = ops.max_pool2d(_x(0, 3, 4, 4), 2)
    assert tuple(y.shape) == (0, 3, 2, 2)
    y = ops.adaptive_avg_pool2d(_x(2, 0, 4, 4), 1)
    assert tuple(y.shape) == (2, 0, 1, 1)
    gx = ops.avg_pool2d_backward(_x(0, 3, 2, 2), _x(0, 3, 4, 4), 2)
    assert tuple(gx.shape) == (0, 3, 4, 4)
