"""Training kernels on device 'cuda' (kernels/nn_*.cu) against the CPU kernels (same _C ops,
same argument structs: the CPU kernels are the reference, themselves checked against float64
NumPy in tests/test_nn_kernels.py).

Runs on the CPU emulator of CUDA (conftest sets FASTNN_CUDA_EMULATE=1), each test in the three
thread-resume orders (forward, reverse, seeded random). Shapes: rows 1, 17, 33, 65, 127, 129;
last dimensions below and above a warp (17, 33, 65) and above 1024 (the one-block-per-row path);
broadcasting shapes.

Tolerances (CUDA vs CPU, both float32):
- exactly equal (assert_array_equal): dropout (the Philox mask and one IEEE multiply), the
  broadcast binary ops and broadcast_to (one IEEE op per element), embedding forward and the
  deterministic embedding backward (same summation order), max / argmax and max_backward,
  column sums (reduce over a non-last axis: the CPU's own k order).
- pointwise activations: the CPU uses its own polynomial exp / erfc / tanh (<= 5e-6 relative,
  train_vec.h), the device libm-style functions (<= 2 ulp): rtol 2e-5, atol 1e-6.
- row kernels (softmax, CE, LayerNorm, row sums): K-term float32 sums in different orders
  (8/16-lane vectors on the CPU, shuffle trees on the device) plus the exp difference above:
  the difference is bounded by ~K * eps32 * max|term| / |result|; K <= 1500 here, we allow
  rtol 1e-5 + atol 1e-6 * scale (and 1e-5 for the block path with 1500 columns).
- reduced losses: the CPU and device both add row losses in double: rtol 1e-6.
- embedding backward with atomics: duplicates added in another order: rtol 1e-6, atol 1e-6.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _C

if not fastnn.cuda.is_available():
    pytest.skip("device 'cuda' not available (neither a GPU nor the emulator)", allow_module_level=True)
emu = pytest.importorskip("fastnn._cuda_emu")

ORDERS = ["forward", "reverse", "random"]
ROWS = [1, 17, 33, 65, 127, 129]


@pytest.fixture(params=ORDERS, autouse=True)
def order(request):
    before = emu._get_order()
    emu._set_order(request.param, 4321)
    yield request.param
    emu._set_order(*before)


def cu(a):
    a = np.asarray(a)
    return fastnn.from_numpy(a if a.flags.c_contiguous else a.copy()).to("cuda")  # keeps 0-d arrays 0-d


def host(t):
    assert t.device == "cuda" or str(t.device).startswith("cuda"), t.device
    return np.asarray(t.to("cpu"))


def cpu(t):
    return np.asarray(t)


def close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def randn(rng, *shape, scale=1.0):
    return np.asarray(scale * rng.standard_normal(shape), dtype=np.float32)


# ---- activations ----------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "gelu", "gelu_tanh", "sigmoid", "tanh", "silu"])
def test_activation_forward_backward(act, rng):
    for n in ROWS:
        x = randn(rng, n, scale=3.0)
        x[0] = 0.0
        gy = randn(rng, n)
        xc, gyc = cu(x), cu(gy)
        close(host(_C.activation(xc, act)), cpu(_C.activation(x, act)), rtol=2e-5)
        close(host(_C.activation_backward(gyc, xc, act)), cpu(_C.activation_backward(gy, x, act)), rtol=2e-5)
    # 2-D, non-contiguous input (copied on the device first)
    x = randn(rng, 9, 6)
    close(host(_C.activation(cu(x)[:, ::2], act)), cpu(_C.activation(x[:, ::2], act)), rtol=2e-5)


# ---- softmax / log_softmax ------------------------------------------------------------------
SOFTMAX_SHAPES = [(r, 17) for r in ROWS] + [(33, 65), (5, 33), (3, 1500), (2, 2, 1025)]


@pytest.mark.parametrize("log", [False, True])
def test_softmax_forward_backward(log, rng):
    for shape in SOFTMAX_SHAPES:
        x = randn(rng, *shape, scale=4.0)
        gy = randn(rng, *shape)
        y_cpu = cpu(_C.softmax(x, log))
        yc = _C.softmax(cu(x), log)
        close(host(yc), y_cpu, rtol=1e-5, atol=1e-6)
        gx_cpu = cpu(_C.softmax_backward(gy, y_cpu, log))
        close(host(_C.softmax_backward(cu(gy), yc, log)), gx_cpu, rtol=1e-5, atol=1e-5)


def test_softmax_extreme_logits_stay_finite():
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1.0], [-1e4, -1e4, -1e4, -1e4]], np.float32)
    for log in (False, True):
        y = host(_C.softmax(cu(x), log))
        assert np.isfinite(y).all()
        close(y, cpu(_C.softmax(x, log)), rtol=1e-6, atol=1e-6)


# ---- cross entropy ----------------------------------------------------------------------------
CE_SHAPES = [(r, 17) for r in (1, 17, 65, 129)] + [(33, 5), (4, 1100), (7,)]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_cross_entropy_forward_backward(reduction, ls, rng):
    for shape in CE_SHAPES:
        c = shape[-1]
        x = randn(rng, *shape, scale=3.0)
        t = rng.integers(0, c, shape[:-1]).astype(np.int64)
        if t.ndim and t.size > 2:
            t[1] = -100  # ignored rows
        for tdt in (np.int64, np.int32):
            tt = t.astype(tdt)
            loss_shape = t.shape if reduction == "none" else ()
            gl = randn(rng, *loss_shape) if reduction == "none" else 0.75
            l_cpu, g_cpu = _C.cross_entropy(x, tt, ls, -100, reduction, True, True, gl)
            l_cu, g_cu = _C.cross_entropy(cu(x), cu(tt), ls, -100, reduction, True, True,
                                          cu(gl) if reduction == "none" else gl)
            close(host(l_cu), cpu(l_cpu), rtol=1e-5, atol=1e-5)
            close(host(g_cu), cpu(g_cpu), rtol=1e-5, atol=1e-6)
        # forward only, default grad_loss (None) as a tensor-free call
        l_cpu, _ = _C.cross_entropy(x, t, ls, -100, reduction, True, False, None)
        l_cu, g_none = _C.cross_entropy(cu(x), cu(t), ls, -100, reduction, True, False, None)
        assert g_none is None
        close(host(l_cu), cpu(l_cpu), rtol=1e-5, atol=1e-5)
        # backward only with grad_loss None (= 1) and a device 1-element tensor for reductions
        _, g_cpu = _C.cross_entropy(x, t, ls, -100, reduction, False, True, None)
        _, g_cu = _C.cross_entropy(cu(x), cu(t), ls, -100, reduction, False, True, None)
        close(host(g_cu), cpu(g_cpu), rtol=1e-5, atol=1e-6)
        if reduction != "none":
            _, g_cu = _C.cross_entropy(cu(x), cu(t), ls, -100, reduction, False, True, cu(np.float32(0.75)))
            _, g_cpu = _C.cross_entropy(x, t, ls, -100, reduction, False, True, 0.75)
            close(host(g_cu), cpu(g_cpu), rtol=1e-5, atol=1e-6)


def test_cross_entropy_all_ignored_empty_and_extreme():
    x = np.zeros((2, 3), np.float32)
    loss, g = _C.cross_entropy(cu(x), cu(np.array([-100, -100])), 0.0, -100, "mean", True, True, None)
    assert np.isnan(host(loss))
    np.testing.assert_array_equal(host(g), 0.0)
    loss, g = _C.cross_entropy(cu(np.zeros((0, 3), np.float32)), cu(np.zeros(0, np.int64)), 0.0, -100, "sum",
                               True, True, None)
    assert host(loss) == 0.0 and host(g).shape == (0, 3)
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], np.float32)
    t = np.array([1, 0])
    l_cu, g_cu = _C.cross_entropy(cu(x), cu(t), 0.1, -100, "none", True, True, None)
    l_cpu, g_cpu = _C.cross_entropy(x, t, 0.1, -100, "none", True, True, None)
    assert np.isfinite(host(l_cu)).all() and np.isfinite(host(g_cu)).all()
    close(host(l_cu), cpu(l_cpu), rtol=1e-6)
    close(host(g_cu), cpu(g_cpu), rtol=1e-6)


# ---- BCE with logits, MSE -----------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits(reduction, rng):
    for shape in [(1,), (17, 3), (33, 65), (129,)]:
        x = randn(rng, *shape, scale=4.0)
        y = rng.random(shape).astype(np.float32)
        gl = randn(rng, *shape) if reduction == "none" else 1.5
        for pw in (None, (rng.random(shape[-1]) + 0.5).astype(np.float32)):
            l_cpu, g_cpu = _C.bce_with_logits(x, y, pw, reduction, True, gl)
            l_cu, g_cu = _C.bce_with_logits(cu(x), cu(y), None if pw is None else cu(pw), reduction, True,
                                            cu(gl) if reduction == "none" else gl)
            close(host(l_cu), cpu(l_cpu), rtol=1e-5, atol=1e-6)
            close(host(g_cu), cpu(g_cpu), rtol=1e-5, atol=1e-6)
        l_cu, g_none = _C.bce_with_logits(cu(x), cu(y), None, reduction, False, None)
        assert g_none is None
        close(host(l_cu), cpu(_C.bce_with_logits(x, y, None, reduction, False, None)[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse(reduction, rng):
    for n in ROWS + [0, 5000]:
        a, b = randn(rng, n), randn(rng, n)
        gl = randn(rng, n) if reduction == "none" else 2.0
        l_cpu, g_cpu = _C.mse_loss(a, b, reduction, True, gl)
        l_cu, g_cu = _C.mse_loss(cu(a), cu(b), reduction, True, cu(gl) if reduction == "none" else gl)
        close(host(l_cu), cpu(l_cpu), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(host(g_cu), cpu(g_cpu))  # (d + d) * scale: IEEE ops


# ---- layer norm -----------------------------------------------------------------------------------
LN_SHAPES = [(r, 17) for r in ROWS] + [(33, 65), (2, 3, 33), (3, 1100)]


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_forward_backward(affine, rng):
    for shape in LN_SHAPES:
        c = shape[-1]
        x = randn(rng, *shape, scale=2.0) + 3.0
        w = randn(rng, c) if affine else None
        b = randn(rng, c) if affine else None
        gy = randn(rng, *shape)
        y_cpu, m_cpu, r_cpu = _C.layer_norm(x, w, b, 1e-5)
        y_cu, m_cu, r_cu = _C.layer_norm(cu(x), None if w is None else cu(w), None if b is None else cu(b), 1e-5)
        close(host(y_cu), cpu(y_cpu), rtol=1e-5, atol=1e-5)
        close(host(m_cu), cpu(m_cpu), rtol=1e-6, atol=1e-6)
        close(host(r_cu), cpu(r_cpu), rtol=1e-5)
        rows = int(np.prod(shape[:-1]))
        gx_cpu, gw_cpu, gb_cpu = _C.layer_norm_backward(gy, x, w, m_cpu, r_cpu, affine, affine)
        gx_cu, gw_cu, gb_cu = _C.layer_norm_backward(cu(gy), cu(x), None if w is None else cu(w), m_cu, r_cu,
                                                     affine, affine)
        close(host(gx_cu), cpu(gx_cpu), rtol=1e-4, atol=1e-5)
        if affine:
            # column sums over `rows` terms of size ~|gy| * |xhat| (<~ 4): K * eps32 * 4 absolute
            tol = max(1e-5, rows * 1.2e-7 * 4)
            close(host(gw_cu), cpu(gw_cpu), rtol=1e-5, atol=tol)
            close(host(gb_cu), cpu(gb_cpu), rtol=1e-5, atol=tol)
        else:
            assert gw_cu is None and gb_cu is None


def test_layer_norm_large_offset_rows(rng):
    # 1e4 + noise of 1e-2: a plain float sum of the row would lose the noise's variance
    for c in (65, 1100):
        x = np.asarray(1e4 + 1e-2 * rng.standard_normal((5, c)), np.float32)
        y_cpu, m_cpu, r_cpu = _C.layer_norm(x, None, None, 1e-5)
        y_cu, m_cu, r_cu = _C.layer_norm(cu(x), None, None, 1e-5)
        close(host(m_cu), cpu(m_cpu), rtol=1e-7, atol=0)
        close(host(r_cu), cpu(r_cpu), rtol=1e-3)  # the inputs are only float32: their deviations carry ~1e-3 relative
        close(host(y_cu), cpu(y_cpu), rtol=2e-3, atol=2e-3)


def test_layer_norm_backward_many_rows_uses_several_slabs(rng):
    # 300 rows -> 10 slabs of 30 rows in the dweight/dbias kernel
    x = randn(rng, 300, 9)
    w, gy = randn(rng, 9), randn(rng, 300, 9)
    _, m, r = _C.layer_norm(x, w, None, 1e-5)
    gx, gw, gb = _C.layer_norm_backward(gy, x, w, m, r, True, False)
    gx_cu, gw_cu, gb_cu = _C.layer_norm_backward(cu(gy), cu(x), cu(w), cu(cpu(m)), cu(cpu(r)), True, False)
    assert gb_cu is None
    close(host(gx_cu), cpu(gx), rtol=1e-4, atol=1e-5)
    close(host(gw_cu), cpu(gw), rtol=1e-5, atol=1e-4)
    _, _, gb_cu = _C.layer_norm_backward(cu(gy), cu(x), cu(w), cu(cpu(m)), cu(cpu(r)), False, True)
    close(host(gb_cu), cpu(_C.layer_norm_backward(gy, x, w, m, r, False, True)[2]), rtol=1e-5, atol=1e-4)


# ---- dropout ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.3, 0.9, 1.0])
def test_dropout_bitwise_equal_to_cpu(p, rng):
    for n in ROWS + [2, 3, 4, 5, 1000]:
        x = randn(rng, n)
        for seed, offset in [(0, 0), (123456789012345, 7), (2**64 - 1, 2**40 + 3)]:
            y_cpu = cpu(_C.dropout(x, p, seed, offset))
            y_cu = host(_C.dropout(cu(x), p, seed, offset))
            np.testing.assert_array_equal(y_cu.view(np.uint32), y_cpu.view(np.uint32))
    x = randn(rng, 4000) + 10.0  # no zeros of its own
    y = host(_C.dropout(cu(x), p, 99, 0))
    assert abs((y == 0).mean() - p) < 0.03  # 4000 draws: 3 sigma ~ 0.022; the mask is not degenerate
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1.0 - p), rtol=1e-6)


# ---- embedding ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("idt", [np.int64, np.int32])
def test_embedding_forward_backward(idt, rng):
    for num_weights, dim, ishape in [(7, 17, (33,)), (50, 129, (3, 11)), (3, 5, (65,)), (5, 1, (1,)), (4, 3, (0,))]:
        table = randn(rng, num_weights, dim)
        idx = rng.integers(0, num_weights, ishape).astype(idt)
        if idx.size > 2:
            idx.reshape(-1)[:3] = idx.reshape(-1)[0]  # duplicates
        out_cpu = cpu(_C.embedding(idx, table))
        np.testing.assert_array_equal(host(_C.embedding(cu(idx), cu(table))), out_cpu)
        go = randn(rng, *ishape, dim)
        gt_cpu = cpu(_C.embedding_backward(go, idx, num_weights))
        gt_det = host(_C.embedding_backward(cu(go), cu(idx), num_weights, deterministic=True))
        np.testing.assert_array_equal(gt_det, gt_cpu)
        gt_atomic = host(_C.embedding_backward(cu(go), cu(idx), num_weights))
        close(gt_atomic, gt_cpu, rtol=1e-6, atol=1e-6)


def test_embedding_backward_deterministic_scans_more_than_one_chunk(rng):
    # 300 indices = 3 chunks of 128 in the ordered kernel, one index repeated 40 times
    idx = rng.integers(0, 6, 300)
    idx[::7] = 2
    go = randn(rng, 300, 130)
    gt_cpu = cpu(_C.embedding_backward(go, idx, 6))
    np.testing.assert_array_equal(host(_C.embedding_backward(cu(go), cu(idx), 6, deterministic=True)), gt_cpu)


# ---- broadcasting binary ops, broadcast_to --------------------------------------------------------------
BINARY_SHAPES = [((17,), (17,)), ((33, 65), (65,)), ((33, 1), (1, 17)), ((5, 1, 3), (4, 1)), ((), (7,)),
                 ((2, 3, 4, 5), (3, 1, 5)), ((129,), ()), ((1,), (1,))]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_broadcast_bitwise(op, rng):
    for sa, sb in BINARY_SHAPES:
        a, b = randn(rng, *sa), np.asarray(randn(rng, *sb) + 3.0, np.float32)
        out = host(_C.binary(cu(a), cu(b), op))
        np.testing.assert_array_equal(out, cpu(_C.binary(a, b, op)))
    # a transposed (strided) operand
    a, b = randn(rng, 6, 4), randn(rng, 6)
    np.testing.assert_array_equal(host(_C.binary(cu(a).T, cu(b), op)), cpu(_C.binary(a.T, b, op)))


def test_broadcast_to(rng):
    for s, target in [((17,), (3, 17)), ((33, 1), (33, 5)), ((), (2, 3)), ((1, 4, 1), (2, 4, 3)), ((5,), (5,))]:
        x = randn(rng, *s)
        np.testing.assert_array_equal(host(_C.broadcast_to(cu(x), list(target))), np.broadcast_to(x, target))


# ---- reductions, max_backward -----------------------------------------------------------------------
REDUCE_CASES = [((17, 33), 1), ((129, 17), 1), ((3, 1500), 1), ((2, 1100), -1), ((33, 17), 0), ((2, 5, 7), 1),
                ((65,), 0), ((4, 6), None), ((3, 2000), None), ((), None),
                ((2, 20000), 1), ((41000,), None)]  # the last two: rows split in segments (two passes)


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reduce(op, rng):
    for shape, axis in REDUCE_CASES:
        x = randn(rng, *shape)
        for keepdim in (False, True):
            v_cpu, i_cpu = _C.reduce(x, axis, keepdim, op)
            v_cu, i_cu = _C.reduce(cu(x), axis, keepdim, op)
            inner = axis is not None and x.ndim and (axis % x.ndim) != x.ndim - 1
            if op == "max" or inner:
                np.testing.assert_array_equal(host(v_cu), cpu(v_cpu))
            else:
                close(host(v_cu), cpu(v_cpu), rtol=1e-5, atol=1e-5)
            if op == "max":
                np.testing.assert_array_equal(host(i_cu), cpu(i_cpu))
            else:
                assert i_cu is None


def test_reduce_max_ties_and_nan_pick_the_first():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [np.nan, 1.0, np.nan, 2.0], [-np.inf, -np.inf, -np.inf, -np.inf],
                  [0.0, 5.0, 1.0, 5.0]], np.float32)
    for xs in (x, np.tile(x, (1, 300))):  # warp rows and block rows (1200 columns)
        for axis in (1, 0):
            v_cu, i_cu = _C.reduce(cu(xs), axis, False, "max")
            v_cpu, i_cpu = _C.reduce(xs, axis, False, "max")
            np.testing.assert_array_equal(host(v_cu), cpu(v_cpu))
            np.testing.assert_array_equal(host(i_cu), cpu(i_cpu))


def test_reduce_split_rows_max_keeps_the_first_maximum_and_nan():
    # 3 rows of 20000 -> 5 segments of 4000: the maxima sit in different segments
    x = np.zeros((3, 20000), np.float32)
    x[0, [5000, 13000, 19999]] = 7.0      # tie across segments: index 5000
    x[1, 17000] = np.nan                  # NaN in a late segment wins
    x[1, 100] = 9.0
    x[2, :] = -np.inf
    v_cu, i_cu = _C.reduce(cu(x), 1, False, "max")
    np.testing.assert_array_equal(host(i_cu), [5000, 17000, 0])
    v_cpu, i_cpu = _C.reduce(x, 1, False, "max")
    np.testing.assert_array_equal(host(v_cu), cpu(v_cpu))
    np.testing.assert_array_equal(host(i_cu), cpu(i_cpu))


def test_reduce_over_empty_axis():
    x = np.zeros((3, 0), np.float32)
    np.testing.assert_array_equal(host(_C.reduce(cu(x), 1, False, "sum")[0]), np.zeros(3, np.float32))
    assert np.isnan(host(_C.reduce(cu(x), 1, False, "mean")[0])).all()


def test_max_backward(rng):
    for shape, axis in [((17, 33), 1), ((33, 17), 0), ((2, 5, 7), 1), ((4, 6), None), ((129,), 0)]:
        x = randn(rng, *shape)
        v, i = _C.reduce(cu(x), axis, False, "max")
        go = randn(rng, *host(v).shape)
        gx_cu = host(_C.max_backward(cu(go), i, list(shape), axis))
        gx_cpu = cpu(_C.max_backward(go, cpu(_C.reduce(x, axis, False, "max")[1]), list(shape), axis))
        np.testing.assert_array_equal(gx_cu, gx_cpu)


# ---- the error contract on device ------------------------------------------------------------------------
def test_index_errors_match_the_cpu():
    x = np.zeros((3, 4), np.float32)
    for t in (np.array([0, 4, 1]), np.array([0, -1, 7]), np.array([1, 2, -5], np.int32)):
        with pytest.raises(IndexError) as e_cpu:
            _C.cross_entropy(x, t, 0.0, -100, "mean", True, True, None)
        with pytest.raises(IndexError) as e_cu:
            _C.cross_entropy(cu(x), cu(t), 0.0, -100, "mean", True, True, None)
        assert str(e_cu.value) == str(e_cpu.value)
    table = np.zeros((5, 2), np.float32)
    idx = np.array([[0, 1], [5, 2]])
    with pytest.raises(IndexError, match=r"value 5 at flat position 2 is out of range \[0, 5\)"):
        _C.embedding(cu(idx), cu(table))
    with pytest.raises(IndexError, match=r"value 5 at flat position 2"):
        _C.embedding_backward(cu(np.zeros((2, 2, 2), np.float32)), cu(idx), 5, deterministic=True)
    with pytest.raises(IndexError, match=r"value 3 at flat position 1 is out of range \[0, 3\)"):
        _C.max_backward(cu(np.zeros(2, np.float32)), cu(np.array([0, 3])), [2, 3], 1)


def test_device_mismatch_and_dtype_errors():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="target"):
        _C.cross_entropy(cu(x), np.array([0, 1, 2]), 0.0, -100, "mean", True, True, None)
    with pytest.raises(ValueError, match="'b'"):
        _C.binary(cu(x), x, "add")
    with pytest.raises(ValueError, match="grad_y"):
        _C.activation_backward(x, cu(x), "relu")
    with pytest.raises(ValueError, match="weight"):
        _C.layer_norm(cu(x), np.ones(4, np.float32), None, 1e-5)
    with pytest.raises(TypeError, match="float32"):
        _C.softmax(cu(x.astype(np.float64)), False)


# ---- no host <-> device copies -----------------------------------------------------------------------------
def test_forward_backward_of_every_op_copies_nothing(rng):
    x = cu(randn(rng, 6, 9))
    gy = cu(randn(rng, 6, 9))
    w, b = cu(randn(rng, 9)), cu(randn(rng, 9))
    t = cu(np.array([0, 3, -100, 8, 1, 2]))
    idx = cu(np.array([[0, 2, 2], [1, 0, 4]]))
    table = cu(randn(rng, 5, 9))
    gl_none = cu(randn(rng, 6))
    before = _C._cuda_host_device_copies()
    _C.activation_backward(gy, _C.activation(x, "gelu"), "gelu")
    y = _C.softmax(x, True)
    _C.softmax_backward(gy, y, True)
    _C.cross_entropy(x, t, 0.1, -100, "mean", True, True, None)
    _C.cross_entropy(x, t, 0.0, -100, "sum", True, True, 2.0)  # a number grad_loss: filled on the device
    _C.cross_entropy(x, t, 0.0, -100, "none", True, True, gl_none)
    _C.bce_with_logits(x, gy, w, "mean", True, None)
    _C.mse_loss(x, gy, "sum", True, 3.0)
    yy, m, r = _C.layer_norm(x, w, b, 1e-5)
    _C.layer_norm_backward(gy, x, w, m, r, True, True)
    _C.dropout(_C.dropout(x, 0.5, 1, 2), 0.5, 1, 2)
    e = _C.embedding(idx, table)
    _C.embedding_backward(e, idx, 5)
    _C.embedding_backward(e, idx, 5, deterministic=True)
    _C.broadcast_to(_C.binary(x, w, "mul"), [2, 6, 9])
    v, i = _C.reduce(x, 1, False, "max")
    _C.max_backward(v, i, [6, 9], 1)
    _C.reduce(x, None, False, "mean")
    _C.reduce(cu(np.zeros((2, 0), np.float32)), 1, False, "mean")
    assert _C._cuda_host_device_copies() == before
