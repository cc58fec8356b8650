"""max_pool2d / avg_pool2d / adaptive_avg_pool2d and their backward passes on device 'cuda'
(kernels/pool.cu) against fastnn's CPU kernels, which tests/test_pool.py checks against float64
references.

Runs on the CPU emulator of CUDA in the three thread-resume orders (forward, reverse, seeded random).

Tolerance: the windowed forward passes and every backward pass are compared BITWISE with the CPU:
both walk a window in row-major order summing from 0.0f (or taking the first maximum) and divide
once; the CUDA backward gathers the covering outputs in (i, j) order, which is the order in which
the CPU scatters into each input element (no multiply-add a compiler could contract). Global
average pooling sums with a shuffle tree on CUDA, serially on the CPU: a float32 sum of n terms in
two orders differs by at most 2*n*eps32*sum|x| / n = 2*eps32*mean|x| after the division.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastnn import _C

from cuda_spatial_util import cpu, dev, host, order  # noqa: F401 (order: autouse fixture)

EPS32 = float(np.finfo(np.float32).eps)

# (N, C, H, W, kernel, stride, padding)
WINDOW_CASES = [
    (2, 3, 8, 8, 2, None, 0),
    (3, 2, 9, 7, 3, 2, 1),
    (1, 3, 11, 10, 3, 1, 1),              # overlapping windows
    (3, 2, 7, 12, (2, 3), (1, 2), (1, 1)),
    (1, 2, 13, 13, 5, 2, 2),
    (2, 4, 1, 1, 1, None, 0),
]


@pytest.mark.parametrize("case", WINDOW_CASES, ids=str)
def test_max_pool(case, rng):
    N, C, H, W, k, s, p = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    y, idx = _C.max_pool2d(dev(x), k, s, p, return_indices=True)
    ry, ridx = _C.max_pool2d(cpu(x), k, s, p, return_indices=True)
    np.testing.assert_array_equal(host(y), np.asarray(ry))
    np.testing.assert_array_equal(host(idx), np.asarray(ridx))
    np.testing.assert_array_equal(host(_C.max_pool2d(dev(x), k, s, p)), np.asarray(ry))
    gy = rng.standard_normal(ry.shape).astype(np.float32)
    gx = host(_C.max_pool2d_backward(dev(gy), dev(x), idx, k, s, p))
    want = np.asarray(_C.max_pool2d_backward(cpu(gy), cpu(x), ridx, k, s, p))
    np.testing.assert_array_equal(gx, want)
    assert np.count_nonzero(gx) >= min(gy.size, x.size) // 4  # the routing has teeth


def test_max_pool_ties_and_nan():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (2, 3, 9, 9)).astype(np.float32)  # ties in every window: first maximum
    y, idx = _C.max_pool2d(dev(x), 3, 2, 1, return_indices=True)
    ry, ridx = _C.max_pool2d(cpu(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(host(idx), np.asarray(ridx))
    np.testing.assert_array_equal(host(y), np.asarray(ry))
    gy = rng.standard_normal(ry.shape).astype(np.float32)
    np.testing.assert_array_equal(host(_C.max_pool2d_backward(dev(gy), dev(x), idx, 3, 2, 1)),
                                  np.asarray(_C.max_pool2d_backward(cpu(gy), cpu(x), ridx, 3, 2, 1)))
    x = np.full((1, 1, 4, 4), -np.inf, np.float32)
    x[0, 0, 1, 2] = np.nan
    y, idx = _C.max_pool2d(dev(x), 2, return_indices=True)
    y, idx = host(y), host(idx)
    assert np.isnan(y[0, 0, 0, 1]) and idx[0, 0, 0, 1] == 6
    assert y[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == 0


def test_max_pool_backward_foreign_indices():
    """Indices not from max_pool2d: the CUDA gather takes an index only inside its own window
    (documented in kernels/pool.cu) and never writes outside dx; in-window ones route like the CPU."""
    gy = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2)
    x = np.zeros((1, 1, 4, 4), np.float32)
    idx = np.array([[[[5, 2], [8, 15]]]], np.int64)  # all inside their 2x2 windows
    got = host(_C.max_pool2d_backward(dev(gy), dev(x), dev(idx), 2))
    np.testing.assert_array_equal(got, np.asarray(_C.max_pool2d_backward(cpu(gy), cpu(x), cpu(idx), 2)))
    idx = np.array([[[[15, 2], [8, 5]]]], np.int64)  # first and last point into other windows
    got = host(_C.max_pool2d_backward(dev(gy), dev(x), dev(idx), 2)).reshape(-1)
    want = np.zeros(16, np.float32)
    want[2], want[8] = 2, 3
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("case", WINDOW_CASES, ids=str)
def test_avg_pool(case, cip, rng):
    N, C, H, W, k, s, p = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    y = host(_C.avg_pool2d(dev(x), k, s, p, count_include_pad=cip))
    np.testing.assert_array_equal(y, np.asarray(_C.avg_pool2d(cpu(x), k, s, p, count_include_pad=cip)))
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = host(_C.avg_pool2d_backward(dev(gy), dev(x), k, s, p, count_include_pad=cip))
    want = np.asarray(_C.avg_pool2d_backward(cpu(gy), cpu(x), k, s, p, count_include_pad=cip))
    np.testing.assert_array_equal(gx, want)
    assert np.abs(gx).max() > 0


@pytest.mark.parametrize("shape, out", [((2, 3, 7, 7), (3, 4)), ((1, 2, 5, 5), (5, 5)), ((3, 4, 6, 9), (4, 2)),
                                        ((1, 1, 3, 3), (5, 4)), ((2, 3, 9, 7), 1), ((3, 5, 1, 1), 1),
                                        ((1, 2, 17, 13), 1)], ids=str)
def test_adaptive_avg_pool(shape, out, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y = host(_C.adaptive_avg_pool2d(dev(x), out))
    want = np.asarray(_C.adaptive_avg_pool2d(cpu(x), out))
    if out == 1:  # global average: shuffle-tree sum on CUDA (see the module docstring)
        mag = np.abs(x).mean(axis=(2, 3), keepdims=True)
        assert np.all(np.abs(y - want) <= 2 * EPS32 * mag + 1e-30)
    else:
        np.testing.assert_array_equal(y, want)
    gy = rng.standard_normal(want.shape).astype(np.float32)
    gx = host(_C.adaptive_avg_pool2d_backward(dev(gy), dev(x)))
    np.testing.assert_array_equal(gx, np.asarray(_C.adaptive_avg_pool2d_backward(cpu(gy), cpu(x))))


def test_pool_outputs_stay_on_device_without_host_copies(rng):
    x = dev(rng.standard_normal((2, 3, 9, 9)).astype(np.float32))
    gy = dev(rng.standard_normal((2, 3, 5, 5)).astype(np.float32))
    g1 = dev(rng.standard_normal((2, 3, 1, 1)).astype(np.float32))
    before = _C._cuda_host_device_copies()
    y, idx = _C.max_pool2d(x, 3, 2, 1, return_indices=True)
    outs = [y, idx, _C.max_pool2d_backward(gy, x, idx, 3, 2, 1), _C.avg_pool2d(x, 3, 2, 1),
            _C.avg_pool2d_backward(gy, x, 3, 2, 1), _C.adaptive_avg_pool2d(x, 1),
            _C.adaptive_avg_pool2d_backward(g1, x)]
    assert _C._cuda_host_device_copies() == before
    for t in outs:
        assert str(t.device).startswith("cuda")


def test_zero_size_and_device_errors():
    y = _C.max_pool2d(dev(np.zeros((0, 3, 4, 4), np.float32)), 2)
    assert tuple(y.shape) == (0, 3, 2, 2)
    y = _C.adaptive_avg_pool2d(dev(np.zeros((2, 0, 4, 4), np.float32)), 1)
    assert tuple(y.shape) == (2, 0, 1, 1)
    x = dev(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="'grad_out'"):
        _C.avg_pool2d_backward(cpu(np.zeros((1, 1, 2, 2), np.float32)), x, 2)
    with pytest.raises(ValueError, match="'indices'"):
        _C.max_pool2d_backward(dev(np.zeros((1, 1, 2, 2), np.float32)), x, cpu(np.zeros((1, 1, 2, 2), np.int64)), 2)
    with pytest.raises(ValueError, match="'grad_out'"):
        _C.adaptive_avg_pool2d_backward(cpu(np.zeros((1, 1, 1, 1), np.float32)), x)
