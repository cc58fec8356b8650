"""Fused optimizers (fastnn.ops.adam_, sgd_, clip_grad_norm_) against torch.optim over 100 steps.

Problem: a noisy quadratic, g = (p - target) * w + noise_t, evaluated by each side on its own
parameters, so any drift between the two implementations feeds back instead of averaging out.
Tolerance 1e-6 relative to the parameter scale (|p| ~ 1, so atol = 1e-6 for entries near zero): both sides do the same
float32 operations per element, differing only in FMA contraction and summation order, i.e.
~1 ulp (6e-8) of the per-step update, which itself is ~lr = 1e-3 of the parameter; 100 steps
accumulate far below 1e-6 of |p| ~ 1.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn as fnn
from fastnn import ops

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # the references run serially: OpenMP spinning on a loaded 2-core VM costs 100x

SHAPES = [(0,), (1,), (17,), (3, 5, 7), (301,), (33000,), (29, 57)]  # 35K elements: with 2 threads the cut
# falls inside the big tensor (the split is over the concatenated range)


def _problem(seed, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    targets = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    weights = [rng.uniform(0.1, 2.0, s).astype(np.float32) for s in shapes]
    return rng, params, targets, weights


def _grads(rng, params, targets, weights, step):
    g = [((p - t) * w + 0.1 * rng.standard_normal(p.shape).astype(np.float32)).astype(np.float32)
         for p, t, w in zip(params, targets, weights)]
    if step % 7 == 3:  # exact zeros exercise the eps branch of the denominator
        for x in g:
            x.reshape(-1)[::5] = 0.0
    return g


def _close(actual, expected, rtol=1e-6, atol=1e-6):
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"tensor {i}")


@pytest.fixture
def threads2():
    """The 100-step comparisons run with 2 threads (the serial path is the same code per chunk and
    is covered by test_clip_grad_norm_matches_torch / the small-tensor tests)."""
    old = fnn.get_num_threads()
    fnn.set_num_threads(2)
    yield 2
    fnn.set_num_threads(old)


ADAM_CASES = [
    dict(),
    dict(weight_decay=0.05),
    dict(weight_decay=0.05, decoupled=True),
    dict(amsgrad=True),
    dict(maximize=True),
    dict(amsgrad=True, maximize=True, weight_decay=0.01, decoupled=True, lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-6),
]


@pytest.mark.parametrize("cfg", ADAM_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_adam_matches_torch(cfg, simd_level, threads2):
    cfg = dict(cfg)
    lr = cfg.pop("lr", 1e-3)
    beta1, beta2, eps = cfg.pop("beta1", 0.9), cfg.pop("beta2", 0.999), cfg.pop("eps", 1e-8)
    wd = cfg.pop("weight_decay", 0.0)
    decoupled = cfg.pop("decoupled", False)
    amsgrad = cfg.pop("amsgrad", False)
    maximize = cfg.pop("maximize", False)
    rng, params, targets, weights = _problem(1)
    # maximize climbs the quadratic; flip the sign of the curvature so the run stays bounded
    if maximize:
        weights = [-w for w in weights]
    tparams = [torch.tensor(p, requires_grad=True) for p in params]
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls(tparams, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd, amsgrad=amsgrad, maximize=maximize,
              foreach=False)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    vmax = [np.zeros_like(p) for p in params] if amsgrad else None
    grng = np.random.default_rng(7)
    for step in range(1, 101):
        state = grng.bit_generator.state
        g = _grads(grng, params, targets, weights, step)
        grng.bit_generator.state = state
        tg = _grads(grng, [tp.detach().numpy() for tp in tparams], targets, weights, step)
        for tp, x in zip(tparams, tg):
            tp.grad = torch.from_numpy(x)
        opt.step()
        ops.adam_(params, g, m, v, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=wd,
                  decoupled=decoupled, maximize=maximize, amsgrad=amsgrad, max_exp_avg_sqs=vmax)
    _close(params, [tp.detach().numpy() for tp in tparams])
    _close(m, [opt.state[tp]["exp_avg"].numpy() for tp in tparams])
    _close(v, [opt.state[tp]["exp_avg_sq"].numpy() for tp in tparams])
    if amsgrad:
        _close(vmax, [opt.state[tp]["max_exp_avg_sq"].numpy() for tp in tparams])


@pytest.mark.parametrize("layout", ["200 small", "blocks"])
def test_adam_many_small_tensors_threaded(simd_level, layout):
    # 200 tensors of mixed sizes: the split over the concatenated range crosses tensor boundaries.
    # "blocks": ~200K elements = 13 stealable blocks of 16384 (cpu::for_each_list_block), cut inside
    # tensors and across them; a block skipped or done twice (by its owner and a thief) breaks m, v, p.
    rng = np.random.default_rng(3)
    if layout == "200 small":
        shapes = [(int(n),) for n in rng.integers(1, 2000, 200)]
    else:
        shapes = [(5,), (70001,), (16384,), (3,), (40000,), (129, 513)]
    _, params, targets, weights = _problem(3, shapes)
    ref = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    mr = [np.zeros_like(p) for p in ref]
    vr = [np.zeros_like(p) for p in ref]
    old = fnn.get_num_threads()
    fnn.set_num_threads(2)
    try:
        for step in range(1, 4):
            g = _grads(rng, params, targets, weights, step)
            ops.adam_(params, g, m, v, step=step, lr=0.01)
            for i in range(len(ref)):  # float64 reference of the same formula
                gd = g[i].astype(np.float64)
                mr[i] = 0.9 * mr[i] + 0.1 * gd
                vr[i] = 0.999 * vr[i] + 0.001 * gd * gd
                denom = np.sqrt(vr[i]) / math.sqrt(1 - 0.999 ** step) + 1e-8
                ref[i] = ref[i] - 0.01 / (1 - 0.9 ** step) * mr[i] / denom
    finally:
        fnn.set_num_threads(old)
    # float32 state vs float64: a few ulp of the update (lr=1e-2) per step
    _close(params, ref, rtol=1e-6, atol=1e-6)


def test_adam_grad_scale_and_found_inf(simd_level):
    rng, params, targets, weights = _problem(5)
    g = _grads(rng, params, targets, weights, 1)
    # grad_scale divides the grads: same result as pre-divided grads
    p1 = [p.copy() for p in params]
    p2 = [p.copy() for p in params]
    st = lambda: ([np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params])  # noqa: E731
    m1, v1 = st()
    m2, v2 = st()
    scale = 1024.0
    ops.adam_(p1, [x * np.float32(scale) for x in g], m1, v1, step=1, lr=0.01, grad_scale=scale)
    ops.adam_(p2, g, m2, v2, step=1, lr=0.01)
    _close(p1, p2, rtol=1e-6, atol=1e-7)
    # tensor grad_scale and found_inf left at 0 when everything is finite
    found = np.zeros(1, np.float32)
    ops.adam_(p1, [x * np.float32(scale) for x in g], m1, v1, step=2, lr=0.01,
              grad_scale=np.array([scale], np.float32), found_inf=found)
    assert found[0] == 0.0
    assert not np.array_equal(p1[5], p2[5])
    # one Inf (or NaN) anywhere: found_inf = 1 and nothing moves
    for bad in (np.inf, -np.inf, np.nan):
        gb = [x.copy() for x in g]
        gb[5][12345] = bad
        before = [[x.copy() for x in lst] for lst in (p1, m1, v1)]
        found[0] = 0.0
        ops.adam_(p1, gb, m1, v1, step=3, lr=0.01, found_inf=found)
        assert found[0] == 1.0
        for lst, old in zip((p1, m1, v1), before):
            for a, b in zip(lst, old):
                assert np.array_equal(a, b)
    # found_inf already set on entry: skipped even with finite grads
    before = [x.copy() for x in p1]
    ops.adam_(p1, g, m1, v1, step=3, lr=0.01, found_inf=found)
    assert all(np.array_equal(a, b) for a, b in zip(p1, before))


SGD_CASES = [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.1),
    dict(momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(weight_decay=0.05, maximize=True),
    dict(momentum=0.5, maximize=True, weight_decay=0.01),
]


@pytest.mark.parametrize("cfg", SGD_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_sgd_matches_torch(cfg, simd_level, threads2):
    lr = 0.01
    momentum = cfg.get("momentum", 0.0)
    maximize = cfg.get("maximize", False)
    rng, params, targets, weights = _problem(2)
    if maximize:
        weights = [-w for w in weights]
    tparams = [torch.tensor(p, requires_grad=True) for p in params]
    opt = torch.optim.SGD(tparams, lr=lr, foreach=False, **cfg)
    bufs = [np.zeros_like(p) for p in params] if momentum else None
    grng = np.random.default_rng(11)
    for step in range(1, 101):
        state = grng.bit_generator.state
        g = _grads(grng, params, targets, weights, step)
        grng.bit_generator.state = state
        tg = _grads(grng, [tp.detach().numpy() for tp in tparams], targets, weights, step)
        for tp, x in zip(tparams, tg):
            tp.grad = torch.from_numpy(x)
        opt.step()
        ops.sgd_(params, g, bufs, lr=lr, first_step=(step == 1), **cfg)
    _close(params, [tp.detach().numpy() for tp in tparams])
    if momentum:
        _close(bufs, [opt.state[tp]["momentum_buffer"].numpy() for tp in tparams])


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
@pytest.mark.parametrize("max_norm", [1e9, 1.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, simd_level, threads):
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    tg = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    for t, g in zip(tg, grads):
        t.grad = torch.from_numpy(g.copy())
    # (torch's inf-norm rejects empty tensors; they contribute nothing anyway)
    expected = torch.nn.utils.clip_grad_norm_([t for t in tg if t.numel()], max_norm, norm_type=norm_type,
                                              foreach=False).item()
    # float64 reference of the norm itself (torch accumulates in float32 per tensor)
    flat = np.concatenate([g.reshape(-1).astype(np.float64) for g in grads])
    exact = np.max(np.abs(flat)) if math.isinf(norm_type) else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    total = ops.clip_grad_norm_(grads, max_norm, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(exact, rel=1e-12 if norm_type in (1.0, 2.0, math.inf) else 1e-10)
    assert total == pytest.approx(expected, rel=1e-5)  # torch's float32 norm: ~sqrt(n) ulp
    # the scale factor differs from torch's only through its float32 norm (rel ~1e-6)
    _close(grads, [t.grad.numpy() for t in tg], rtol=2e-6, atol=1e-7)
    if max_norm == 1.0:
        assert ops.grad_norm(grads, norm_type) == pytest.approx(1.0, rel=1e-5)
    else:
        assert ops.grad_norm(grads, norm_type) == pytest.approx(exact, rel=1e-10)


def test_grad_norm_nonfinite():
    g = [np.ones(100, np.float32), np.ones(50, np.float32)]
    g[1][3] = np.nan
    assert math.isnan(ops.grad_norm(g, 2.0))
    assert math.isnan(ops.grad_norm(g, math.inf))
    g[1][3] = np.inf
    assert ops.grad_norm(g, 2.0) == math.inf
    assert ops.grad_norm(g, "inf") == math.inf
    assert ops.grad_norm([], 2.0) == 0.0


def test_optim_errors():
    p = [np.zeros(4, np.float32), np.zeros((2, 3), np.float32)]
    g = [np.zeros(4, np.float32), np.zeros((3, 2), np.float32)]
    z = lambda: [np.zeros_like(x) for x in p]  # noqa: E731
    with pytest.raises(ValueError, match=r"grads\[1\].*\(2, 3\).*\(3, 2\)"):
        ops.adam_(p, g, z(), z(), step=1)
    with pytest.raises(ValueError, match=r"exp_avgs.*2 tensors.*got 1"):
        ops.adam_(p, z(), z()[:1], z(), step=1)
    with pytest.raises(TypeError, match=r"params\[0\].*float32.*float64"):
        ops.adam_([np.zeros(4)], [np.zeros(4, np.float32)], [np.zeros(4, np.float32)], [np.zeros(4, np.float32)],
                  step=1)
    with pytest.raises(ValueError, match=r"step.*>= 1.*0"):
        ops.adam_(p, z(), z(), z(), step=0)
    with pytest.raises(ValueError, match=r"max_exp_avg_sqs"):
        ops.adam_(p, z(), z(), z(), step=1, amsgrad=True)
    with pytest.raises(ValueError, match=r"contiguous"):
        ops.adam_([np.zeros((4, 4), np.float32)[:, ::2]], [np.zeros((4, 2), np.float32)],
                  [np.zeros((4, 2), np.float32)], [np.zeros((4, 2), np.float32)], step=1)
    with pytest.raises(ValueError, match=r"params\[0\].*disjoint.*exp_avgs\[0\]"):
        ops.adam_(p, z(), p, z(), step=1)
    with pytest.raises(ValueError, match=r"beta2"):
        ops.adam_(p, z(), z(), z(), step=1, beta2=1.0)
    with pytest.raises(TypeError, match=r"params.*list"):
        ops.adam_(3, z(), z(), z(), step=1)
    with pytest.raises(ValueError, match=r"momentum_buffers"):
        ops.sgd_(p, z(), None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"nesterov"):
        ops.sgd_(p, z(), z(), lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match=r"norm_type.*got -1"):
        ops.clip_grad_norm_(p, 1.0, -1.0)
    with pytest.raises(ValueError, match=r"found_inf.*1-element"):
        ops.adam_(p, z(), z(), z(), step=1, found_inf=np.zeros(2, np.float32))
