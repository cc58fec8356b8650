"""conv2d / conv2d_backward against a float64 NumPy reference (stride tricks + einsum per tap),
at every SIMD level and with 1 and 2 threads; the reference's own backward is checked
against central finite differences; error contract."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import ops

from conftest import f32_matmul_tol

EPS32 = float(np.finfo(np.float32).eps)


# ---------------------------------------------------------------------------------------
# float64 reference
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads(padding, kh, kw, dil):
    """(top, bottom, left, right), PyTorch's rule for 'same' (extra on the bottom/right)."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        th, tw = dil[0] * (kh - 1), dil[1] * (kw - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = _pair(padding)
    return ph, ph, pw, pw


class Ref:
    """Forward and analytic backward of conv2d in float64."""

    def __init__(self, x_shape, w_shape, stride, padding, dilation, groups):
        self.N, self.C, self.H, self.W = x_shape
        self.O, self.Cg, self.kh, self.kw = w_shape
        self.s, self.d, self.G = _pair(stride), _pair(dilation), groups
        self.pt, self.pb, self.pl, self.pr = _pads(padding, self.kh, self.kw, self.d)
        self.Ho = (self.H + self.pt + self.pb - self.d[0] * (self.kh - 1) - 1) // self.s[0] + 1
        self.Wo = (self.W + self.pl + self.pr - self.d[1] * (self.kw - 1) - 1) // self.s[1] + 1
        self.Og = self.O // groups

    def _taps(self):
        for r in range(self.kh):
            for s in range(self.kw):
                hs = slice(r * self.d[0], r * self.d[0] + self.s[0] * (self.Ho - 1) + 1, self.s[0])
                ws = slice(s * self.d[1], s * self.d[1] + self.s[1] * (self.Wo - 1) + 1, self.s[1])
                yield r, s, hs, ws

    def _pad(self, x):
        return np.pad(x, ((0, 0), (0, 0), (self.pt, self.pb), (self.pl, self.pr)))

    def forward(self, x, w, b=None):
        x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
        xp = self._pad(x)
        y = np.zeros((self.N, self.G, self.Og, self.Ho, self.Wo))
        wg = w.reshape(self.G, self.Og, self.Cg, self.kh, self.kw)
        for r, s, hs, ws in self._taps():
            patch = xp[:, :, hs, ws].reshape(self.N, self.G, self.Cg, self.Ho, self.Wo)
            y += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, r, s])
        y = y.reshape(self.N, self.O, self.Ho, self.Wo)
        if b is not None:
            y += np.asarray(b, np.float64)[None, :, None, None]
        return y

    def backward(self, gy, x, w):
        gy, x, w = (np.asarray(a, np.float64) for a in (gy, x, w))
        xp = self._pad(x)
        gyg = gy.reshape(self.N, self.G, self.Og, self.Ho, self.Wo)
        wg = w.reshape(self.G, self.Og, self.Cg, self.kh, self.kw)
        dxp = np.zeros_like(xp)
        dw = np.zeros_like(wg)
        for r, s, hs, ws in self._taps():
            patch = xp[:, :, hs, ws].reshape(self.N, self.G, self.Cg, self.Ho, self.Wo)
            dxp[:, :, hs, ws] += np.einsum("ngohw,goc->ngchw", gyg, wg[:, :, :, r, s]).reshape(
                self.N, self.C, self.Ho, self.Wo)
            dw[:, :, :, r, s] = np.einsum("ngohw,ngchw->goc", gyg, patch)
        dx = dxp[:, :, self.pt:self.pt + self.H, self.pl:self.pl + self.W]
        return dx, dw.reshape(self.O, self.Cg, self.kh, self.kw), gy.sum(axis=(0, 2, 3))


def _gelu(v):
    return 0.5 * v * (1.0 + np.vectorize(math.erf)(v / math.sqrt(2.0)))


