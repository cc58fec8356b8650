"""The Python layer on device='cuda' (the CPU emulator of CUDA under the test suite): every layer's
forward and backward against the same layer on the CPU, the optimizers, the Trainer, and the
acceptance of issues #7/#8 — one complete training step (forward, loss, backward, optimizer step)
of each example model (MLP, CNN, Transformer encoder classifier) with ZERO host<->device copies
inside the step (fastnn._C._cuda_host_device_copies() before and after; data moved first).

Reference: the same module on the CPU (fastnn's CPU kernels, themselves tested against float64
NumPy). Tolerance: CPU and CUDA kernels sum in different orders (GEMM tiles, reductions,
FlashAttention's online softmax), each within a few float32 roundings of float64 per output:
rtol = atol = 1e-4 on O(1) activations and gradients of these tiny shapes (sums of <= 64 terms:
64 * 6e-8 ~ 4e-6 per term-scaled error, with margin for exp/erf polynomial differences).

A CUDA kernel family that has not landed runs through the CPU kernel on host copies
(fastnn._kernels, 'cpu-kernel-via-host'): results still match; the zero-copy acceptance tests
skip, naming the missing kernels, only while a `_C` kernel still rejects CUDA tensors
(detected with kernel_status('cuda'), not hard-coded).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _C
from fastnn import _kernels as K
from fastnn import nn, optim

if not fastnn.cuda.is_available():
    pytest.skip("device 'cuda' not available (neither a GPU nor the emulator)", allow_module_level=True)

TOL = dict(rtol=1e-4, atol=1e-4)


def host(t):
    return t.cpu().numpy() if t.is_cuda else t.numpy()


def _pair(factory, seed=0):
    fastnn.manual_seed(seed)
    m_cpu = factory()
    fastnn.manual_seed(seed)
    m_cuda = factory()
    m_cuda.load_state_dict(m_cpu.state_dict())
    return m_cpu, m_cuda.to("cuda")


def _grads(m):
    return {n: host(p.grad) for n, p in m.named_parameters() if p.grad is not None}


LAYERS = {
    "Linear": (lambda: nn.Linear(7, 5), (3, 7)),
    "Conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1, stride=1), (2, 2, 5, 5)),
    "Conv2d-stride2": (lambda: nn.Conv2d(2, 4, 3, stride=2, padding=0), (1, 2, 7, 7)),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), (2, 3, 6, 6)),
    "AvgPool2d": (lambda: nn.AvgPool2d(3, stride=2, padding=1), (1, 2, 7, 7)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 2, 5, 7)),
    "Flatten": (lambda: nn.Flatten(), (2, 3, 4)),
    "ReLU": (lambda: nn.ReLU(), (4, 17)),
    "GELU": (lambda: nn.GELU(), (4, 17)),
    "Sigmoid": (lambda: nn.Sigmoid(), (4, 17)),
    "Tanh": (lambda: nn.Tanh(), (4, 17)),
    "Softmax": (lambda: nn.Softmax(dim=-1), (3, 9)),
    "Softmax-dim0": (lambda: nn.Softmax(dim=0), (5, 4)),
    "Dropout": (lambda: nn.Dropout(0.3), (6, 33)),
    "LayerNorm": (lambda: nn.LayerNorm(9), (4, 9)),
    "LayerNorm-2d": (lambda: nn.LayerNorm((3, 4)), (2, 3, 4)),
    "MultiHeadAttention": (lambda: nn.MultiHeadAttention(16, 2), (2, 5, 16)),
    "TransformerEncoderLayer": (lambda: nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0), (2, 5, 16)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_forward_backward_matches_cpu(name, rng):
    factory, shape = LAYERS[name]
    m_cpu, m_cuda = _pair(factory)
    x = rng.normal(0, 1, shape).astype(np.float32)
    outs, gxs, grads = [], [], []
    for m, dev in ((m_cpu, "cpu"), (m_cuda, "cuda")):
        fastnn.manual_seed(7)  # dropout seeds: the same mask (Philox) on both devices
        t = fastnn.tensor(x, requires_grad=True, device=dev)
        y = m(t)
        w = fastnn.tensor(np.linspace(-1, 1, int(np.prod(y.shape)), dtype=np.float32).reshape(y.shape), device=dev)
        (y * w).sum().backward()
        assert y.is_cuda == (dev == "cuda") and t.grad.is_cuda == (dev == "cuda")
        outs.append(host(y))
        gxs.append(host(t.grad))
        grads.append(_grads(m))
    np.testing.assert_allclose(outs[1], outs[0], **TOL)
    np.testing.assert_allclose(gxs[1], gxs[0], **TOL)
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        np.testing.assert_allclose(grads[1][k], grads[0][k], err_msg=k, **TOL)


def test_embedding_matches_cpu(rng):
    m_cpu, m_cuda = _pair(lambda: nn.Embedding(11, 6, padding_idx=0))
    ids = rng.integers(0, 11, (3, 5))
    res = []
    for m, dev in ((m_cpu, "cpu"), (m_cuda, "cuda")):
        y = m(fastnn.tensor(ids, device=dev))
        (y * y).sum().backward()
        res.append((host(y), host(m.weight.grad)))
    np.testing.assert_allclose(res[1][0], res[0][0], **TOL)
    np.testing.assert_allclose(res[1][1], res[0][1], **TOL)
    assert not res[1][1][0].any()  # padding_idx row gets no gradient


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce"])
def test_losses_match_cpu(loss, rng):
    x = rng.normal(0, 1, (6, 4)).astype(np.float32)
    y = {"cross_entropy": rng.integers(0, 4, 6), "mse": rng.normal(0, 1, (6, 4)).astype(np.float32),
         "bce": (rng.random((6, 4)) > 0.5).astype(np.float32)}[loss]
    fn = {"cross_entropy": nn.CrossEntropyLoss(label_smoothing=0.1), "mse": nn.MSELoss(),
          "bce": nn.BCEWithLogitsLoss()}[loss]
    res = []
    for dev in ("cpu", "cuda"):
        t = fastnn.tensor(x, requires_grad=True, device=dev)
        lv = fn(t, fastnn.tensor(y, device=dev))
        lv.backward()
        assert lv.is_cuda == (dev == "cuda")
        res.append((host(lv), host(t.grad)))
    np.testing.assert_allclose(res[1][0], res[0][0], **TOL)
    np.testing.assert_allclose(res[1][1], res[0][1], **TOL)


@pytest.mark.parametrize("opt", ["SGD", "Adam", "AdamW"])
def test_optimizers_on_cuda_match_cpu(opt, rng):
    make = {"SGD": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
            "Adam": lambda p: optim.Adam(p, lr=1e-2), "AdamW": lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1)}
    m_cpu, m_cuda = _pair(lambda: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)))
    x = rng.normal(0, 1, (4, 5)).astype(np.float32)
    for m, dev in ((m_cpu, "cpu"), (m_cuda, "cuda")):
        o = make[opt](m.parameters())
        for _ in range(3):
            o.zero_grad()
            (m(fastnn.tensor(x, device=dev)) ** 2).mean().backward()
            o.step()
    for (n, a), (_, b) in zip(m_cpu.named_parameters(), m_cuda.named_parameters()):
        assert b.is_cuda
        np.testing.assert_allclose(host(b), host(a), err_msg=n, **TOL)


def test_trainer_fit_evaluate_predict_on_cuda(rng):
    x = rng.normal(0, 1, (48, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    hist = []
    for dev in ("cpu", "cuda"):
        fastnn.manual_seed(3)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
        tr = fastnn.Trainer(model, optim.Adam(model.parameters(), lr=1e-2), "cross_entropy", metrics=["accuracy"],
                            device=dev)
        h = tr.fit(x, y, epochs=2, batch_size=16, verbose=0)
        ev = tr.evaluate(x, y)
        pred = tr.predict(x[:5])
        assert all(p.is_cuda == (dev == "cuda") for p in model.parameters())
        hist.append((h.history["loss"], ev, host(pred)))
    np.testing.assert_allclose(hist[1][0], hist[0][0], **TOL)
    assert hist[1][1]["accuracy"] == pytest.approx(hist[0][1]["accuracy"])
    np.testing.assert_allclose(hist[1][2], hist[0][2], **TOL)


# ---- acceptance: one training step of each example model with zero host<->device copies ---------
def _missing_cuda_kernels(families):
    st = K.kernel_status("cuda")
    return [f"{fam}: {st[fam]}" for fam in families if st[fam] != "kernel"]


class _TextClassifier(nn.Module):
    """examples/05_text_transformer.py's model, with the padding mask built on the device."""

    def __init__(self, vocab, d, heads, layers, classes, max_len):
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        self.enc = nn.TransformerEncoder(lambda: nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.1), layers,
                                         norm=nn.LayerNorm(d))
        self.head = nn.Linear(d, classes)
        self.register_buffer("positions", fastnn.tensor(np.arange(max_len)), persistent=False)

    def forward(self, ids):
        mask = ids == 0
        h = self.emb(ids) + self.pos(self.positions[: ids.shape[1]])
        h = self.enc(h, key_padding_mask=mask)
        keep = (ids != 0).to(fastnn.float32).unsqueeze(-1)
        return self.head((h * keep).sum(1) / (keep.sum(1) + 1e-6))


