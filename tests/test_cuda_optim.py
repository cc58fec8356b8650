"""Fused multi-tensor optimizers on device 'cuda' (kernels/optim.cu) against the CPU kernels.

Runs on the CPU emulator of CUDA (conftest sets FASTNN_CUDA_EMULATE=1), in the three thread-resume
orders (forward, reverse, seeded random), like tests/test_cuda_emulator.py.

Tolerance: the element-wise kernels (Adam/AdamW, SGD, scale) are compared BITWISE with
fastnn's CPU kernels. Both evaluate the same float32 operations in the same order; the CUDA code
writes every step as an explicit rounding intrinsic (__fmul_rn, __fdiv_rn, __fsqrt_rn, fmaf), so
no compiler can contract differently, and the CPU's AVX/scalar ops are the same IEEE operations
(fma is fused on both sides). The gradient norm sums in double in a different order (per 64K
chunk tree vs per-thread ranges): relative difference <= n * eps64 ~ 1e5 * 1.1e-16, so rtol 1e-10.

Tensor lists mix the tail sizes 1, 17, 33, 65, 127, 129, 64K+3 (vector body + scalar tail, a
chunk boundary), an empty tensor, a misaligned view (scalar path), and enough small tensors that
one launch cannot hold them (64 for SGD, 48 for Adam or SGD+momentum, 36 with amsgrad, 110 for
norms and scaling).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn import ops

if not fastnn.cuda.is_available():
    pytest.skip("device 'cuda' not available (neither a GPU nor the emulator)", allow_module_level=True)
emu = pytest.importorskip("fastnn._cuda_emu")

ORDERS = ["forward", "reverse", "random"]
TAIL_SIZES = [1, 17, 33, 65, 127, 129, 65536 + 3, 0]
N_SMALL = 60  # + 8 tail tensors = 68 > 64 (SGD), 48 (Adam, SGD+momentum), 36 (amsgrad) per launch


@pytest.fixture(params=ORDERS, autouse=True)
def order(request):
    before = emu._get_order()
    emu._set_order(request.param, 12345)
    yield request.param
    emu._set_order(*before)


def _sizes(rng):
    return TAIL_SIZES + [int(s) for s in rng.integers(1, 40, N_SMALL)]


def _to_cuda(arrays, misaligned_last=True):
    """Device copies; the last array goes to a view at offset 1 element (4 bytes: the scalar path)."""
    out = [fastnn.from_numpy(np.ascontiguousarray(a)).to("cuda") for a in arrays[:-1]]
    if misaligned_last:
        last = arrays[-1]
        base = fastnn.from_numpy(np.concatenate([np.zeros(1, np.float32), last.reshape(-1)])).to("cuda")
        out.append(base[1:])
    else:
        out.append(fastnn.from_numpy(np.ascontiguousarray(arrays[-1])).to("cuda"))
    return out


def _host(ts):
    return [np.asarray(t.to("cpu")).copy() for t in ts]


def _equal(actual, expected, what):
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_array_equal(a.reshape(-1), e.reshape(-1), err_msg=f"{what}[{i}] (size {e.size})")


def _lists(rng, sizes, n, scale=1.0):
    return [[(scale * rng.standard_normal(s)).astype(np.float32) for s in sizes] for _ in range(n)]


ADAM_CASES = [
    dict(),
    dict(weight_decay=0.05),
    dict(weight_decay=0.05, decoupled=True),
    dict(amsgrad=True),
    dict(maximize=True),
    dict(grad_scale=4.0),
    dict(amsgrad=True, maximize=True, weight_decay=0.01, decoupled=True, lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-6,
         grad_scale=0.5),
    dict(amsgrad=True, weight_decay=0.02, grad_scale=1024.0),
]


def _ids(c):
    return ",".join(f"{k}={v}" for k, v in c.items()) or "default"


@pytest.mark.parametrize("cfg", ADAM_CASES, ids=_ids)
def test_adam_matches_cpu(cfg, rng):
    sizes = _sizes(rng)
    p, m = _lists(rng, sizes, 2)
    v = [np.abs(x) for x in _lists(rng, sizes, 1)[0]]
    vmax = [x * np.float32(1.5) for x in v]  # some entries of v grow past it, some do not
    amsgrad = cfg.get("amsgrad", False)
    dp, dm, dv, dx = _to_cuda(p), _to_cuda(m), _to_cuda(v), _to_cuda(vmax)
    kw = dict(cfg)
    for step in (1, 2, 3):
        g = _lists(rng, sizes, 1)[0]
        if step == 2:
            for x in g:
                x[::3] = 0.0  # exact zeros: the eps branch of the denominator
        dg = _to_cuda(g)
        ops.adam_(p, g, m, v, step=step, max_exp_avg_sqs=vmax if amsgrad else None, **kw)
        ops.adam_(dp, dg, dm, dv, step=step, max_exp_avg_sqs=dx if amsgrad else None, **kw)
        _equal(_host(dg), g, "grads (must stay unchanged)")
    _equal(_host(dp), p, "params")
    _equal(_host(dm), m, "exp_avgs")
    _equal(_host(dv), v, "exp_avg_sqs")
    if amsgrad:
        _equal(_host(dx), vmax, "max_exp_avg_sqs")


@pytest.mark.parametrize("bad", ["inf", "nan", "overflow_by_scale", "preset"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_found_inf_skips_step(bad, amsgrad, rng):
    sizes = _sizes(rng)
    p, g, m = _lists(rng, sizes, 3)
    v = [np.abs(x) for x in _lists(rng, sizes, 1)[0]]
    grad_scale = 1.0
    found0 = 0.0
    if bad == "inf":
        g[-2][5 % g[-2].size] = np.inf  # in a tensor of the second launch
    elif bad == "nan":
        g[6][65536 + 1] = np.nan  # in the scalar tail after the first chunk
    elif bad == "overflow_by_scale":
        g[3][7] = 3e38  # finite, but g / 0.5 overflows to Inf
        grad_scale = 0.5
    else:
        found0 = 2.0  # a non-zero value on entry: nothing is done and it is kept
    dp, dg, dm, dv, dx = (_to_cuda(x) for x in (p, g, m, v, v))
    found = fastnn.from_numpy(np.array([found0], np.float32)).to("cuda")
    ops.adam_(dp, dg, dm, dv, step=1, lr=0.01, amsgrad=amsgrad, max_exp_avg_sqs=dx if amsgrad else None,
              grad_scale=grad_scale, found_inf=found)
    assert np.asarray(found.to("cpu"))[0] == (2.0 if bad == "preset" else 1.0)
    _equal(_host(dp), p, "params")
    _equal(_host(dm), m, "exp_avgs")
    _equal(_host(dv), v, "exp_avg_sqs")
    if amsgrad:
        _equal(_host(dx), v, "max_exp_avg_sqs")
    # the CPU kernel agrees on the flag
    cf = np.array([found0], np.float32)
    ops.adam_(p, g, m, v, step=1, lr=0.01, grad_scale=grad_scale, found_inf=cf)
    assert cf[0] == np.asarray(found.to("cpu"))[0]


def test_adam_found_inf_clear_runs_the_step(rng):
    sizes = _sizes(rng)
    p, g, m = _lists(rng, sizes, 3)
    v = [np.abs(x) for x in _lists(rng, sizes, 1)[0]]
    dp, dg, dm, dv = (_to_cuda(x) for x in (p, g, m, v))
    found = fastnn.from_numpy(np.zeros(1, np.float32)).to("cuda")
    ops.adam_(dp, dg, dm, dv, step=1, lr=0.01, grad_scale=8.0, found_inf=found)
    ops.adam_(p, g, m, v, step=1, lr=0.01, grad_scale=8.0, found_inf=np.zeros(1, np.float32))
    assert np.asarray(found.to("cpu"))[0] == 0.0
    _equal(_host(dp), p, "params")
    _equal(_host(dm), m, "exp_avgs")


SGD_CASES = [
    dict(),
    dict(weight_decay=0.1),
    dict(maximize=True, weight_decay=0.1),
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(momentum=0.8, nesterov=True),
    dict(momentum=0.9, nesterov=True, maximize=True, weight_decay=0.05),
]


@pytest.mark.parametrize("cfg", SGD_CASES, ids=_ids)
def test_sgd_matches_cpu(cfg, rng):
    sizes = _sizes(rng)
    (p,) = _lists(rng, sizes, 1)
    has_mom = cfg.get("momentum", 0.0) != 0.0
    bufs = [np.full(s, np.nan, np.float32) for s in sizes]  # first_step must not read them
    dp, db = _to_cuda(p), _to_cuda(bufs)
    for step in (1, 2, 3):
        (g,) = _lists(rng, sizes, 1)
        dg = _to_cuda(g)
        ops.sgd_(p, g, bufs if has_mom else None, lr=0.05, first_step=step == 1, **cfg)
        ops.sgd_(dp, dg, db if has_mom else None, lr=0.05, first_step=step == 1, **cfg)
    _equal(_host(dp), p, "params")
    if has_mom:
        _equal(_host(db), bufs, "momentum_buffers")


def _norm_lists(rng, n_extra=120):
    # 128 non-empty tensors > 110 per launch
    sizes = TAIL_SIZES + [int(s) for s in rng.integers(1, 50, n_extra)]
    return [rng.standard_normal(s).astype(np.float32) for s in sizes]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.5])
def test_grad_norm_matches_cpu(norm_type, rng):
    g = _norm_lists(rng)
    got = ops.grad_norm(_to_cuda(g), norm_type)
    want = ops.grad_norm(g, norm_type)
    ref = np.linalg.norm(np.concatenate([x.astype(np.float64) for x in g]), ord=norm_type)
    assert got == pytest.approx(want, rel=1e-10)
    assert got == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_grad_norm_nonfinite(norm_type, rng):
    g = _norm_lists(rng, 10)
    g[6][65536 + 2] = np.inf
    assert ops.grad_norm(_to_cuda(g), norm_type) == math.inf
    g[2][4] = np.nan
    assert math.isnan(ops.grad_norm(_to_cuda(g), norm_type))
    assert math.isnan(ops.grad_norm(g, norm_type))


@pytest.mark.parametrize("max_norm", [1.0, 1e6])
def test_clip_grad_norm_matches_cpu(max_norm, rng):
    g = _norm_lists(rng)
    dg = _to_cuda(g)
    got = ops.clip_grad_norm_(dg, max_norm, 2.0)
    want = ops.clip_grad_norm_(g, max_norm, 2.0)
    assert got == pytest.approx(want, rel=1e-10)
    # the float32 coefficient can differ by one rounding when the two norms differ in the last bits
    for i, (a, e) in enumerate(zip(_host(dg), g)):
        np.testing.assert_allclose(a, e, rtol=2 * np.finfo(np.float32).eps, atol=0, err_msg=f"grads[{i}]")


def test_clip_grad_norm_more_chunks_than_one_launch(rng):
    # 320 chunks of 64K per launch: a 320*64K+5 tensor is cut between two launches (the partial
    # sums of the second launch land after the first's; the scale continues mid-tensor). ~2 s.
    n = 320 * 65536 + 5
    g = [rng.standard_normal(3).astype(np.float32), rng.standard_normal(n).astype(np.float32)]
    dg = _to_cuda(g, misaligned_last=False)
    got = ops.clip_grad_norm_(dg, 10.0, 2.0)
    want = ops.clip_grad_norm_(g, 10.0, 2.0)
    assert got == pytest.approx(want, rel=1e-10)
    for a, e in zip(_host(dg), g):
        np.testing.assert_allclose(a, e, rtol=2 * np.finfo(np.float32).eps, atol=0)


def test_empty_and_device_errors(rng):
    # empty lists / empty tensors are no-ops
    ops.adam_([], [], [], [], step=1)
    assert ops.grad_norm([_to_cuda([np.zeros(0, np.float32)], False)[0]], 2.0) == 0.0
    p = _to_cuda([rng.standard_normal(5).astype(np.float32)], False)
    with pytest.raises(ValueError, match="grads\\[0\\]"):
        ops.sgd_(p, [rng.standard_normal(5).astype(np.float32)], lr=0.1)
