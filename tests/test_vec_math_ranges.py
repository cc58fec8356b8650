"""Range ends of the CPU kernels' vector exp / log (csrc/cpu/kernels/train_vec.h), through the
ops that use them, at every SIMD level; and linear_backward's bias gradient on CUDA without a
host->device copy.

* vexp used to clamp x at 88.376 (2^n built from the exponent field stops at n = 127), so e^x
  was up to 20 % low for x in (88.38, 88.72]; and flushed x < -103 to 0 although e^x is a
  float32 denormal down to -103.97. Visible through sigmoid / silu (e^-x for x in
  [-88.72, -88.38]: sigmoid(x) ~ e^x, a float32 denormal) and exp (Tensor.exp, _C.unary).
* vlog returned -inf for denormal inputs (vfrexp reads the exponent field, 0 there): visible
  through log.

Tolerances: the kernels are Cephes polynomials, <= 2 ulp of the float32 result in the normal
range; a denormal result has fewer significant bits, so its error is counted in units of the
denormal spacing 2^-149 (ulp_err below) — <= 2 of them, plus the rounding of 1 / (1 + e^-x)
(one more ulp).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _C, ops


@pytest.fixture
def level(simd_level):
    """conftest's per-SIMD-level fixture under this file's shorter name."""
    return simd_level


def ulp_err(y, ref64):
    """|y - ref| in float32 ulps at the reference (2^-149 for denormals)."""
    spacing = np.maximum(np.spacing(np.abs(ref64.astype(np.float32))).astype(np.float64), 2.0 ** -149)
    return np.abs(y.astype(np.float64) - ref64) / spacing


def _grid(lo, hi, n=4001):
    return np.unique(np.linspace(lo, hi, n).astype(np.float32))


def test_exp_top_of_the_range(level):
    x = _grid(88.0, 88.72283)  # all finite in float32; the old clamp started at 88.376
    y = _C.unary(fastnn.from_numpy(x), "exp").numpy()
    err = ulp_err(y, np.exp(x.astype(np.float64)))
    assert err.max() <= 2.0, f"{level}: exp max error {err.max():.1f} ulp at x={x[err.argmax()]}"
    over = _C.unary(fastnn.from_numpy(np.array([88.7229, 89.0, 1e30, np.inf], np.float32)), "exp").numpy()
    assert np.all(over == np.inf)


def test_exp_denormal_results(level):
    x = _grid(-104.5, -87.0)
    y = _C.unary(fastnn.from_numpy(x), "exp").numpy()
    err = ulp_err(y, np.exp(x.astype(np.float64)))
    assert err.max() <= 2.0, f"{level}: exp max error {err.max():.1f} ulp at x={x[err.argmax()]}"
    assert (y[x > -103.9] > 0).all(), "a representable denormal e^x was flushed to 0"


@pytest.mark.parametrize("name", ["sigmoid", "silu"])
def test_sigmoid_silu_near_exp_overflow(level, name):
    """sigmoid(x) = 1 / (1 + e^-x): for x in [-88.72, -88.0] e^-x is near FLT_MAX."""
    x = _grid(-88.72283, -88.0)
    x64 = x.astype(np.float64)
    sig = 1.0 / (1.0 + np.exp(-x64))
    ref = sig if name == "sigmoid" else x64 * sig
    y = getattr(ops, name)(x).numpy()
    # silu = x * sigmoid(x): the denormal sigmoid's own rounding (<= 2^-149 absolute, the old
    # bug was 20 % relative) is multiplied by |x| ~ 88
    slack = 0.0 if name == "sigmoid" else np.abs(x64) * 2.0 ** -148
    err = ulp_err(np.float64(1.0) * y + 0, ref)
    spacing = np.maximum(np.spacing(np.abs(ref.astype(np.float32))).astype(np.float64), 2.0 ** -149)
    ok = np.abs(y.astype(np.float64) - ref) <= 3.0 * spacing + slack
    assert ok.all(), f"{level}: {name} max error {err.max():.1f} ulp at x={x[err.argmax()]}"
    g = getattr(ops, name + "_backward")(np.ones_like(x), x).numpy()
    dref = sig * (1 - sig) if name == "sigmoid" else sig * (1 + x64 * (1 - sig))
    # the derivative is a product of 2-3 such factors: a few more ulps (counted at the result)
    assert ulp_err(g, dref).max() <= 8.0 or np.allclose(g, dref, rtol=1e-5, atol=2 ** -149 * 8)


def test_log_denormal_inputs(level):
    x = np.concatenate([np.float32(2.0 ** -149) * np.arange(1, 2000, dtype=np.float32),
                        np.exp2(np.linspace(-149, -126, 3000)).astype(np.float32)])
    y = _C.unary(fastnn.from_numpy(x), "log").numpy()
    assert np.isfinite(y).all(), f"{level}: log of a denormal gave {y[~np.isfinite(y)][:3]}"
    err = ulp_err(y, np.log(x.astype(np.float64)))
    assert err.max() <= 2.0, f"{level}: log max error {err.max():.1f} ulp at x={x[err.argmax()]}"
    edge = _C.unary(fastnn.from_numpy(np.array([0.0, -0.0, -1e-45, np.inf, np.nan], np.float32)), "log").numpy()
    assert edge[0] == -np.inf and edge[1] == -np.inf and np.isnan(edge[2]) and edge[3] == np.inf and np.isnan(edge[4])


@pytest.mark.skipif(not fastnn.cuda.is_available(), reason="no cuda device (nor the emulator)")
@pytest.mark.parametrize("rows,out_f", [(1, 1), (17, 33), (65, 5)])
def test_linear_backward_bias_on_cuda_makes_no_host_copy(rows, out_f):
    rng = np.random.default_rng(rows)
    x, w, g = (rng.standard_normal(s).astype(np.float32) for s in ((rows, 9), (out_f, 9), (rows, out_f)))
    xd, wd, gd = (fastnn.from_numpy(a).to("cuda") for a in (x, w, g))
    ops.linear_backward(gd, xd, wd, True)  # warm-up (allocator, plan caches)
    before = _C._cuda_host_device_copies()
    gx, gw, gb = ops.linear_backward(gd, xd, wd, True)
    assert _C._cuda_host_device_copies() == before, "linear_backward(need_bias) copied to the device"
    # float32 sums of `rows` products: gamma_rows * sum|.| bound against float64
    g64 = g.astype(np.float64)
    for got, ref, bound in ((gb, g64.sum(0), np.abs(g64).sum(0)), (gx, g64 @ w, np.abs(g64) @ np.abs(w)),
                            (gw, g64.T @ x, np.abs(g64).T @ np.abs(x))):
        got = got.cpu().numpy()
        assert np.all(np.abs(got - ref) <= 2 * (rows + out_f + 9) * 2 ** -24 * bound + 1e-30)
    gx2, gw2, gb2 = ops.linear_backward(gd, xd, wd, False)
    assert gb2 is None