# ---------------------------------------------------------------------------------------
# (N, C, H, W, O, kh, kw, stride, padding, dilation, groups)
CASES = [
    (2, 3, 9, 11, 5, 3, 3, 1, 1, 1, 1),
    (1, 4, 10, 7, 6, 3, 3, 2, 1, 1, 1),            # stride 2, batch 1
    (2, 5, 13, 12, 7, 5, 5, 3, 2, 1, 1),           # stride 3, 5x5
    (1, 3, 15, 15, 4, 7, 7, 2, 3, 1, 1),           # 7x7 stem-like
    (2, 6, 11, 9, 8, 3, 3, 1, 2, 2, 1),            # dilation 2
    (2, 6, 9, 9, 10, 3, 3, 1, 1, 1, 2),            # groups 2
    (2, 8, 9, 10, 8, 3, 3, 1, 1, 1, 8),            # depthwise
    (1, 5, 11, 11, 10, 5, 5, 2, 2, 1, 5),          # depthwise, multiplier 2, stride 2
    (2, 3, 8, 13, 5, 1, 3, (1, 2), (0, 1), 1, 1),  # non-square kernel / stride / padding
    (1, 3, 9, 8, 4, 3, 1, (2, 1), (1, 0), (1, 2), 1),
    (1, 4, 7, 9, 5, 4, 2, 1, "same", 1, 1),        # 'same' with even kernels (asymmetric)
    (1, 3, 8, 8, 4, 3, 3, 1, "same", 2, 1),        # 'same' with dilation
    (2, 3, 7, 6, 4, 3, 3, 1, "valid", 1, 1),
    (2, 17, 5, 7, 19, 1, 1, 1, 0, 1, 1),           # 1x1 -> GEMM path
    (2, 5, 7, 7, 6, 1, 1, 2, 0, 1, 1),             # 1x1 stride 2 -> implicit GEMM
    (1, 3, 5, 5, 4, 1, 1, 1, 2, 1, 1),             # padding larger than the kernel reach
    (33, 3, 6, 5, 18, 3, 3, 1, 1, 1, 1),           # batch 33
    (2, 20, 10, 10, 37, 3, 3, 1, 1, 1, 1),         # C, O not multiples of 16; several MR panels
    (1, 60, 6, 6, 13, 3, 3, 1, 1, 1, 1),           # K = 540 > kc: K-blocked accumulation
    (2, 1, 12, 12, 33, 5, 5, 1, 2, 1, 1),          # single input channel, many outputs
    (2, 6, 12, 12, 9, 3, 3, 2, 2, 2, 3),           # groups 3 + stride 2 + dilation 2
    (1, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1),             # 1x1 image, 3x3 kernel
    (1, 2, 5, 4, 520, 3, 3, 1, 1, 1, 1),           # O > kc: grad-input accumulates over O blocks
    # >= 8 channels per group, stride 1: grad-input runs as a forward conv on flipped weights
    (2, 9, 7, 9, 5, 4, 2, 1, "same", 1, 1),        # asymmetric padding
    (1, 8, 5, 5, 4, 1, 1, 1, 2, 1, 1),             # transposed padding -2 (negative)
    (2, 16, 9, 8, 6, 3, 3, 1, 2, 2, 2),            # groups 2, dilation 2
    (1, 12, 6, 7, 7, 3, 5, 1, (2, 0), 1, 1),       # non-square, padding (2, 0) -> (0, 4)
    (2, 50, 5, 37, 14, 3, 3, 1, 1, 1, 1),          # AVX-512 stride-1 same-width path: 2 channel blocks, partial panel
    (1, 4, 6, 9, 5, 3, 3, 1, (0, 1), 1, 1),        # same width, out_h < in_h (top/bottom taps masked per panel)
    (2, 2, 30, 70, 5, 3, 3, 1, 1, 1, 1),           # same width, 2100 pixels: grad-weight sums image chunks
    (4, 26, 7, 18, 40, 3, 3, 1, "same", 2, 2),     # same width, groups + dilation, 13 channels per group
    (4, 20, 6, 17, 35, 4, 2, 1, "same", 1, 1),     # same width, even kernel (asymmetric pads), O not a multiple of 32
    # >= 16 channels per group in and out, stride 1: AVX-512 output-channel-vectorised kernel (conv_ocvec.cpp)
    (1, 32, 3, 13, 33, 3, 3, 1, 1, 1, 1),          # batch 1 (tile ranges split), 12 + 1 pixel tiles, 2 K blocks, O = 33
    (2, 40, 5, 17, 48, 3, 3, 1, "same", 2, 2),     # groups 2 (20 -> 24 per group), dilation 2
    (33, 16, 4, 4, 16, 3, 3, 1, 0, 1, 1),          # batch 33, 'valid' (grad-input: transposed padding 2)
    (1, 17, 6, 5, 18, 5, 5, 1, 4, 1, 1),           # 5x5, padding beyond the image; odd channel counts
    (1, 16, 7, 7, 16, 3, 3, 1, 3, 1, 1),           # grad-input with transposed padding -1
    (2, 16, 6, 6, 16, 3, 3, 2, 1, 1, 1),           # stride 2: not this kernel (igemm), same channel counts
    (1, 16, 2, 130, 16, 3, 3, 1, 1, 1, 1),         # padded rows of 132 > 8 pieces of 16: per-piece pad masks
    (2, 49, 3, 4, 47, 3, 3, 1, 1, 1, 1),           # 49 -> 47: grad-input packs 49 lanes of flipped weights (partial tile)
    (1, 96, 3, 3, 48, 3, 3, 1, 1, 1, 2),           # groups 2, 48 -> 24 per group (flipped view's group stride)
    (2, 3, 5, 40, 6, 3, 3, 1, 1, 1, 3),            # depthwise x2, rows of 40: grad-weight's unit-stride dot of >= 16
    (1, 16, 3, 140, 16, 3, 3, 1, 3, 1, 1),         # grad-input's transposed padding -1 on rows of 142 > 8 pieces: per-row pad
    (1, 16, 64, 66, 17, 3, 3, 1, 1, 1, 1),         # padded plane 66 x 68 > 256 pieces of 16: per-row pad, not expand loads
    (5, 16, 40, 40, 17, 3, 3, 1, 1, 1, 1),         # grad-weight sums 3 + 2 images per pass (L2 budget), prefetching the next
]
IDS = [f"case{i}" for i in range(len(CASES))]


