"""`fastnn bench train`: fixed numbers of training steps of small models, end to end.

Models (same architecture, same initial weights, same random batches in every framework):
  * MLP 784-128-10, batch 64, Adam — fastnn (fastnn.nn + fastnn.optim), PyTorch, and plain NumPy
    (hand-written forward/backward + Adam, the way one writes it without a framework);
  * a small CNN: conv3x3(1->16)+ReLU+maxpool2, conv3x3(16->32)+ReLU+maxpool2, linear(1568->10) on
    28x28 images, batch 32, Adam — fastnn vs PyTorch;
  * a small pre-LN Transformer encoder: 2 layers, d_model 128, 4 heads, FFN 256 (GELU), sequence
    64, batch 16, mean-pooled linear head, Adam — fastnn vs PyTorch (norm_first=True, GELU,
    dropout 0, batch_first: the same computation as fastnn.nn.TransformerEncoderLayer).
Correctness gate: from identical weights each contender trains 3 steps; the 3 losses must agree
with the float64 NumPy MLP (MLP) or with PyTorch (CNN, Transformer). The loss of step 1 is a pure
forward pass (tolerance ~ sqrt(K) eps32); steps 2-3 follow one Adam update whose direction is
sign-like (|m/sqrt(v)| ~ 1), so grads that differ in rounding move weights by at most lr: the
loss may move by O(lr) — tolerance 5e-3 absolute on losses ~2.3.
Rates: samples/s; GFLOP/s from the layers' matmul/conv FLOPs x3 (forward + backward).
"""
from __future__ import annotations

import math

import numpy as np

from .core import EPS32, Case, Contender, NotAvailable, Unavailable
from .machine import optional_torch
from .suites import _keep, _rng

LR = 1e-3
CHECK_STEPS = 3


def _need_layer():
    try:
        import fastnn.nn as fnn_nn
        import fastnn.optim as fnn_optim
    except ImportError as e:
        raise NotAvailable(f"fastnn.nn / fastnn.optim ({e})") from None
    for name in ("Sequential", "Linear", "ReLU", "CrossEntropyLoss", "Module"):
        if not hasattr(fnn_nn, name):
            raise NotAvailable(f"fastnn.nn.{name}")
    if not hasattr(fnn_optim, "Adam"):
        raise NotAvailable("fastnn.optim.Adam")
    return fnn_nn, fnn_optim


def _loss_value(x):
    if hasattr(x, "item") and not isinstance(x, np.ndarray):
        try:
            return float(x.item())
        except Exception:  # noqa: BLE001
            pass
    return float(np.asarray(x).reshape(()))


def _set_params(model, arrays):
    """Copies {name: ndarray} into a fastnn model's parameters (names as torch's)."""
    params = dict(model.named_parameters())
    if set(params) != set(arrays):
        raise NotAvailable(f"fastnn model parameters {sorted(params)} do not match {sorted(arrays)}")
    for name, p in params.items():
        dst = p.numpy()
        if tuple(dst.shape) != arrays[name].shape:
            raise NotAvailable(f"parameter {name}: fastnn shape {tuple(dst.shape)} vs {arrays[name].shape}")
        np.copyto(dst, arrays[name])


class NumpyMLP:
    """784-128-10 MLP with ReLU, softmax cross-entropy and Adam, in plain NumPy (dtype of w)."""

    def __init__(self, w):
        self.p = [w["0.weight"].copy(), w["0.bias"].copy(), w["2.weight"].copy(), w["2.bias"].copy()]
        self.m = [np.zeros_like(a) for a in self.p]
        self.v = [np.zeros_like(a) for a in self.p]
        self.t = 0

    def step(self, x, y):
        w1, b1, w2, b2 = self.p
        h = x @ w1.T + b1
        np.maximum(h, 0, out=h)
        z = h @ w2.T + b2
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        n = x.shape[0]
        loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(n), y]))
        dz = e / s
        dz[np.arange(n), y] -= 1
        dz /= n
        gw2, gb2 = dz.T @ h, dz.sum(0)
        dh = dz @ w2
        dh *= h > 0
        gw1, gb1 = dh.T @ x, dh.sum(0)
        self.t += 1
        b1_, b2_ = 0.9, 0.999
        c1, c2 = 1 - b1_ ** self.t, 1 - b2_ ** self.t
        for p, g, m, v in zip(self.p, (gw1, gb1, gw2, gb2), self.m, self.v):
            m *= b1_
            m += (1 - b1_) * g
            v *= b2_
            v += (1 - b2_) * g * g
            p -= (LR / c1) * m / (np.sqrt(v / c2) + 1e-8)
        return loss


