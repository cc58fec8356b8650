"""Reverse-mode autograd: operators, broadcasting, reductions, views, graph semantics."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastnn as fnn
from gradcheck_util import assert_close, fd_grads, tol


def T(a, rg=True):
    return fnn.tensor(np.asarray(a, dtype=np.float32), requires_grad=rg)


def _check(fn_fast, fn_ref, arrays, k=1, rng=None, scale=4.0):
    """Forward and gradients of fn_fast (fastnn) vs fn_ref (float64 NumPy) + finite differences."""
    rng = rng or np.random.default_rng(0)
    ts = [T(a) for a in arrays]
    out = fn_fast(*ts)
    want = fn_ref(*[np.asarray(a, np.float64) for a in arrays])
    assert_close(out.numpy(), want, tol(k), what="forward")
    r = rng.standard_normal(np.shape(want))
    (out * fnn.tensor(r)).sum().backward()
    fd = fd_grads(fn_ref, arrays, r)
    for i, (t, g) in enumerate(zip(ts, fd)):
        assert_close(t.grad.numpy(), g, tol(k, scale), what=f"grad {i}")


# ---- elementwise with broadcasting and scalars -------------------------------------------
SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((), (2, 2))]


@pytest.mark.parametrize("sa,sb", SHAPES)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_broadcast(op, sa, sb, rng):
    a = rng.standard_normal(sa)
    b = rng.standard_normal(sb)
    if op == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)  # keep away from 0: FD and float32 stay well-conditioned
    f = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
         "div": lambda x, y: x / y}[op]
    _check(f, f, [a, b], k=4, scale=16.0)


def test_scalars_and_reflected(rng):
    a = rng.standard_normal((3, 2)) + 3.0
    fast = lambda x: 2.0 - x * 3.0 + 1.0 / x + x / 2 - (-x) + x ** 2 + 2.0 ** x  # noqa: E731
    _check(fast, fast, [a], k=8, scale=16.0)


def test_unary(rng):
    a = rng.random((4, 3)) + 0.5
    _check(lambda x: x.exp() + x.log() + x.sqrt() + abs(x - 1.0),
           lambda x: np.exp(x) + np.log(x) + np.sqrt(x) + np.abs(x - 1.0), [a], k=4)


def test_matmul_grads(rng, simd_level, threads):
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 3))
    _check(lambda x, y: x @ y, lambda x, y: x @ y, [a, b], k=7)


def test_batched_matmul_broadcast(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))
    _check(lambda x, y: x @ y, lambda x, y: x @ y, [a, b], k=4)


def test_matmul_with_numpy_operand(rng):
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)
    t = T(a)
    assert_close((t @ b).numpy(), a.astype(np.float64) @ b, tol(3))
    assert_close((a @ t.T).numpy(), a.astype(np.float64) @ a.T, tol(3))


# ---- reductions ------------------------------------------------------------------------------
@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
def test_sum_mean(dim, keepdim, rng):
    a = rng.standard_normal((2, 3, 4))
    _check(lambda x: x.sum(dim, keepdim), lambda x: np.sum(x, axis=dim, keepdims=keepdim), [a], k=24)
    _check(lambda x: x.mean(dim, keepdim), lambda x: np.mean(x, axis=dim, keepdims=keepdim), [a], k=24)


@pytest.mark.parametrize("keepdim", [False, True])
def test_max_dim(keepdim, rng):
    a = rng.permutation(24).reshape(2, 3, 4).astype(np.float64)  # distinct values: max is differentiable
    vals, idx = T(a).max(1, keepdim)
    assert idx.dtype == fnn.int64
    np.testing.assert_array_equal(idx.numpy(), np.argmax(a, axis=1, keepdims=keepdim))  # torch's shapes
    _check(lambda x: x.max(1, keepdim)[0], lambda x: np.max(x, axis=1, keepdims=keepdim), [a])
    _check(lambda x: x.max(), lambda x: np.max(x), [a])
    _check(lambda x: x.min(dim=2)[0], lambda x: np.min(x, axis=2), [a])


# ---- views -------------------------------------------------------------------------------------
def test_views_backward(rng):
    a = rng.standard_normal((2, 3, 4))
    _check(lambda x: x.reshape(6, 4)[1:5:2] * 2.0, lambda x: x.reshape(6, 4)[1:5:2] * 2.0, [a])
    _check(lambda x: x.transpose(0, 2).permute(1, 0, 2).flatten(), lambda x: x.transpose(2, 1, 0).transpose(1, 0, 2).reshape(-1), [a])
    _check(lambda x: x[:, 1, ::2].unsqueeze(0).squeeze(0), lambda x: x[:, 1, ::2], [a])
    _check(lambda x: x.T.view(-1) if x.T.is_contiguous() else x.T.reshape(-1), lambda x: x.T.reshape(-1), [a])
    _check(lambda x: x[..., -1] + x[0], lambda x: x[..., -1] + x[0], [a[:, :2, :2]])


def test_fancy_index_scatter_adds(rng):
    a = rng.standard_normal((5, 3))
    idx = np.array([0, 2, 2, 4])
    _check(lambda x: x[idx], lambda x: x[idx], [a])
    _check(lambda x: x[fnn.tensor(idx)], lambda x: x[idx], [a])


# ---- graph semantics -----------------------------------------------------------------------------
def test_accumulation_and_shared_input():
    x = T([1.0, 2.0, 3.0])
    y = (x * x).sum()  # x used twice by one op
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2, 4, 6])
    (x * 3.0).sum().backward()  # grads accumulate across backward calls
    np.testing.assert_allclose(x.grad.numpy(), [5, 7, 9])


def test_diamond_graph():
    x = T([2.0])
    a = x * 3.0
    b = a * a
    c = a + b  # a reaches c twice: its gradient must be summed before a's backward runs
    c.backward()
    np.testing.assert_allclose(x.grad.numpy(), [3 + 2 * 6 * 3])


def test_retain_graph():
    x = T([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4, 8])
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_errors():
    x = T([1.0, 2.0])
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2.0).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        T([1.0], rg=False).backward()
    with pytest.raises(ValueError, match="grad"):
        (x * 2.0).backward(fnn.tensor(np.ones(3, np.float32)))
    y = x * 2.0
    y.backward(fnn.tensor(np.array([1.0, 0.5], np.float32)))
    np.testing.assert_allclose(x.grad.numpy(), [2, 1])


def test_no_grad_fast_path():
    x = T([1.0, 2.0])
    with fnn.no_grad():
        y = x * 2.0 + 1.0
    assert y.grad_fn is None and not y.requires_grad
    with fnn.no_grad():
        with fnn.enable_grad():
            z = x * 2.0
    assert z.grad_fn is not None and z.requires_grad
    w = T([1.0], rg=False) * 2.0  # no input requires grad: no node
    assert w.grad_fn is None

    @fnn.no_grad()
    def f(t):
        return t * t
    assert f(x).grad_fn is None

    @fnn.no_grad
    def g(t):
        return t * t
    assert g(x).grad_fn is None
    assert fnn.is_grad_enabled()


def test_grad_not_shared_between_leaves():
    a, b = T([1.0, 2.0]), T([3.0, 4.0])
    (a + b).sum().backward()
    a.grad.zero_()  # in-place on one grad must not change the other
    np.testing.assert_allclose(b.grad.numpy(), [1, 1])


def test_detach_and_leaf():
    x = T([1.0, 2.0])
    y = x * 2.0
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d._shares_storage(y)
    assert x.is_leaf and not y.is_leaf
    z = (d * x).sum()
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2, 4])


def test_retain_grad_non_leaf():
    x = T([1.0, 2.0])
    y = (x * 3.0).retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [6, 12])


def test_comparisons_no_grad():
    x = T([1.0, 2.0, 3.0])
    m = x > 1.5
    assert m.dtype == fnn.bool_ and not m.requires_grad
    np.testing.assert_array_equal(m.numpy(), [False, True, True])
    np.testing.assert_array_equal((x == 2.0).numpy(), [False, True, False])
    assert len({x, m}) == 2  # tensors stay hashable


def test_custom_function():
    class Cube(fnn.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * 3.0 * x * x
    x = T([1.0, 2.0])
    y = Cube.apply(x)
    assert y.grad_fn.name == "CubeBackward"
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3, 12])


def test_deep_chain_no_recursion_limit():
    x = T([1.0])
    y = x
    for _ in range(3000):
        y = y + 1.0
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(0, 2**31 - 1))
def test_broadcast_add_mul_property(shape, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    b = rng.standard_normal(shape[-1:])
    ta, tb = T(a), T(b)
    ((ta * tb + tb) * 2.0).sum().backward()
    assert_close(ta.grad.numpy(), np.broadcast_to(2 * b, a.shape), tol(1))
    want_b = (2 * (a + 1)).reshape(-1, shape[-1]).sum(0)
    assert_close(tb.grad.numpy(), want_b, tol(a.size))