def _make(case, rng, bias=True):
    N, C, H, W, O, kh, kw, stride, padding, dilation, groups = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((O, C // groups, kh, kw)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32) if bias else None
    ref = Ref(x.shape, w.shape, stride, padding, dilation, groups)
    return x, w, b, ref, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def _check(got, want, bound, what):
    """|got - want| <= bound elementwise (bound from the float32 dot-product error model)."""
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = np.abs(got - want)
    bad = err > bound
    assert not bad.any(), f"{what}: {bad.sum()} elements off, worst err {err.max():.3g} (bound {bound.flat[np.argmax(err)]:.3g})"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv2d_forward_backward(case, simd_level, threads, rng):
    _check_forward_backward(case, rng)


# conv_ocvec.cpp tiles a group's output channels into 48-channel (8-pixel) and 32-channel
# (12-pixel) tiles: 16, 17, 32 -> one 32; 47 -> a partial 48; 48, 96 -> 48s; 49 -> 32 + 17;
# 128 -> 48 + 48 + 32; 129 -> 48 + 48 + a partial 48 (33). The grad-input is the same kernel
# with C_in output channels, so C_in runs through the list too (reversed). Rows of 1..9 pixels
# give every 48-channel tile width 1..8 and the 32-channel 9; batch 1 splits tile ranges over
# the threads, batch 33 hands out whole images.
OCVEC_TILE_CASES = [
    (1 if i % 2 else 33, c, h, 10 - h, o, 3, 3, 1, 1, 1, 1)
    for i, (o, c, h) in enumerate(zip([16, 17, 32, 47, 48, 49, 96, 128, 129],
                                      [129, 128, 96, 49, 48, 47, 32, 17, 16], range(1, 10)))
]


@pytest.mark.parametrize("case", OCVEC_TILE_CASES, ids=[f"O{c[4]}_C{c[1]}_{c[2]}x{c[3]}" for c in OCVEC_TILE_CASES])
def test_conv2d_ocvec_channel_tiles(case, simd_level, threads, rng):
    _check_forward_backward(case, rng)
    # the fused epilogue of a 48-channel tile (bias lanes beyond a partial tile: 47, 129)
    x, w, b, ref, kw = _make(case, rng)
    y = np.asarray(ops.conv2d(x, w, b, activation="relu", **kw))
    K = ref.Cg * ref.kh * ref.kw
    _check(y, np.maximum(ref.forward(x, w, b), 0),
           f32_matmul_tol(K + 1) * ref.forward(np.abs(x), np.abs(w), np.abs(b)) + 1e-30, "relu")


def _check_forward_backward(case, rng):
    x, w, b, ref, kw = _make(case, rng)
    y = np.asarray(ops.conv2d(x, w, b, **kw))
    want = ref.forward(x, w, b)
    # Each output is a float32 dot product of length K = Cg*kh*kw (+ the bias): error
    # <= 2*K*eps * sum|w||x| (f32_matmul_tol), plus the bias rounding; the reference of the
    # magnitudes is the same convolution on |x|, |w|.
    K = ref.Cg * ref.kh * ref.kw
    mag = ref.forward(np.abs(x), np.abs(w), np.abs(b))
    _check(y, want, f32_matmul_tol(K + 1) * mag + 1e-30, "y")

    gy = rng.standard_normal(want.shape).astype(np.float32)
    gx, gw, gb = ops.conv2d_backward(gy, x, w, **kw)
    dx, dw, db = ref.backward(gy, x, w)
    adx, adw, _ = ref.backward(np.abs(gy), np.abs(x), np.abs(w))
    # dx: sums of Og*kh*kw products per input element; dw: sums over N*Ho*Wo pixels; db: N*Ho*Wo terms.
    _check(gx, dx, f32_matmul_tol(ref.Og * ref.kh * ref.kw) * adx + 1e-30, "grad_input")
    P = ref.N * ref.Ho * ref.Wo
    _check(gw, dw, f32_matmul_tol(P) * adw + 1e-30, "grad_weight")
    _check(gb, db, f32_matmul_tol(P) * np.abs(gy).sum(axis=(0, 2, 3)) + 1e-30, "grad_bias")


@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("case", [CASES[1], CASES[7], CASES[13], CASES[17]], ids=["s2", "dw", "1x1", "big"])
def test_conv2d_fused_activation(case, act, simd_level, rng):
    x, w, b, ref, kw = _make(case, rng)
    y = np.asarray(ops.conv2d(x, w, b, activation=act, **kw))
    pre = ref.forward(x, w, b)
    want = np.maximum(pre, 0) if act == "relu" else _gelu(pre)
    K = ref.Cg * ref.kh * ref.kw
    # Activations are 1-Lipschitz (gelu: |gelu'| <= 1.13); plus a few ulps for erf in float32.
    bound = 1.13 * f32_matmul_tol(K + 1) * ref.forward(np.abs(x), np.abs(w), np.abs(b)) + 8 * EPS32 * np.abs(want)
    _check(y, want, bound + 1e-6, act)


def test_conv2d_no_bias_and_partial_backward(rng):
    x, w, _, ref, kw = _make(CASES[5], rng, bias=False)
    y = np.asarray(ops.conv2d(x, w, **kw))
    np.testing.assert_allclose(y, ref.forward(x, w), rtol=1e-4, atol=1e-4)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw, gb = ops.conv2d_backward(gy, x, w, need_input=False, need_weight=False, need_bias=True, **kw)
    assert gx is None and gw is None
    np.testing.assert_allclose(np.asarray(gb), gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-4)
    gx, gw, gb = ops.conv2d_backward(gy, x, w, need_input=True, need_weight=False, need_bias=False, **kw)
    assert gw is None and gb is None
    np.testing.assert_allclose(np.asarray(gx), ref.backward(gy, x, w)[0], rtol=1e-4, atol=1e-4)


def test_conv2d_noncontiguous_inputs(rng):
    x, w, b, ref, kw = _make(CASES[0], rng)
    xt = np.asfortranarray(x)  # not C-contiguous: the binding copies it
    wt = w[:, :, ::-1, :][:, :, ::-1, :]
    y = np.asarray(ops.conv2d(xt, wt, b, **kw))
    np.testing.assert_allclose(y, ref.forward(x, w, b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [CASES[4], CASES[8], CASES[10], CASES[7], CASES[20]], ids=["dil", "nonsq", "same", "dw", "grp"])
def test_reference_backward_vs_finite_differences(case, rng):
    """The float64 analytic backward the suite trusts, checked by central differences on a
    random direction (error O(h^2) with h = 1e-5 in float64: far below the 1e-6 rtol)."""
    N, C, H, W, O, kh, kw_, stride, padding, dilation, groups = case
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C // groups, kh, kw_))
    b = rng.standard_normal(O)
    ref = Ref(x.shape, w.shape, stride, padding, dilation, groups)
    gy = rng.standard_normal((N, O, ref.Ho, ref.Wo))
    dx, dw, db = ref.backward(gy, x, w)
    h = 1e-5
    for arr, grad in ((x, dx), (w, dw), (b, db)):
        v = rng.standard_normal(arr.shape)
        orig = arr.copy()
        arr += h * v
        fp = (ref.forward(x, w, b) * gy).sum()
        arr[...] = orig - h * v
        fm = (ref.forward(x, w, b) * gy).sum()
        arr[...] = orig
        fd = (fp - fm) / (2 * h)
        assert abs(fd - (grad * v).sum()) <= 1e-6 * max(1.0, abs(fd))


def test_cpp_reference_matches(rng):
    """The plain C++ loop nest beside the fast kernels agrees with the NumPy reference too."""
    x, w, b, ref, kw = _make(CASES[20], rng)
    gy = rng.standard_normal((ref.N, ref.O, ref.Ho, ref.Wo)).astype(np.float32)
    y, gx, gw, gb = (np.asarray(t) for t in fastnn._C.conv2d_reference(x, w, b, gy, **kw))
    dx, dw, db = ref.backward(gy, x, w)
    np.testing.assert_allclose(y, ref.forward(x, w, b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, dw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gb, db, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [(3, 32, 12, 12, 3), (32, 64, 8, 8, 3), (1, 32, 14, 14, 5)], ids=str)
@pytest.mark.parametrize("nthreads", [1, 2])
def test_conv2d_batch1_thread_split(layer, nthreads, rng):
    """Batch 1: work is split over pixel and row blocks; results must not depend on the split."""
    C, O, H, W, k = layer
    x = rng.standard_normal((1, C, H, W)).astype(np.float32)
    w = rng.standard_normal((O, C, k, k)).astype(np.float32)
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(nthreads)
    try:
        y = np.asarray(ops.conv2d(x, w, padding=k // 2))
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gx, gw, _ = ops.conv2d_backward(gy, x, w, padding=k // 2)
    finally:
        fastnn.set_num_threads(before)
    ref = Ref(x.shape, w.shape, 1, k // 2, 1, 1)
    K = C * k * k
    _check(y, ref.forward(x, w), f32_matmul_tol(K) * ref.forward(np.abs(x), np.abs(w)) + 1e-30, "y")
    dx, dw, _ = ref.backward(gy, x, w)
    adx, adw, _ = ref.backward(np.abs(gy), np.abs(x), np.abs(w))
    _check(gx, dx, f32_matmul_tol(O * k * k) * adx + 1e-30, "grad_input")
    _check(gw, dw, f32_matmul_tol(H * W) * adw + 1e-30, "grad_weight")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 3), Cg=st.integers(1, 5), Og=st.integers(1, 6), G=st.integers(1, 3),
       H=st.integers(1, 9), W=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       dh=st.integers(1, 2), dw=st.integers(1, 2), seed=st.integers(0, 2**31))
def test_conv2d_hypothesis(N, Cg, Og, G, H, W, kh, kw, sh, sw, ph, pw, dh, dw, seed):
    if H + 2 * ph < dh * (kh - 1) + 1 or W + 2 * pw < dw * (kw - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, Cg * G, H, W)).astype(np.float32)
    w = rng.standard_normal((Og * G, Cg, kh, kw)).astype(np.float32)
    b = rng.standard_normal(Og * G).astype(np.float32)
    kwargs = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=G)
    ref = Ref(x.shape, w.shape, **kwargs)
    y = np.asarray(ops.conv2d(x, w, b, **kwargs))
    K = Cg * kh * kw
    _check(y, ref.forward(x, w, b), f32_matmul_tol(K + 1) * ref.forward(np.abs(x), np.abs(w), np.abs(b)) + 1e-30, "y")
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw, gb = ops.conv2d_backward(gy, x, w, **kwargs)
    dx, dwt, db = ref.backward(gy, x, w)
    adx, adw, _ = ref.backward(np.abs(gy), np.abs(x), np.abs(w))
    _check(gx, dx, f32_matmul_tol(Og * kh * kw) * adx + 1e-30, "grad_input")
    _check(gw, dwt, f32_matmul_tol(N * ref.Ho * ref.Wo) * adw + 1e-30, "grad_weight")
    _check(gb, db, f32_matmul_tol(N * ref.Ho * ref.Wo) * np.abs(gy).sum(axis=(0, 2, 3)) + 1e-30, "grad_bias")


# ---------------------------------------------------------------------------------------
def test_zero_size(simd_level, rng):
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = ops.conv2d(np.zeros((0, 3, 5, 5), np.float32), w, padding=1)
    assert tuple(y.shape) == (0, 4, 5, 5)
    gx, gw, gb = ops.conv2d_backward(np.zeros((0, 4, 5, 5), np.float32), np.zeros((0, 3, 5, 5), np.float32), w,
                                     padding=1)
    assert tuple(gx.shape) == (0, 3, 5, 5)
    np.testing.assert_array_equal(np.asarray(gw), 0)
    np.testing.assert_array_equal(np.asarray(gb), 0)
    # No input channels: the output is the bias (through the activation).
    b = np.array([1.0, -2.0], np.float32)
    y = np.asarray(ops.conv2d(np.zeros((2, 0, 4, 4), np.float32), np.zeros((2, 0, 3, 3), np.float32), b,
                              padding=1, activation="relu"))
    np.testing.assert_array_equal(y[:, 0], 1.0)
    np.testing.assert_array_equal(y[:, 1], 0.0)
    # No output channels.
    y = ops.conv2d(rng.standard_normal((1, 3, 4, 4)).astype(np.float32), np.zeros((0, 3, 3, 3), np.float32))
    assert tuple(y.shape) == (1, 0, 2, 2)
    gx, _, _ = ops.conv2d_backward(np.zeros((1, 0, 2, 2), np.float32), np.ones((1, 3, 4, 4), np.float32),
                                   np.zeros((0, 3, 3, 3), np.float32))
    np.testing.assert_array_equal(np.asarray(gx), 0)


def _x(*s):
    return np.zeros(s, np.float32)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: ops.conv2d(np.zeros((1, 3, 5, 5)), _x(4, 3, 3, 3)), TypeError, ["'x'", "float32", "float64"]),
    (lambda: ops.conv2d(_x(3, 5, 5), _x(4, 3, 3, 3)), ValueError, ["'x'", "4-D", "3-D"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3)), ValueError, ["'weight'", "4-D", "3-D"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 2, 3, 3)), ValueError, ["'weight'", "(out_channels, 3, kh, kw)",
                                                                      "(4, 2, 3, 3)"]),
    (lambda: ops.conv2d(_x(1, 4, 5, 5), _x(4, 2, 3, 3), groups=3), ValueError, ["'groups'", "4", "groups=3"]),
    (lambda: ops.conv2d(_x(1, 4, 5, 5), _x(3, 2, 3, 3), groups=2), ValueError, ["'groups'", "out_channels (3"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), groups=0), ValueError, ["'groups'", ">= 1", "0"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), _x(5)), ValueError, ["'bias'", "4", "(5,)"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), np.zeros(4)), TypeError, ["'bias'", "float32", "float64"]),
    (lambda: ops.conv2d(_x(1, 3, 2, 5), _x(4, 3, 3, 3)), ValueError,
     ["output size", "input size (2, 5)", "kernel (3, 3)", "padding", "stride", "dilation"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), dilation=3), ValueError, ["output size", "dilation (3, 3)"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), stride=2, padding="same"), ValueError,
     ["'padding'", "'same'", "stride"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), padding="full"), ValueError, ["'padding'", "'full'"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), stride=0), ValueError, ["'stride'", ">= 1", "0"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), padding=-1), ValueError, ["'padding'", ">= 0", "-1"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), stride=(1, 2, 3)), TypeError, ["'stride'", "pair"]),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3), activation="swish"), ValueError, ["'activation'", "swish"]),
    (lambda: ops.conv2d("x", _x(4, 3, 3, 3)), TypeError, ["'x'"]),
    (lambda: ops.conv2d_backward(_x(1, 4, 4, 4), _x(1, 3, 5, 5), _x(4, 3, 3, 3)), ValueError,
     ["'grad_out'", "(1, 4, 3, 3)", "(1, 4, 4, 4)"]),
])
def test_errors(call, exc, words):
    with pytest.raises(exc) as ei:
        call()
    msg = str(ei.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
