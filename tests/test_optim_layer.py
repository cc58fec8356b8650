"""fastnn.optim (the Python layer over the fused kernels): trajectories vs torch.optim,
parameter groups, state_dict, schedulers, regularisation helpers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fastnn as fnn
from fastnn import nn, optim


def _params(rng, shapes=((5, 3), (3,))):
    arrs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    return arrs, [fnn.tensor(a, requires_grad=True) for a in arrs], [torch.tensor(a, requires_grad=True) for a in arrs]


def _run(make_f, make_t, rng, steps=5):
    arrs, fp, tp = _params(rng)
    fo, to = make_f(fp), make_t(tp)
    for _ in range(steps):
        grads = [rng.standard_normal(a.shape).astype(np.float32) for a in arrs]
        for p, g in zip(fp, grads):
            p.grad = fnn.tensor(g)
        for p, g in zip(tp, grads):
            p.grad = torch.tensor(g)
        fo.step()
        to.step()
    # float32 update arithmetic differs only by rounding order: a few ulps per step
    for a, b in zip(fp, tp):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
    return fo, fp


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True,
                                                                              weight_decay=0.01)])
def test_sgd_matches_torch(kw, rng):
    _run(lambda p: optim.SGD(p, **kw), lambda p: torch.optim.SGD(p, **kw), rng)


@pytest.mark.parametrize("cls,kw", [("Adam", dict(lr=0.01)), ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
                                    ("AdamW", dict(lr=0.01)), ("AdamW", dict(lr=0.01, weight_decay=0.3))])
def test_adam_matches_torch(cls, kw, rng):
    _run(lambda p: getattr(optim, cls)(p, **kw), lambda p: getattr(torch.optim, cls)(p, **kw), rng)


def test_param_groups_and_zero_grad(rng):
    _, fp, _ = _params(rng)
    o = optim.SGD([{"params": [fp[0]], "lr": 0.0}, {"params": [fp[1]]}], lr=1.0)
    before = [p.numpy().copy() for p in fp]
    for p in fp:
        p.grad = fnn.tensor(np.ones(p.shape, np.float32))
    o.step()
    np.testing.assert_array_equal(fp[0].numpy(), before[0])  # lr 0 group untouched
    np.testing.assert_allclose(fp[1].numpy(), before[1] - 1.0)
    o.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(fp[0].grad.numpy(), 0)
    o.zero_grad()
    assert fp[0].grad is None
    o.step()  # no grads: a no-op, not an error
    with pytest.raises(ValueError, match="more than one"):
        o.add_param_group({"params": [fp[0]]})
    with pytest.raises(ValueError, match="params"):
        optim.Adam([])


def test_state_dict_resume_equals_uninterrupted(rng, tmp_path):
    arrs = [rng.standard_normal((4, 3)).astype(np.float32)]
    grads = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(6)]

    def run(split):
        p = fnn.tensor(arrs[0], requires_grad=True)
        o = optim.Adam([p], lr=0.05)
        for i, g in enumerate(grads):
            if i == split:
                fnn.save({"opt": o.state_dict(), "p": p.detach()}, tmp_path / "ck.fnn")
                ck = fnn.load(tmp_path / "ck.fnn")
                p = fnn.tensor(ck["p"].numpy(), requires_grad=True)
                o = optim.Adam([p], lr=0.5)  # lr comes back from the state dict
                o.load_state_dict(ck["opt"])
                assert o.param_groups[0]["lr"] == 0.05
            p.grad = fnn.tensor(g)
            o.step()
        return p.numpy()
    np.testing.assert_array_equal(run(None), run(3))


def test_schedulers_match_torch():
    def lrs(f_sched, t_sched, n=12):
        fp = fnn.tensor(np.zeros(1, np.float32), requires_grad=True)
        tp = torch.zeros(1, requires_grad=True)
        fo, to = optim.SGD([fp], lr=0.1), torch.optim.SGD([tp], lr=0.1)
        fs, ts = f_sched(fo), t_sched(to)
        out = []
        for _ in range(n):
            out.append((fs.get_last_lr()[0], ts.get_last_lr()[0]))
            fo.step(), to.step()
            fs.step(), ts.step()
        return np.array(out)
    a = lrs(lambda o: optim.StepLR(o, 3, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5))
    np.testing.assert_allclose(a[:, 0], a[:, 1], rtol=1e-12)
    a = lrs(lambda o: optim.CosineAnnealingLR(o, 10, 0.001),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, 0.001))
    np.testing.assert_allclose(a[:, 0], a[:, 1], rtol=1e-9)
    a = lrs(lambda o: optim.LinearWarmup(o, 4, 0.25),
            lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.25, 1.0, total_iters=4))
    np.testing.assert_allclose(a[:, 0], a[:, 1], rtol=1e-9)


def test_regularisation_helpers(rng):
    _, fp, _ = _params(rng)
    l1 = optim.l1_penalty(fp, 0.5)
    l2 = optim.l2_penalty(fp, 0.25)
    want1 = 0.5 * sum(np.abs(p.numpy()).sum() for p in fp)
    want2 = 0.25 * sum((p.numpy().astype(np.float64) ** 2).sum() for p in fp)
    assert math.isclose(l1.item(), want1, rel_tol=1e-5)
    assert math.isclose(l2.item(), want2, rel_tol=1e-5)
    (l1 + l2).backward()
    for p in fp:
        np.testing.assert_allclose(p.grad.numpy(), 0.5 * np.sign(p.numpy()) + 0.5 * p.numpy(), rtol=1e-5, atol=1e-6)
    for p in fp:
        p.grad = fnn.tensor(np.full(p.shape, 10.0, np.float32))
    norm = optim.clip_grad_norm_(fp, 1.0)
    assert math.isclose(norm, 10.0 * math.sqrt(18), rel_tol=1e-5)
    total = math.sqrt(sum((p.grad.numpy().astype(np.float64) ** 2).sum() for p in fp))
    assert math.isclose(total, 1.0, rel_tol=1e-4)


def test_training_reduces_loss():
    fnn.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
    m = nn.Linear(3, 1)
    o = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    xt, yt = fnn.tensor(x), fnn.tensor(y)
    first = None
    for _ in range(100):
        loss = nn.functional.mse_loss(m(xt), yt)
        first = first if first is not None else loss.item()
        o.zero_grad()
        loss.backward()
        o.step()
    assert loss.item() < 1e-3 * first
