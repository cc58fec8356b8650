"""conv2d / conv2d_backward on device 'cuda' (kernels/conv_implicit_gemm.cu, conv_depthwise.cu,
conv_bias_grad.cu) against fastnn's CPU kernels, which tests/test_conv.py checks against a float64
reference.

Runs on the CPU emulator of CUDA (conftest sets FASTNN_CUDA_EMULATE=1) in the three thread-resume
orders (forward, reverse, seeded random). Shapes are small (the emulator is ~1000x slower than a GPU)
but cover every case family: stride 1/2, padding 0/1/2/'same' (also asymmetric, even kernel),
dilation 2, groups 2 and depthwise (multiplier 1 and 2), 1x1 / 3x3 / 5x5 / non-square kernels, odd
H/W, batch 1 and 3, channel counts that are not multiples of the 64x64 tiles (and more than one tile
in both GEMM dimensions), and wgrad with and without split-K.

Tolerance: both devices compute each output element as a float32 sum of K products (forward K =
Cg*kh*kw, grad input K = Og*kh*kw, grad weight / bias K = N*Ho*Wo) in different orders. Each is
within gamma_K * sum|a_i b_i| of the exact value, so they differ by at most 2*gamma_K*sum|a_i b_i|;
f32_matmul_tol(K) = 2*K*eps32 bounds that, with sum|a_i b_i| from the CPU kernel on |inputs|.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastnn import _C

from conftest import f32_matmul_tol

from cuda_spatial_util import cpu, dev, host, order  # noqa: F401 (order: autouse fixture)

EPS32 = float(np.finfo(np.float32).eps)

# (x shape (N, C, H, W), weight shape (O, C/groups, kh, kw), conv kwargs)
CASES = [
    ((1, 5, 9, 11), (7, 5, 3, 3), dict(padding=1)),                                   # batch 1, odd H/W
    ((3, 3, 11, 9), (17, 3, 3, 3), dict(stride=2)),                                   # stride 2, O = 17
    ((3, 4, 10, 10), (6, 4, 3, 3), dict(padding=1)),                                  # wgrad split-K (K = 300)
    ((2, 3, 9, 9), (5, 3, 5, 5), dict(padding="same")),                               # 5x5 'same'
    ((1, 3, 8, 9), (4, 3, 4, 2), dict(padding="same", dilation=2)),                   # asymmetric 'same'
    ((2, 3, 11, 10), (4, 3, 3, 3), dict(padding=2, dilation=2)),                      # dilation 2
    ((3, 4, 9, 8), (6, 2, 3, 1), dict(stride=(2, 1), padding=(1, 0), groups=2)),      # groups 2, non-square
    ((2, 4, 7, 9), (8, 1, 3, 3), dict(stride=2, padding=1, groups=4)),                # depthwise x2
    ((1, 6, 9, 9), (6, 1, 5, 5), dict(padding="same", groups=6)),                     # depthwise 5x5
    ((3, 6, 5, 7), (9, 6, 1, 1), dict()),                                             # 1x1
    ((1, 5, 9, 9), (3, 5, 1, 1), dict(stride=2)),                                     # 1x1 stride 2
    ((3, 20, 8, 9), (70, 20, 3, 3), dict(padding=1)),                                 # 2x4 tiles, K = 180
    ((1, 3, 7, 6), (2, 3, 7, 6), dict()),                                             # kernel = input: 1x1 out
]


def _within(actual, expected, bound, what):
    err = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"{what}: |diff| {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


def _ho_wo(y):
    return y.shape[0] * y.shape[2] * y.shape[3]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_conv2d_forward_backward(case, rng):
    xs, ws, kw = case
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    y = host(_C.conv2d(dev(x), dev(w), dev(b), **kw))
    want = np.asarray(_C.conv2d(cpu(x), cpu(w), cpu(b), **kw))
    mag = np.asarray(_C.conv2d(cpu(np.abs(x)), cpu(np.abs(w)), cpu(np.abs(b)), **kw))
    _within(y, want, f32_matmul_tol(ws[1] * ws[2] * ws[3] + 1) * mag, "y")

    gy = rng.standard_normal(want.shape).astype(np.float32)
    gx, gw, gb = (host(t) for t in _C.conv2d_backward(dev(gy), dev(x), dev(w), **kw))
    rx, rw, rb = (np.asarray(t) for t in _C.conv2d_backward(cpu(gy), cpu(x), cpu(w), **kw))
    ax, aw, ab = (np.asarray(t) for t in _C.conv2d_backward(cpu(np.abs(gy)), cpu(np.abs(x)), cpu(np.abs(w)), **kw))
    og = ws[0] // kw.get("groups", 1)
    _within(gx, rx, f32_matmul_tol(og * ws[2] * ws[3]) * ax, "grad_input")
    _within(gw, rw, f32_matmul_tol(_ho_wo(gy)) * aw, "grad_weight")
    _within(gb, rb, f32_matmul_tol(_ho_wo(gy)) * ab, "grad_bias")
    # The comparison has teeth: the outputs are not all zero.
    assert np.abs(y).max() > 0 and np.abs(gx).max() > 0 and np.abs(gw).max() > 0


@pytest.mark.parametrize("act", ["relu", "gelu", "gelu_tanh", "sigmoid", "tanh"])
@pytest.mark.parametrize("case", [CASES[1], CASES[7]], ids=["igemm", "depthwise"])
def test_conv2d_fused_activation(case, act, rng):
    xs, ws, kw = case
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    y = host(_C.conv2d(dev(x), dev(w), dev(b), activation=act, **kw))
    want = np.asarray(_C.conv2d(cpu(x), cpu(w), cpu(b), activation=act, **kw))
    mag = np.asarray(_C.conv2d(cpu(np.abs(x)), cpu(np.abs(w)), cpu(np.abs(b)), **kw))
    # Every activation here is 1.13-Lipschitz at most (GELU); the libm / CUDA math functions
    # differ by a few ulp of their result (<= 1.0 in magnitude for sigmoid/tanh): 4 eps extra.
    bound = 1.2 * f32_matmul_tol(ws[1] * ws[2] * ws[3] + 1) * mag + 4 * EPS32 * (1 + np.abs(want))
    _within(y, want, bound, act)
    if act == "relu":
        assert (y == 0).any() and (y > 0).any()


def test_conv2d_no_bias_and_partial_backward(rng):
    xs, ws, kw = CASES[0]
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    y = host(_C.conv2d(dev(x), dev(w), None, **kw))
    np.testing.assert_allclose(y, np.asarray(_C.conv2d(cpu(x), cpu(w), None, **kw)), rtol=1e-4, atol=1e-4)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    full = [host(t) for t in _C.conv2d_backward(dev(gy), dev(x), dev(w), **kw)]
    for ni, nw, nb in [(True, False, False), (False, True, False), (False, False, True), (False, True, True)]:
        got = _C.conv2d_backward(dev(gy), dev(x), dev(w), need_input=ni, need_weight=nw, need_bias=nb, **kw)
        for need, g, f in zip((ni, nw, nb), got, full):
            if need:
                np.testing.assert_array_equal(host(g), f)  # same kernels, same order
            else:
                assert g is None


def test_conv2d_noncontiguous_cuda_inputs(rng):
    x = rng.standard_normal((2, 9, 7, 3)).astype(np.float32)  # NHWC, viewed as NCHW
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    xd = dev(x).permute(0, 3, 1, 2)
    assert not xd.is_contiguous()
    y = host(_C.conv2d(xd, dev(w), padding=1))
    want = np.asarray(_C.conv2d(cpu(x.transpose(0, 3, 1, 2)), cpu(w), padding=1))
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


def test_conv2d_outputs_stay_on_device_without_host_copies(rng):
    xs, ws, kw = CASES[3]
    x, w = dev(rng.standard_normal(xs).astype(np.float32)), dev(rng.standard_normal(ws).astype(np.float32))
    b = dev(rng.standard_normal(ws[0]).astype(np.float32))
    dw_x = dev(rng.standard_normal((1, 4, 6, 6)).astype(np.float32))
    dw_w = dev(rng.standard_normal((4, 1, 3, 3)).astype(np.float32))
    before = _C._cuda_host_device_copies()
    y = _C.conv2d(x, w, b, activation="relu", **kw)
    grads = _C.conv2d_backward(y, x, w, **kw)
    y2 = _C.conv2d(dw_x, dw_w, None, padding=1, groups=4)
    grads2 = _C.conv2d_backward(y2, dw_x, dw_w, padding=1, groups=4)
    assert _C._cuda_host_device_copies() == before
    for t in (y, y2, *grads, *grads2):
        assert str(t.device).startswith("cuda")


def test_zero_size_cuda(rng):
    w = dev(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    y = _C.conv2d(dev(np.zeros((0, 3, 5, 5), np.float32)), w, padding=1)
    assert tuple(y.shape) == (0, 4, 5, 5)
    gx, gw, gb = _C.conv2d_backward(dev(np.zeros((0, 4, 5, 5), np.float32)), dev(np.zeros((0, 3, 5, 5), np.float32)),
                                    w, padding=1)
    assert tuple(gx.shape) == (0, 3, 5, 5)
    np.testing.assert_array_equal(host(gw), 0)
    np.testing.assert_array_equal(host(gb), 0)
    b = dev(np.array([1.0, -2.0], np.float32))
    y = host(_C.conv2d(dev(np.zeros((2, 0, 4, 4), np.float32)), dev(np.zeros((2, 0, 3, 3), np.float32)), b,
                        padding=1, activation="relu"))
    np.testing.assert_array_equal(y[:, 0], 1.0)
    np.testing.assert_array_equal(y[:, 1], 0.0)


def test_device_mismatch_errors(rng):
    x = dev(np.zeros((1, 3, 5, 5), np.float32))
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="'weight'"):
        _C.conv2d(x, cpu(w))
    with pytest.raises(ValueError, match="'bias'"):
        _C.conv2d(x, dev(w), cpu(np.zeros(4, np.float32)))
    with pytest.raises(ValueError, match="'grad_out'"):
        _C.conv2d_backward(cpu(np.zeros((1, 4, 3, 3), np.float32)), x, dev(w))
    with pytest.raises(ValueError, match="'x'.*'cpu'"):
        _C.conv2d_reference(x, dev(w), None, dev(np.zeros((1, 4, 3, 3), np.float32)))


# ---------------------------------------------------------------------------------------
# Tensor cores (kernels/conv_implicit_gemm_wmma.cu): TF32 for float32 with allow_tf32=True,
# BF16 / FP16 for 16-bit x and weight. The CPU reference gets the 16-bit inputs converted back
# to float32 (exact), so the forward pass differs only by float32 accumulation order (the
# f32_matmul_tol bound). The backward passes also round the float32 dy to the operand type:
# relative 2^-9 (bf16) / 2^-12 (fp16) per product; TF32 rounds both operands of every product
# (round to nearest, 10-bit mantissa): relative 2 * 2^-11. Bounds below use twice those.
TC_MULTI_TILE = ((1, 6, 9, 9), (70, 6, 3, 3), dict(padding=1))  # 2x2 tiles, cheaper than CASES[11]
TC_CASES = [CASES[0], CASES[2], CASES[4], CASES[6], CASES[7], TC_MULTI_TILE]
# fp16 wmma is slow under the emulator: two cases (batch 1 odd sizes, grouped) suffice for it.
TC_PARAMS = [(c, d) for c in TC_CASES for d in ("tf32", "bfloat16")] + [(CASES[0], "float16"), (CASES[7], "float16")]
TC_ROUNDING = {"tf32": 2.0 ** -9, "bfloat16": 2.0 ** -8, "float16": 2.0 ** -11}


def _tc_inputs(dtype, x, w):
    """CUDA inputs for the path, and the float32 values the kernels actually multiply."""
    xd, wd = dev(x), dev(w)
    if dtype == "tf32":
        return xd, wd, x, w, True
    xd, wd = xd.to(dtype), wd.to(dtype)
    return xd, wd, host(xd.to("float32")), host(wd.to("float32")), None


@pytest.mark.parametrize("case, dtype", TC_PARAMS, ids=lambda v: v if isinstance(v, str) else f"{v[0]}-{v[1]}-{v[2]}")
def test_conv2d_tensor_cores(case, dtype, rng):
    xs, ws, kw = case
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    xd, wd, xr, wr, tf32 = _tc_inputs(dtype, x, w)
    rel = TC_ROUNDING[dtype]
    y = host(_C.conv2d(xd, wd, dev(b), allow_tf32=tf32, **kw))
    want = np.asarray(_C.conv2d(cpu(xr), cpu(wr), cpu(b), **kw))
    mag = np.asarray(_C.conv2d(cpu(np.abs(xr)), cpu(np.abs(wr)), cpu(np.abs(b)), **kw))
    k = ws[1] * ws[2] * ws[3] + 1
    depthwise_fp32 = dtype == "tf32" and kw.get("groups", 1) == xs[1] > 1  # the FP32 depthwise kernel
    fwd_rel = rel if dtype == "tf32" and not depthwise_fp32 else 0.0
    _within(y, want, (fwd_rel + f32_matmul_tol(k)) * mag, f"y ({dtype})")

    gy = rng.standard_normal(want.shape).astype(np.float32)
    gx, gw, gb = (host(t) for t in _C.conv2d_backward(dev(gy), xd, wd, allow_tf32=tf32, **kw))
    rx, rw, rb = (np.asarray(t) for t in _C.conv2d_backward(cpu(gy), cpu(xr), cpu(wr), **kw))
    ax, aw, ab = (np.asarray(t) for t in _C.conv2d_backward(cpu(np.abs(gy)), cpu(np.abs(xr)), cpu(np.abs(wr)),
                                                            **kw))
    og = ws[0] // kw.get("groups", 1)
    bwd_rel = 0.0 if depthwise_fp32 else rel
    _within(gx, rx, (bwd_rel + f32_matmul_tol(og * ws[2] * ws[3])) * ax, f"grad_input ({dtype})")
    _within(gw, rw, (bwd_rel + f32_matmul_tol(_ho_wo(gy))) * aw, f"grad_weight ({dtype})")
    _within(gb, rb, f32_matmul_tol(_ho_wo(gy)) * ab, f"grad_bias ({dtype})")  # float32 dy: no rounding
    assert gx.dtype == np.float32 and gw.dtype == np.float32 and y.dtype == np.float32
    if dtype == "tf32" and not depthwise_fp32:  # TF32 really ran: it rounds the float32 operands
        assert np.any(y != host(_C.conv2d(dev(x), dev(w), dev(b), **kw)))


def test_conv2d_tensor_cores_fused_gelu(rng):
    xs, ws, kw = CASES[1]
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    xd, wd, xr, wr, _ = _tc_inputs("bfloat16", x, w)
    y = host(_C.conv2d(xd, wd, dev(b), activation="gelu", **kw))
    want = np.asarray(_C.conv2d(cpu(xr), cpu(wr), cpu(b), activation="gelu", **kw))
    mag = np.asarray(_C.conv2d(cpu(np.abs(xr)), cpu(np.abs(wr)), cpu(np.abs(b)), **kw))
    _within(y, want, 1.2 * f32_matmul_tol(ws[1] * ws[2] * ws[3] + 1) * mag + 4 * EPS32 * (1 + np.abs(want)), "gelu")


def test_tensor_core_argument_errors():
    x = dev(np.zeros((1, 3, 5, 5), np.float32))
    w = dev(np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="'weight'.*bfloat16.*float32"):
        _C.conv2d(x.to("bfloat16"), w)
    with pytest.raises(TypeError, match="'x'.*float32.*bfloat16"):
        _C.conv2d(cpu(np.zeros((1, 3, 5, 5), np.float32)).to("bfloat16"), cpu(np.zeros((4, 3, 3, 3), np.float32)))
    with pytest.raises(TypeError, match="'allow_tf32'"):
        _C.conv2d(x, w, allow_tf32="yes")
    with pytest.raises(TypeError, match="'grad_out'.*float32"):
        _C.conv2d_backward(dev(np.zeros((1, 4, 3, 3), np.float32)).to("bfloat16"), x.to("bfloat16"), w.to("bfloat16"))
