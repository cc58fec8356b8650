"""Finite-difference gradient checks against float64 NumPy references (shared by the
python-layer tests).

fastnn computes in float32; the reference model is evaluated in float64 and differentiated
by central differences (h = 1e-6: truncation O(h^2) ~ 1e-12, rounding O(eps64/h) ~ 1e-10,
both far below float32 noise). The loss is L = sum(out * R) with a fixed random R, so every
output element contributes with a different weight."""
from __future__ import annotations

import numpy as np

import fastnn as fnn

EPS32 = float(np.finfo(np.float32).eps)


def fd_grads(ref, arrays, r, h=1e-6):
    """d sum(ref(*arrays) * r) / d arrays[i] for every floating array (float64)."""
    arrays = [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a) for a in arrays]
    out = []
    for i, a in enumerate(arrays):
        if a.dtype.kind != "f":
            out.append(None)
            continue
        g = np.zeros_like(a)
        flat = a.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + h
            fp = np.sum(ref(*arrays) * r)
            flat[j] = old - h
            fm = np.sum(ref(*arrays) * r)
            flat[j] = old
            g.reshape(-1)[j] = (fp - fm) / (2 * h)
        out.append(g)
    return out


def tol(k, scale=1.0):
    """float32 error budget of a length-k accumulation (see conftest.f32_matmul_tol), with a
    floor for short sums: 4 * k * eps32 * scale, at least 1e-5 * scale."""
    return max(4.0 * max(k, 1) * EPS32, 1e-5) * scale


def assert_close(got, want, atol, rtol=None, what=""):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    rtol = atol if rtol is None else rtol
    err = np.abs(got - want)
    bound = atol * max(1.0, float(np.abs(want).max(initial=0.0))) + rtol * np.abs(want)
    assert np.all(err <= bound), f"{what}: max err {err.max():.3g} (bound {bound.max():.3g})"


def check_module(module, ref, x, k, param_names=None, rng=None, extra_inputs=(), grad_x=True):
    """Run ``module(x)`` in fastnn (float32), backprop L = sum(out * R) and compare the output
    and the gradients of x and the named parameters with the float64 reference
    ``ref(x, *params)`` and its finite differences."""
    rng = rng or np.random.default_rng(0)
    params = dict(module.named_parameters())
    names = list(param_names if param_names is not None else params)
    xt = fnn.tensor(x, requires_grad=grad_x and np.asarray(x).dtype.kind == "f")
    out = module(xt, *extra_inputs)
    ref_args = [x] + [params[n].numpy().astype(np.float64) for n in names]
    want = ref(*ref_args)
    assert_close(out.numpy(), want, tol(k), what="forward")
    r = rng.standard_normal(want.shape)
    module.zero_grad()
    loss = (out * fnn.tensor(r)).sum()
    loss.backward()
    fd = fd_grads(ref, ref_args, r)
    if grad_x and xt.requires_grad:
        assert_close(xt.grad.numpy(), fd[0], tol(k, 4.0), what="grad input")
    for n, g in zip(names, fd[1:]):
        assert params[n].grad is not None, f"no grad for {n}"
        assert_close(params[n].grad.numpy(), g, tol(k, 4.0), what=f"grad {n}")
    return out
