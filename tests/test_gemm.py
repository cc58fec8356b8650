"""GEMM family: fastnn.ops.gemm / matmul / linear and their backward passes, against
float64 NumPy references, at every SIMD level and with 1 and 2 threads.

Tolerance (stated once, used everywhere): for C = A @ B with inner dimension K, the
float32 result satisfies, element-wise,
    |C - C_exact| <= 4 * sqrt(K) * eps32 * (|A| @ |B|)  +  4 * eps32 * |C_exact|
The first term is the probabilistic rounding bound of a length-K float32 sum (Higham &
Mary 2019: error ~ sqrt(K) * eps * sum|a_i b_i| with high probability; the worst case K*eps
is far too loose to catch a dropped term), with a safety factor 4; the second covers the
final rounding and the alpha/beta/bias epilogue. The fused activations add their own
approximation error (<= ~2e-7 absolute, see csrc/cpu/kernels/gemm_epilogue.h) and scale the
error of their input by at most max|act'| <= 1.13 (gelu). A single dropped or doubled
product term (~|a_i b_i|) exceeds this bound by orders of magnitude for K <= 8192.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn.ops import gemm, linear, linear_backward, matmul, matmul_backward

EPS = float(np.finfo(np.float32).eps)
ACTS = [None, "relu", "gelu", "gelu_tanh", "sigmoid", "tanh"]


def _erf(x):
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x)


def act_ref(x, act):
    x = np.asarray(x, np.float64)
    if act is None:
        return x
    if act == "relu":
        return np.maximum(x, 0.0)
    if act == "gelu":
        return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))
    if act == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    if act == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if act == "tanh":
        return np.tanh(x)
    raise AssertionError(act)


def bound(a, b, k, ref):
    """Element-wise error bound of the module docstring (a, b: op(A), op(B) as float64)."""
    mag = np.abs(a) @ np.abs(b) if k > 0 else np.zeros(ref.shape)
    return 4.0 * np.sqrt(max(k, 1)) * EPS * mag + 4.0 * EPS * np.abs(ref)


def check_close(got, ref, tol, act=None):
    got = np.asarray(got)
    assert got.dtype == np.float32
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if act is not None:
        tol = 1.13 * tol + 2e-7 * (1.0 + np.abs(ref))
    err = np.abs(got.astype(np.float64) - ref)
    bad = ~(err <= tol)
    assert not bad.any(), f"{bad.sum()} of {bad.size} elements off; max err {err.max():.3g}, tol there {tol[bad][0]:.3g}"


def rand(rng, *shape):
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


def gemm_ref(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None, activation=None):
    a64 = np.asarray(a, np.float64)
    b64 = np.asarray(b, np.float64)
    a64 = a64.T if trans_a else a64
    b64 = b64.T if trans_b else b64
    z = alpha * (a64 @ b64)
    if beta != 0.0:
        z = z + beta * np.asarray(c, np.float64)
    if bias is not None:
        z = z + np.asarray(bias, np.float64)
    tol = abs(alpha) * bound(a64, b64, a64.shape[1], z) + 4 * EPS * np.abs(z)
    if beta != 0.0:
        tol = tol + 2 * EPS * abs(beta) * np.abs(np.asarray(c, np.float64))
    return act_ref(z, activation), tol


def run_case(rng, m, k, n, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, with_c=False, with_bias=False,
             activation=None):
    a = rand(rng, k, m) if trans_a else rand(rng, m, k)
    b = rand(rng, n, k) if trans_b else rand(rng, k, n)
    c = rand(rng, m, n) if with_c else None
    bias = rand(rng, n) if with_bias else None
    c_before = None if c is None else c.copy()
    got = gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, c=c, bias=bias,
               activation=activation)
    ref, tol = gemm_ref(a, b, trans_a, trans_b, alpha, beta, c, bias, activation)
    check_close(got, ref, tol, activation)
    if c is not None:
        np.testing.assert_array_equal(c, c_before)  # c is never modified without out=


# ---- gemm: layouts, sizes, epilogue -------------------------------------------------------

@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_trans(simd_level, threads, trans_a, trans_b, rng):
    run_case(rng, 97, 61, 131, trans_a, trans_b)
    run_case(rng, 29, 400, 45, trans_a, trans_b, alpha=0.5, beta=-1.5, with_c=True, with_bias=True,
             activation="gelu")


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 13, 5), (97, 131, 61), (1000, 1, 1000), (1, 1000, 1),
                                   (12, 384, 32), (13, 385, 33), (11, 383, 31), (24, 769, 64), (5, 3, 700),
                                   (64, 784, 128), (37, 500, 161)])
def test_gemm_sizes(simd_level, threads, m, k, n, rng):
    run_case(rng, m, k, n)
    run_case(rng, m, k, n, trans_b=True, with_bias=True, beta=2.0, with_c=True, activation="relu")


@pytest.mark.parametrize("n", list(range(1, 18)) + [20, 31, 32])
def test_gemm_single_column_tile(simd_level, threads, n, rng):
    # The small-problem path with C of one column tile (n <= 32 on AVX-512): A read in place
    # when its column stride is 1 (else packed), B of n < 16 columns (or 16 strided ones)
    # packed 16 wide, n = 16 / 32 read in place. m = 13 / 100: ragged 12-row edges;
    # 200 x 700: two threads splitting the 17 row panels 9 + 8.
    for m, k in [(1, 1), (13, 9), (100, 300), (200, 700)]:
        run_case(rng, m, k, n)
        run_case(rng, m, k, n, trans_a=True, trans_b=True, with_bias=True, activation="relu")
        run_case(rng, m, k, n, alpha=-0.5, beta=1.5, with_c=True, with_bias=True, activation="tanh")


def test_gemm_single_column_tile_views(simd_level, threads, rng):
    # A read in place through any row stride: a sliced row pitch (lda > k), reversed rows
    # (negative lda), broadcast rows (lda = 0); B narrow with a sliced row pitch.
    big_a = rand(rng, 150, 400)
    big_b = rand(rng, 300, 40)
    b = big_b[:257, 3:13]
    for a in [big_a[:100, 7:264], big_a[::-1, :257][:100], np.broadcast_to(big_a[5, :257], (100, 257))]:
        assert a.strides[1] == 4
        got = gemm(a, b)
        ref, tol = gemm_ref(a, b)
        check_close(got, ref, tol)


@pytest.mark.parametrize("m,k,n", [(4105, 1030, 5), (13, 1030, 1500), (4097, 1025, 33)])
def test_gemm_balanced_blocks(simd_level, threads, m, k, n, rng):
    # Packed path (k > 1024) with M above the A block height (mc = 4092 on AVX-512) and N
    # above the B block width (nc = 672) per thread: the rows / columns are cut into equal
    # blocks (gemm_driver.cpp balanced_block), with ragged MR / NR edges in each of them.
    run_case(rng, m, k, n, with_bias=True, beta=0.5, with_c=True, activation="relu")


@pytest.mark.parametrize("m,k,n", [(1501, 1030, 701), (97, 1100, 40), (4097, 1025, 5)])
def test_gemm_tall_shared_b(simd_level, threads, m, k, n, rng):
    # Tall products (m >= 2n) past the small-problem path: with 2 threads M is split (ragged
    # MR units: 1501 rows -> 126 + 125 units of 12 on AVX-512) and the threads share each
    # packed B block; 701 columns = 2 B blocks (nc = 672 on AVX-512) and k = 1030 = 3 k blocks, so the
    # barrier between repacks of the shared block and the first / last k block epilogue
    # (beta, bias, activation) are all exercised.
    run_case(rng, m, k, n, with_bias=True, beta=0.5, with_c=True, activation="gelu")
    run_case(rng, m, k, n, trans_a=True, trans_b=True, alpha=-2.0)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("alpha,beta,with_c", [(1.0, 0.0, False), (-0.75, 0.0, True), (1.0, 1.0, True),
                                               (2.0, -0.5, True), (0.0, 0.3, True)])
def test_gemm_epilogue(simd_level, activation, alpha, beta, with_c, rng):
    # k = 1500: several k blocks of the packed path (k > 1024 avoids the unpacked small-problem
    # path): bias and activation must be applied exactly once, on the last one.
    run_case(rng, 37, 1500, 45, alpha=alpha, beta=beta, with_c=with_c, with_bias=True, activation=activation)
    run_case(rng, 3, 17, 9, alpha=alpha, beta=beta, with_c=with_c, with_bias=False, activation=activation)


def test_activation_range(simd_level, rng):
    # Large |z| (exp clamping, tanh/sigmoid saturation) and tiny |z| (tanh series branch).
    a = np.concatenate([np.linspace(-60, 60, 41), np.linspace(-0.3, 0.3, 23)]).astype(np.float32)[:, None]
    b = np.ones((1, 1), np.float32)
    for act in ACTS:
        got = np.asarray(gemm(a, b, activation=act))
        ref = act_ref(a.astype(np.float64), act)
        np.testing.assert_allclose(got, ref, rtol=8 * EPS, atol=3e-7, err_msg=str(act))


def test_gemm_large_k(simd_level, rng):
    run_case(rng, 13, 8192, 21, with_bias=True, beta=0.5, with_c=True)
    run_case(rng, 33, 8192, 40, trans_a=True)


def test_gemm_blocks_and_threads(threads, rng):
    # More than one nc block (N > nc), several k blocks, the M-split thread path (small N),
    # for the packed path (large m*n*k) and the unpacked small-problem path.
    run_case(rng, 150, 900, 1400, with_bias=True, activation="tanh")
    run_case(rng, 1300, 1100, 10, with_bias=True, beta=1.0, with_c=True)
    run_case(rng, 500, 300, 10, with_bias=True, beta=1.0, with_c=True)
    run_case(rng, 3, 200, 3000, trans_a=True, trans_b=True)
    run_case(rng, 100, 90, 80, trans_a=True, trans_b=True, with_bias=True)


@pytest.mark.parametrize("m,k,n", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)])
def test_gemm_empty(simd_level, m, k, n, rng):
    a, b = rand(rng, m, k), rand(rng, k, n)
    assert np.asarray(gemm(a, b)).shape == (m, n)
    if k == 0 and m and n:
        np.testing.assert_array_equal(np.asarray(gemm(a, b)), np.zeros((m, n), np.float32))
        c, bias = rand(rng, m, n), rand(rng, n)
        got = gemm(a, b, beta=2.0, c=c, bias=bias, activation="relu")
        np.testing.assert_allclose(np.asarray(got), np.maximum(2.0 * c + bias, 0), rtol=2 * EPS)


def test_blas_nan_rules(rng):
    a, b = rand(rng, 5, 4), rand(rng, 4, 6)
    c = np.full((5, 6), np.nan, np.float32)
    # beta == 0: C is not read.
    np.testing.assert_allclose(np.asarray(gemm(a, b, c=c)), a.astype(np.float64) @ b, rtol=1e-5, atol=1e-6)
    # alpha == 0: A and B are not read.
    a_nan = np.full_like(a, np.nan)
    c2 = rand(rng, 5, 6)
    np.testing.assert_allclose(np.asarray(gemm(a_nan, b, alpha=0.0, beta=3.0, c=c2)), 3.0 * c2, rtol=2 * EPS)
    # NaN in A propagates (relu does not swallow it).
    a[1, 2] = np.nan
    got = np.asarray(gemm(a, b, activation="relu"))
    assert np.isnan(got[1]).all() and not np.isnan(np.delete(got, 1, axis=0)).any()


# ---- strides, views, out= ---------------------------------------------------------------

def test_gemm_views(simd_level, threads, rng):
    big_a, big_b = rand(rng, 90, 140), rand(rng, 150, 80)
    views_a = [big_a[::2, 3:70], big_a[::-1, ::-2][:45, :67], big_a.T[10:77, 5:50].T, big_a[5:50, ::-1][:, :67]]
    views_b = [big_b[:67, ::3][:, :25], big_b[::-2, 1:26][:67], big_b.T[:25, :67].T, big_b[66::-1, 4:29]]
    for va in views_a:
        for vb in views_b:
            assert va.shape == (45, 67) and vb.shape == (67, 25)
            ref, tol = gemm_ref(va, vb)
            check_close(gemm(va, vb), ref, tol)
    # Transposed flags on views.
    ref, tol = gemm_ref(views_a[1].T.T, views_b[1].T, trans_b=True)
    check_close(gemm(views_a[1], views_b[1].T, trans_b=True), ref, tol)


def test_gemm_out(simd_level, rng):
    a, b, bias = rand(rng, 40, 30), rand(rng, 30, 50), rand(rng, 50)
    c = rand(rng, 40, 50)
    ref, tol = gemm_ref(a, b, alpha=1.5, beta=0.5, c=c, bias=bias, activation="sigmoid")
    # out is c: in-place BLAS update.
    c_inplace = c.copy()
    r = gemm(a, b, alpha=1.5, beta=0.5, c=c_inplace, out=c_inplace, bias=bias, activation="sigmoid")
    check_close(c_inplace, ref, tol, "sigmoid")
    check_close(r, ref, tol, "sigmoid")
    # Column-major out (computed as C^T = B^T A^T) and a strided out (general C strides).
    for out in [np.asfortranarray(np.zeros((40, 50), np.float32)), np.zeros((40, 150), np.float32)[:, ::3],
                np.zeros((80, 50), np.float32)[::-2]]:
        gemm(a, b, alpha=1.5, beta=0.5, c=c, out=out, bias=bias, activation="sigmoid")
        check_close(out, ref, tol, "sigmoid")
    with pytest.raises(ValueError, match="'out'.*'a'"):
        buf = np.zeros((40, 50), np.float32)
        gemm(buf[:, :30], b[:, :30] if False else rand(rng, 30, 50), out=buf)
    with pytest.raises(ValueError, match="out"):
        gemm(a, b, out=np.zeros((40, 51), np.float32))


# ---- matmul ---------------------------------------------------------------------------------

MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((5, 2, 3), (3, 4)), ((3,), (5, 3, 2)),
                 ((2, 1, 4, 3), (5, 3, 2)), ((1, 7, 6), (4, 6, 9)), ((4, 0, 3), (3, 2)), ((2, 3, 0), (2, 0, 4)),
                 ((6, 40, 50), (6, 50, 33))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul(simd_level, sa, sb, rng):
    a, b = rand(rng, *sa), rand(rng, *sb)
    got = np.asarray(matmul(a, b))
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    mag = np.matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)))
    k = sa[-1]
    check_close(got, np.asarray(ref), 4 * np.sqrt(max(k, 1)) * EPS * mag + 4 * EPS * np.abs(ref))


def test_matmul_strided_batches(threads, rng):
    base = rand(rng, 4, 6, 20, 30)
    a = base.transpose(1, 0, 3, 2)[:, ::-1, ::2]  # (6, 4, 15, 20): non-collapsible batch dims
    b = rand(rng, 4, 20, 8)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    mag = np.matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)))
    check_close(matmul(a, b), ref, 4 * np.sqrt(20) * EPS * mag + 4 * EPS * np.abs(ref))


@pytest.mark.parametrize("sa,sb", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((5, 2, 3), (3, 4)),
                                   ((2, 1, 4, 3), (5, 3, 2)), ((4, 5), (5, 2))])
def test_matmul_backward(sa, sb, rng):
    a, b = rand(rng, *sa), rand(rng, *sb)
    out = np.matmul(a, b)
    g = rand(rng, *out.shape)
    ga, gb = (np.asarray(t) for t in matmul_backward(g, a, b))
    assert ga.shape == a.shape and gb.shape == b.shape
    # Reference: gradients of L = sum(g * (a @ b)) by central finite differences in float64
    # (L is bilinear, so the difference quotient is exact up to rounding).
    a64, b64, g64 = a.astype(np.float64), b.astype(np.float64), g.astype(np.float64)

    def loss(x, y):
        return float(np.sum(g64 * np.matmul(x, y)))

    for x, grad, is_a in [(a64, ga, True), (b64, gb, False)]:
        fd = np.zeros_like(x)
        h = 1e-3
        for idx in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += h
            xm[idx] -= h
            fd[idx] = (loss(xp, b64) - loss(xm, b64)) / (2 * h) if is_a else (loss(a64, xp) - loss(a64, xm)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


# ---- linear ---------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", [None, "relu", "gelu_tanh"])
def test_linear(simd_level, activation, rng):
    for xs in [(7,), (6, 7), (2, 3, 7), (0, 7)]:
        x, w, bias = rand(rng, *xs), rand(rng, 5, 7), rand(rng, 5)
        ref, tol = gemm_ref(x.reshape(-1, 7), w, trans_b=True, bias=bias, activation=activation)
        got = np.asarray(linear(x, w, bias, activation=activation))
        assert got.shape == xs[:-1] + (5,)
        check_close(got.reshape(-1, 5), ref, tol, activation)
    # Non-collapsible leading dims and a strided weight.
    x = rand(rng, 4, 6, 9).transpose(1, 0, 2)[:, ::2]
    w = rand(rng, 10, 18)[:, ::2]
    ref, tol = gemm_ref(x.reshape(-1, 9), w, trans_b=True)
    check_close(np.asarray(linear(x, w)).reshape(-1, 10), ref, tol)


def test_linear_backward(threads, rng):
    x, w = rand(rng, 3, 4, 33), rand(rng, 17, 33)
    g = rand(rng, 3, 4, 17)
    gx, gw, gb = (np.asarray(t) for t in linear_backward(g, x, w, True))
    g2, x2 = g.reshape(-1, 17).astype(np.float64), x.reshape(-1, 33).astype(np.float64)
    check_close(gx.reshape(-1, 33), g2 @ w, bound(g2, w.astype(np.float64), 17, g2 @ w))
    check_close(gw, g2.T @ x2, bound(g2.T, x2, 12, g2.T @ x2))
    check_close(gb, g2.sum(0), 4 * np.sqrt(12) * EPS * np.abs(g2).sum(0) + 4 * EPS)
    assert linear_backward(g, x, w, False)[2] is None
    # Finite differences of L = sum(g * linear(x, w, b)) on a few entries.
    x64, w64, gg = x.astype(np.float64), w.astype(np.float64), g.astype(np.float64)
    h = 1e-3
    for idx in [(0, 0, 0), (2, 3, 32), (1, 2, 5)]:
        xp, xm = x64.copy(), x64.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (np.sum(gg * (xp @ w64.T)) - np.sum(gg * (xm @ w64.T))) / (2 * h)
        assert abs(gx[idx] - fd) < 1e-4
    for idx in [(0, 0), (16, 32), (5, 7)]:
        wp, wm = w64.copy(), w64.copy()
        wp[idx] += h
        wm[idx] -= h
        fd = (np.sum(gg * (x64 @ wp.T)) - np.sum(gg * (x64 @ wm.T))) / (2 * h)
        assert abs(gw[idx] - fd) < 1e-4


# ---- inputs: Tensor / DLPack, devices ---------------------------------------------------

def test_tensor_and_dlpack_inputs(rng):
    a, b = rand(rng, 8, 9), rand(rng, 9, 10)
    ref, tol = gemm_ref(a, b)
    ta = fastnn.from_numpy(a)
    assert isinstance(gemm(ta, b), fastnn.Tensor)
    check_close(gemm(ta, b), ref, tol)
    torch = pytest.importorskip("torch")
    check_close(gemm(torch.from_numpy(a), torch.from_numpy(b)), ref, tol)


def test_cuda_device(device, rng):
    if device == "cpu":
        pytest.skip("cuda device not available")
    a, b, bias = rand(rng, 20, 30), rand(rng, 30, 25), rand(rng, 25)
    da, db, dbias = (fastnn.from_numpy(x).to(device) for x in (a, b, bias))
    ref, tol = gemm_ref(a, b, bias=bias, activation="relu")
    check_close(np.asarray(gemm(da, db, bias=dbias, activation="relu").to("cpu")), ref, tol, "relu")
    with pytest.raises(ValueError, match="argument 'b'.*cpu|argument 'b'.*cuda"):
        gemm(da, b)


# ---- errors ---------------------------------------------------------------------------------

def test_errors(rng):
    a, b = rand(rng, 4, 5), rand(rng, 5, 6)
    with pytest.raises(TypeError, match=r"gemm: argument 'b': expected 2-D float32, bfloat16 or float16, got 3-D float64"):
        gemm(a, np.zeros((2, 5, 6)))
    with pytest.raises(ValueError, match=r"gemm: argument 'a': expected 2-D float32, bfloat16 or float16, got 1-D"):
        gemm(np.zeros(5, np.float32), b)
    with pytest.raises(ValueError, match=r"inner dimensions.*\(4, 5\).*\(6, 6\)"):
        gemm(a, rand(rng, 6, 6))
    with pytest.raises(ValueError, match=r"'bias': expected length 6"):
        gemm(a, b, bias=rand(rng, 5))
    with pytest.raises(ValueError, match=r"'c': expected shape \(4, 6\)"):
        gemm(a, b, beta=1.0, c=rand(rng, 6, 4))
    with pytest.raises(ValueError, match=r"'c'.*beta"):
        gemm(a, b, beta=1.0)
    with pytest.raises(ValueError, match=r"'activation'.*'relu'.*got 'swish'"):
        gemm(a, b, activation="swish")
    with pytest.raises(TypeError, match=r"'a'"):
        gemm("not a tensor", b)
    with pytest.raises(ValueError, match=r"matmul: argument 'b': inner dimensions do not match: a has shape \(4, 5\) and b has shape \(4, 6\)"):
        matmul(a, rand(rng, 4, 6))
    with pytest.raises(ValueError, match=r"matmul: cannot broadcast.*\(2, 4, 5\).*\(3, 5, 6\)"):
        matmul(rand(rng, 2, 4, 5), rand(rng, 3, 5, 6))
    with pytest.raises(ValueError, match=r"matmul: argument 'a': expected at least 1-D float32, bfloat16 or float16, got 0-D"):
        matmul(np.array(1.0, np.float32), b)
    with pytest.raises(ValueError, match=r"linear: argument 'weight': inner dimensions"):
        linear(rand(rng, 3, 4), rand(rng, 5, 3))
    with pytest.raises(ValueError, match=r"linear: argument 'bias': expected length 5"):
        linear(rand(rng, 3, 4), rand(rng, 5, 4), rand(rng, 4))
    with pytest.raises(ValueError, match=r"matmul_backward: argument 'grad': expected shape \(4, 6\)"):
        matmul_backward(rand(rng, 4, 5), a, b)


# ---- property test ------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(0, 40), k=st.integers(0, 70), n=st.integers(0, 70), ta=st.booleans(), tb=st.booleans(),
       sa=st.sampled_from([1, 2, -1]), sb=st.sampled_from([1, 3, -2]), beta=st.sampled_from([0.0, 1.0, -0.5]),
       act=st.sampled_from(ACTS), level=st.sampled_from(["generic", "avx2", "avx512"]), seed=st.integers(0, 99))
def test_gemm_property(m, k, n, ta, tb, sa, sb, beta, act, level, seed):
    rng = np.random.default_rng(seed)
    before = fastnn.get_simd_level()
    try:
        fastnn.set_simd_level(level)
    except ValueError:
        return  # the CPU lacks this level
    try:
        ashape = (k, m) if ta else (m, k)
        bshape = (n, k) if tb else (k, n)
        a = rand(rng, ashape[0], ashape[1] * abs(sa))[:, ::sa] if sa != 1 else rand(rng, *ashape)
        b = rand(rng, bshape[0] * abs(sb), bshape[1])[::sb] if sb != 1 else rand(rng, *bshape)
        a, b = a[:, : ashape[1]], b[: bshape[0]]
        c = rand(rng, m, n)
        bias = rand(rng, n)
        got = gemm(a, b, trans_a=ta, trans_b=tb, beta=beta, c=c, bias=bias, activation=act)
        ref, tol = gemm_ref(a, b, ta, tb, 1.0, beta, c, bias, act)
        check_close(got, ref, tol, act)
    finally:
        fastnn.set_simd_level(before)


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 2, 3), (2, 0, 3), (0, 3)])
def test_linear_zero_rows_any_leading_shape(shape):
    """Zero-size leading dimensions: an empty result of the right shape (forward and backward).
    (0, 0, k) used to leave the row count unset in the binding (ASan: SEGV in gemm_pack_a)."""
    x = fastnn.tensor(np.ones(shape, np.float32))
    w = fastnn.tensor(np.ones((5, shape[-1]), np.float32))
    y = linear(x, w, fastnn.tensor(np.ones(5, np.float32)))
    assert y.shape == shape[:-1] + (5,)
    gx, gw, gb = linear_backward(fastnn.tensor(np.ones(shape[:-1] + (5,), np.float32)), x, w, True)
    assert gx.shape == shape and gw.shape == (5, shape[-1]) and gb.shape == (5,)
    np.testing.assert_array_equal(np.asarray(gw), 0.0)  # a sum over no rows
    np.testing.assert_array_equal(np.asarray(gb), 0.0)