def _mlp_torch(torch):
    return torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def _cnn_torch(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def _cnn_fastnn(nn):
    for name in ("Conv2d", "MaxPool2d", "Flatten"):
        if not hasattr(nn, name):
            raise NotAvailable(f"fastnn.nn.{name}")
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


TX = dict(E=128, H=4, FF=256, L=2, N=64)


def _tx_torch(torch, E, H, FF, L, N):
    nn = torch.nn

    class Tx(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, L, enable_nested_tensor=False)
            self.head = nn.Linear(E, 10)

        def forward(self, x):
            return self.head(self.encoder(x).mean(1))
    return Tx()


def _tx_fastnn(fnn_nn, E, H, FF, L, N):
    for name in ("TransformerEncoder", "TransformerEncoderLayer"):
        if not hasattr(fnn_nn, name):
            raise NotAvailable(f"fastnn.nn.{name}")

    class Tx(fnn_nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = fnn_nn.TransformerEncoder(
                lambda: fnn_nn.TransformerEncoderLayer(E, H, FF, dropout=0.0), L)
            self.head = fnn_nn.Linear(E, 10)

        def forward(self, x):
            return self.head(self.encoder(x).mean(1))
    return Tx()


def _sizes(cfg):
    if cfg.size == "tiny":
        return {"mlp": (16, 2), "cnn": (4, 2), "tx": (2, 2, dict(TX, N=8, E=32, FF=32, H=2, L=1))}
    if cfg.size == "quick":
        return {"mlp": (64, 50), "cnn": (32, 5), "tx": (16, 5, TX)}
    return {"mlp": (64, 200), "cnn": (32, 20), "tx": (16, 20, TX)}


def train_cases(cfg):
    import fastnn

    fnn_nn, fnn_optim = _need_layer()
    torch = optional_torch()
    if torch is None:  # weights are initialised through torch's init (the peer's own)
        raise NotAvailable("train suite needs torch for the shared initial weights")
    sizes = _sizes(cfg)
    status = {}
    try:
        from fastnn import _kernels
        status = {k: v for k, v in _kernels.kernel_status().items() if v != "kernel"}
    except Exception:  # noqa: BLE001
        pass
    note = ("fastnn ops still on NumPy fallback: " + ", ".join(sorted(status))) if status else ""

    def build(kind, make_torch, make_fastnn, batch, steps, in_shape, flops_per_sample, label, shape_label,
              numpy_mlp=False):
        torch.manual_seed(0)
        tmodel0 = make_torch()
        w0 = {k: v.detach().numpy().copy() for k, v in tmodel0.state_dict().items()}
        rng = _rng(11)
        xs = rng.standard_normal((max(steps, CHECK_STEPS), batch) + in_shape, dtype=np.float32)
        ys = rng.integers(0, 10, (max(steps, CHECK_STEPS), batch)).astype(np.int64)

        # -- fastnn
        def fnn_setup():
            m = make_fastnn()
            _set_params(m, w0)
            opt = fnn_optim.Adam(list(m.parameters()), lr=LR)
            crit = fnn_nn.CrossEntropyLoss()
            fx = [fastnn.from_numpy(x) for x in xs]
            fy = [fastnn.from_numpy(y) for y in ys]

            def run(n):
                losses = []
                for i in range(n):
                    opt.zero_grad()
                    loss = crit(m(fx[i]), fy[i])
                    loss.backward()
                    opt.step()
                    losses.append(loss)
                return losses
            return run
        frun = fnn_setup()
        cs = [Contender("fastnn", "fastnn", lambda: frun(steps),
                        check=lambda: [_loss_value(v) for v in fnn_setup()(CHECK_STEPS)])]

        # -- torch
        def torch_setup():
            m = make_torch()
            m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w0.items()})
            opt = torch.optim.Adam(m.parameters(), lr=LR)
            crit = torch.nn.CrossEntropyLoss()
            tx = [torch.from_numpy(x) for x in xs]
            ty = [torch.from_numpy(y) for y in ys]

            def run(n):
                losses = []
                for i in range(n):
                    opt.zero_grad()
                    loss = crit(m(tx[i]), ty[i])
                    loss.backward()
                    opt.step()
                    losses.append(loss.detach())
                return losses
            return run
        if "torch" in cfg.baselines:
            trun = torch_setup()
            cs.append(Contender("torch", "torch", lambda: trun(steps),
                                check=lambda: [float(v) for v in torch_setup()(CHECK_STEPS)]))
        ref = None
        if numpy_mlp:
            flat = [x.reshape(batch, -1) for x in xs]
            if "numpy" in cfg.baselines:
                nm = NumpyMLP(w0)

                def np_run():
                    return [nm.step(flat[i], ys[i]) for i in range(steps)]

                def np_check():
                    m = NumpyMLP(w0)
                    return [m.step(flat[i], ys[i]) for i in range(CHECK_STEPS)]
                cs.append(Contender("numpy", "numpy", np_run, variant="manual fwd/bwd + Adam", check=np_check,
                                    best=True))

            def ref():
                m = NumpyMLP({k: v.astype(np.float64) for k, v in w0.items()})
                return [m.step(flat[i].astype(np.float64), ys[i]) for i in range(CHECK_STEPS)]
        else:
            # no float64 reference: the first peer (torch) is the yardstick; order peers first.
            cs = cs[1:] + cs[:1]
        k_in = int(np.prod(in_shape))
        atol = [8 * math.sqrt(k_in) * EPS32 * 10 + 1e-5] + [5e-3] * (CHECK_STEPS - 1)
        return Case("train", label, shape_label, flops_per_sample * batch * steps, "GFLOP/s", "fma",
                    _keep(cfg, cs), reference=ref, atol=atol, samples=batch * steps, note=note)

    def attempt(label, *a, **kw):
        try:
            return build(*a, **kw)
        except NotAvailable as e:
            return Unavailable("train", label, str(e))

    b, steps = sizes["mlp"]
    yield attempt("MLP", "mlp", lambda: _mlp_torch(torch),
                lambda: fnn_nn.Sequential(fnn_nn.Linear(784, 128), fnn_nn.ReLU(), fnn_nn.Linear(128, 10)),
                b, steps, (784,), 6.0 * (784 * 128 + 128 * 10), "train MLP 784-128-10",
                f"batch {b}, {steps} steps", numpy_mlp=True)
    b, steps = sizes["cnn"]
    cnn_flops = 6.0 * (16 * 28 * 28 * 9 + 32 * 14 * 14 * 16 * 9 + 1568 * 10)
    yield attempt("CNN", "cnn", lambda: _cnn_torch(torch), lambda: _cnn_fastnn(fnn_nn), b, steps, (1, 28, 28), cnn_flops,
                "train small CNN", f"batch {b}, {steps} steps")
    b, steps, t = sizes["tx"]
    E, N, FF, L = t["E"], t["N"], t["FF"], t["L"]
    tx_flops = 3.0 * L * (2 * N * E * 3 * E + 4 * N * N * E + 2 * N * E * E + 4 * N * E * FF) + 6.0 * E * 10
    yield attempt("Transformer", "tx", lambda: _tx_torch(torch, **t), lambda: _tx_fastnn(fnn_nn, **t), b, steps, (N, E), tx_flops,
                "train Transformer enc", f"{L}x(d{E} h{t['H']} ff{FF}) N{N} batch {b}, {steps} steps")