def _mlp():
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5)), (8, 20), 5


def _cnn():
    return (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 2 * 2, 5)), (4, 1, 8, 8), 5)


def _transformer():
    return _TextClassifier(30, 16, 2, 1, 3, 6), None, 3


_COMMON = ["add/sub/mul/div", "scalar ops, exp/log/sqrt/abs/pow, fill", "sum/mean/max/argmax, broadcast reductions",
           "matmul/linear", "losses", "optim (adam/sgd/clip)"]
MODELS = {
    "mlp": (_mlp, _COMMON + ["activations"]),
    "cnn": (_cnn, _COMMON + ["activations", "conv2d", "pooling"]),
    "transformer": (_transformer, _COMMON + ["activations", "softmax", "layer_norm", "dropout", "embedding",
                                             "attention", "compare (eq/ne/lt/le/gt/ge)"]),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_training_step_has_zero_host_device_copies(name, rng):
    make, families = MODELS[name]
    missing = _missing_cuda_kernels(families)
    if missing:
        pytest.skip("needs the CUDA kernels of issue #8 (still rejected by _C): " + "; ".join(missing))
    fastnn.manual_seed(0)
    model, xshape, classes = make()
    model.to("cuda")
    opt = (optim.AdamW if name == "transformer" else optim.Adam)(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    if xshape is None:
        ids = rng.integers(1, 30, (4, 6))
        ids[:, 4:] = 0  # padding
        x = fastnn.tensor(ids).to("cuda")
    else:
        x = fastnn.tensor(rng.normal(0, 1, xshape).astype(np.float32)).to("cuda")
    y = fastnn.tensor(rng.integers(0, classes, x.shape[0])).to("cuda")
    model.train()
    for step in range(2):  # the first step creates the optimizer state; the second is measured too
        before = _C._cuda_host_device_copies()
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        copies = _C._cuda_host_device_copies() - before
        assert copies == 0, f"{name}: {copies} host<->device copies inside training step {step}"
    assert loss.is_cuda and np.isfinite(loss.item())
    assert all(p.is_cuda and p.grad.is_cuda for p in model.parameters())


def test_kernel_without_cuda_version_runs_via_host(monkeypatch, rng):
    """A `_C` kernel that rejects CUDA tensors (as every family did before its CUDA version
    landed) is detected and replaced by its CPU kernel on host copies: same result, copies
    counted, reported by kernel_status."""
    real = _C.activation

    def cpu_only(x, act):
        if x.is_cuda:
            raise RuntimeError("activation: argument 'x': not implemented on cuda:0 yet (CPU only)")
        return real(x, act)

    monkeypatch.setattr(_C, "activation", cpu_only)
    monkeypatch.setattr(K, "_CUDA_MISSING", set())
    x = rng.normal(0, 1, (3, 17)).astype(np.float32)
    before = _C._cuda_host_device_copies()
    y = nn.GELU()(fastnn.tensor(x, device="cuda"))
    assert y.is_cuda and _C._cuda_host_device_copies() > before
    np.testing.assert_allclose(host(y), host(nn.GELU()(fastnn.tensor(x))), **TOL)
    assert K._CUDA_MISSING == {"activation"}
    assert K.kernel_status("cuda")["activations"].startswith("cpu-kernel-via-host (no CUDA kernel yet: activation")
    with pytest.raises(ValueError):  # a genuine device mix is still an error, not a fallback
        K.linear(fastnn.tensor(x, device="cuda"), fastnn.tensor(np.ones((2, 17), np.float32)))
