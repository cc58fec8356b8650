"""`fastnn bench overhead`: the per-op cost of the Python layer, the binding and the dispatch.

Every case works on tiny tensors (4 floats, a 4-4-2 MLP at batch 2) so that the kernels' own
work is nil and what is timed is the path around them: argument conversion and validation,
output allocation, wrapping, autograd bookkeeping. One timed call runs the op CALLS times
(timer resolution); the rate column is microseconds per op (lower is better), the speedup is
peer time / fastnn time as everywhere in the bench. Rows:

* ``_C.binary (raw)``: the bare binding of an elementwise add on fastnn.Tensor (no Python),
  next to a NumPy ufunc call and torch.add — the floor of any fastnn op;
* ``x + x``: the operator on fastnn.Tensor (operator dispatch, autograd check, kernel call);
* ``Linear fwd``: nn.Linear(4, 4) on a batch of 2, with requires_grad parameters (records the graph);
* ``train step``: zero_grad, forward, cross-entropy, backward and Adam.step of the 4-4-2 MLP —
  fastnn vs torch, the fixed cost per batch that small models pay on top of their FLOPs;
* ``Adam.step``: the optimizer alone over the 4 parameter tensors.
"""
from __future__ import annotations

import numpy as np

from .core import Case, Contender, NotAvailable
from .machine import optional_torch

CALLS = 200  # ops per timed call


def _loop(fn, n=CALLS):
    def run():
        for _ in range(n):
            fn()
    return run


def _mlp(nn):
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def overhead_cases(cfg):
    import fastnn

    try:
        import fastnn.nn as fnn_nn
        import fastnn.optim as fnn_optim
        from fastnn import _C
    except ImportError as e:
        raise NotAvailable(f"fastnn.nn / fastnn.optim ({e})") from None
    if cfg.device != "cpu":
        raise NotAvailable("the overhead suite measures the CPU path (device cpu)")
    torch = optional_torch() if "torch" in cfg.baselines else None
    want_np = "numpy" in cfg.baselines
    n = 20 if cfg.size == "tiny" else CALLS

    def case(op, contenders, ref):
        # the correctness gate compares one call's result of each contender with `ref`
        return Case("overhead", op, f"{n} calls, tiny tensors", float(n), "us/call", "none", contenders,
                    reference=ref, atol=1e-5)

    # -- elementwise add: raw binding, operator, peers
    a_np = np.arange(4, dtype=np.float32)
    a = fastnn.from_numpy(a_np.copy())
    cs = [Contender("fastnn", "fastnn", _loop(lambda: _C.binary(a, a, "add"), n), check=lambda: _C.binary(a, a, "add"))]
    if want_np:
        cs.append(Contender("numpy", "numpy", _loop(lambda: np.add(a_np, a_np), n), check=lambda: np.add(a_np, a_np)))
    if torch is not None:
        ta = torch.from_numpy(a_np.copy())
        cs.append(Contender("torch", "torch", _loop(lambda: torch.add(ta, ta), n), check=lambda: torch.add(ta, ta)))
    yield case("_C.binary (raw)", cs, lambda: 2.0 * a_np.astype(np.float64))

    cs = [Contender("fastnn", "fastnn", _loop(lambda: a + a, n), check=lambda: a + a)]
    if want_np:
        cs.append(Contender("numpy", "numpy", _loop(lambda: a_np + a_np, n), check=lambda: a_np + a_np))
    if torch is not None:
        cs.append(Contender("torch", "torch", _loop(lambda: ta + ta, n), check=lambda: ta + ta))
    yield case("x + x", cs, lambda: 2.0 * a_np.astype(np.float64))

    # -- nn.Linear forward (graph recorded) and a whole training step of a 4-4-2 MLP
    if torch is None:
        return
    torch.manual_seed(0)
    tm = _mlp(torch.nn)
    w0 = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}
    fm = _mlp(fnn_nn)
    for name, p in fm.named_parameters():
        np.copyto(p.numpy(), w0[name])
    x_np = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    y_np = np.array([0, 1], np.int64)
    fx, fy = fastnn.from_numpy(x_np), fastnn.from_numpy(y_np)
    tx, ty = torch.from_numpy(x_np), torch.from_numpy(y_np)
    lin_ref = x_np.astype(np.float64) @ w0["0.weight"].T.astype(np.float64) + w0["0.bias"]
    yield case("Linear fwd", [
        Contender("fastnn", "fastnn", _loop(lambda: fm[0](fx), n), check=lambda: fm[0](fx).detach()),
        Contender("torch", "torch", _loop(lambda: tm[0](tx), n), check=lambda: tm[0](tx).detach())],
        lambda: lin_ref)

    def fnn_trainer():
        m = _mlp(fnn_nn)
        for name, p in m.named_parameters():
            np.copyto(p.numpy(), w0[name])
        opt = fnn_optim.Adam(list(m.parameters()), lr=1e-3)
        crit = fnn_nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            loss = crit(m(fx), fy)
            loss.backward()
            opt.step()
            return loss
        return m, opt, step

    def torch_trainer():
        m = _mlp(torch.nn)
        m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w0.items()})
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        crit = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            loss = crit(m(tx), ty)
            loss.backward()
            opt.step()
            return loss.detach()
        return m, opt, step

    _, _, fstep = fnn_trainer()
    _, _, tstep = torch_trainer()
    steps = max(1, n // 10)  # a step is ~10 ops
    yield Case("overhead", "train step (MLP 4-4-2)", f"{steps} steps, batch 2", float(steps), "us/call", "none", [
        Contender("fastnn", "fastnn", _loop(fstep, steps), check=lambda: [fnn_trainer()[2]().item() for _ in range(3)]),
        Contender("torch", "torch", _loop(tstep, steps), check=lambda: [torch_trainer()[2]().item() for _ in range(3)])],
        reference=None, atol=[1e-5, 5e-3, 5e-3])  # steps 2-3 follow a sign-like Adam update: O(lr), as in train.py

    fmod, fopt, fs = fnn_trainer()
    tmod, topt, ts = torch_trainer()
    fs()
    ts()  # grads and optimizer state exist; step() alone is timed from here on
    yield Case("overhead", "Adam.step (4 tensors)", f"{steps} steps", float(steps), "us/call", "none", [
        Contender("fastnn", "fastnn", _loop(fopt.step, steps), check=lambda: [fopt.step(), 0.0][1]),
        Contender("torch", "torch", _loop(topt.step, steps), check=lambda: [topt.step(), 0.0][1])],
        reference=None, atol=0.0)
