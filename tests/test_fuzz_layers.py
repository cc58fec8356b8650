"""Fuzzing every public layer of fastnn.nn against the same PyTorch layer in float64 (weights
copied through state_dict, whose names match PyTorch's): drawn sizes (1 included; 0 where the
layer allows an empty batch), drawn hyper-parameters, drawn input values (normal, denormal,
huge; NaN / Inf in a separate check: they must propagate to the output and not crash), on the
CPU and the emulated CUDA device. Forward outputs, the gradient of the input and of every
parameter (through fastnn's autograd) must match. ``test_every_public_layer_is_fuzzed`` fails
when a public Module class of fastnn.nn has no case here.

Tolerances: a layer is a short composition of kernels whose own float32 error is a few k*eps
relative to the magnitudes involved (tests/test_fuzz_grads.py); the composition stays within
rtol 1e-4 and an absolute 1e-4 * (1 + max|ref|) for the outputs, 2e-4 for the gradients
(normalisations divide by a standard deviation, recurrences chain up to 5 steps). Example counts:
the FASTNN_FUZZ_PROFILE profiles of tests/test_fuzz_ops.py.
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn import nn  # noqa: E402

import op_cases as C  # noqa: E402
from conftest import DEVICES  # noqa: E402
from test_fuzz_ops import FUZZ, assert_matches, values  # noqa: E402

# CI ("ci" profile): 5 derandomized examples per test here (these files hold many tests; the
# dev / long profiles keep their counts).
if os.environ.get("FASTNN_FUZZ_PROFILE", "ci") == "ci":
    FUZZ = settings(FUZZ, max_examples=5)  # noqa: F811

TNN = torch.nn


class Case:
    """One layer configuration: the fastnn module, its PyTorch twin (float64, same weights), the
    float inputs (NumPy, differentiated) and other arguments, and how to call each side."""

    def __init__(self, fast, ref, inputs, other=(), call=None, ref_call=None, outputs=lambda o: o,
                 ref_outputs=None, grads=True):
        self.fast, self.ref, self.inputs, self.other = fast, ref, inputs, other
        self.call = call or (lambda m, *a: m(*a))
        self.ref_call = ref_call or self.call
        self.outputs = outputs
        self.ref_outputs = ref_outputs or outputs
        self.grads = grads


def _flat(o):
    if isinstance(o, (tuple, list)):
        return [t for x in o for t in _flat(x)]
    return [o]


def _shape(data, lead, minv=1):
    return tuple(data.draw(st.sampled_from([minv, 1, 2, 3])) for _ in range(lead))


def _vals(data, shape, kinds):
    return data.draw(values(shape, kinds=kinds))


# ---- one case per layer class ------------------------------------------------------------------
def c_linear(data, kinds):
    i, o, bias = data.draw(st.sampled_from([1, 5, 17])), data.draw(st.sampled_from([1, 3, 33])), data.draw(st.booleans())
    return Case(nn.Linear(i, o, bias=bias), TNN.Linear(i, o, bias=bias), [_vals(data, _shape(data, 2, 0) + (i,), kinds)])


def _act(fast_cls, ref):
    def make(data, kinds):
        return Case(fast_cls(), ref, [_vals(data, _shape(data, data.draw(st.integers(1, 3)), 0), kinds)])
    return make


def c_softmax(log):
    def make(data, kinds):
        x = _vals(data, _shape(data, data.draw(st.integers(1, 3))), kinds)
        dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
        return Case((nn.LogSoftmax if log else nn.Softmax)(dim=dim), (TNN.LogSoftmax if log else TNN.Softmax)(dim=dim), [x])
    return make


def c_identity(data, kinds):
    return Case(nn.Identity(), TNN.Identity(), [_vals(data, _shape(data, 2, 0), kinds)])


def c_flatten(data, kinds):
    x = _vals(data, _shape(data, 4), kinds)
    s = data.draw(st.integers(0, 2))
    return Case(nn.Flatten(s, -1), TNN.Flatten(s, -1), [x])


def c_dropout(data, kinds):
    # p = 0 (and eval mode for p > 0): the identity, as in PyTorch; p > 0 in training is random
    # (its mask is fuzzed through ops.dropout in test_fuzz_ops / test_fuzz_grads)
    p = data.draw(st.sampled_from([0.0, 0.5]))
    f, r = nn.Dropout(p), TNN.Dropout(p)
    if p:
        f.eval(), r.eval()
    return Case(f, r, [_vals(data, _shape(data, 2, 0), kinds)])


def c_layer_norm(data, kinds):
    d = data.draw(st.sampled_from([1, 5, 33]))
    return Case(nn.LayerNorm(d), TNN.LayerNorm(d), [_vals(data, _shape(data, 2) + (d,), kinds)])


def c_embedding(data, kinds):
    num, dim = data.draw(st.sampled_from([1, 7])), data.draw(st.sampled_from([1, 5]))
    idx = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, num, _shape(data, 2, 0)).astype(np.int64)
    pad = data.draw(st.sampled_from([None, 0]))
    return Case(nn.Embedding(num, dim, padding_idx=pad), TNN.Embedding(num, dim, padding_idx=pad), [], other=[idx])


def c_conv2d(data, kinds):
    ci, co = data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([1, 3]))
    k, s, p = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(0, 1))
    bias = data.draw(st.booleans())
    x = _vals(data, (data.draw(st.sampled_from([1, 2])), ci, data.draw(st.integers(k, 7)), data.draw(st.integers(k, 7))), kinds)
    return Case(nn.Conv2d(ci, co, k, stride=s, padding=p, bias=bias),
                TNN.Conv2d(ci, co, k, stride=s, padding=p, bias=bias), [x])


def c_pool(kind):
    def make(data, kinds):
        k, s = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
        p = data.draw(st.integers(0, k // 2))
        x = _vals(data, (data.draw(st.sampled_from([1, 2])), 2, data.draw(st.integers(k, 8)), data.draw(st.integers(k, 8))),
                  kinds)
        if kind == "max":
            return Case(nn.MaxPool2d(k, s, p), TNN.MaxPool2d(k, s, p), [x])
        if kind == "avg":
            return Case(nn.AvgPool2d(k, s, p), TNN.AvgPool2d(k, s, p), [x])
        o = data.draw(st.sampled_from([1, 2, (3, 2)]))
        return Case(nn.AdaptiveAvgPool2d(o), TNN.AdaptiveAvgPool2d(o), [x])
    return make


def c_batch_norm(two_d):
    def make(data, kinds):
        c = data.draw(st.sampled_from([1, 3]))
        shape = (data.draw(st.sampled_from([2, 5])), c) + ((2, 3) if two_d else tuple(data.draw(
            st.lists(st.sampled_from([1, 4]), max_size=1))))
        training = data.draw(st.booleans())
        f, r = (nn.BatchNorm2d(c), TNN.BatchNorm2d(c)) if two_d else (nn.BatchNorm1d(c), TNN.BatchNorm1d(c))
        if not training:
            f.eval(), r.eval()
        return Case(f, r, [_vals(data, shape, kinds)])
    return make


def c_rnn(kind):
    def make(data, kinds):
        i, h = data.draw(st.sampled_from([1, 4])), data.draw(st.sampled_from([1, 5]))
        layers, bi, bf = data.draw(st.sampled_from([1, 2])), data.draw(st.booleans()), data.draw(st.booleans())
        kw = dict(num_layers=layers, bidirectional=bi, batch_first=bf)
        if kind == "RNN":
            kw["nonlinearity"] = data.draw(st.sampled_from(["tanh", "relu"]))
        Tn, B = data.draw(st.sampled_from([1, 3])), data.draw(st.sampled_from([1, 2]))
        x = _vals(data, (B, Tn, i) if bf else (Tn, B, i), kinds) * np.float32(0.5)
        return Case(getattr(nn, kind)(i, h, **kw), getattr(TNN, kind)(i, h, **kw), [x], outputs=lambda o: _flat(o))
    return make


def c_mha(cls_name):
    def make(data, kinds):
        heads = data.draw(st.sampled_from([1, 2]))
        e = heads * data.draw(st.sampled_from([2, 4]))
        causal = data.draw(st.booleans())
        x = _vals(data, (data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([1, 3, 5])), e), kinds)
        n = x.shape[1]
        mask = torch.ones(n, n, dtype=torch.bool).triu(1) if causal else None
        return Case(getattr(nn, cls_name)(e, heads), TNN.MultiheadAttention(e, heads, batch_first=True), [x],
                    call=lambda m, a: m(a, causal=causal),
                    ref_call=lambda m, a: m(a, a, a, need_weights=False, attn_mask=mask)[0])
    return make


def c_encoder_layer(data, kinds):
    heads = data.draw(st.sampled_from([1, 2]))
    e = heads * 4
    ff = data.draw(st.sampled_from([3, 8]))
    x = _vals(data, (data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([1, 4])), e), kinds)
    f = nn.TransformerEncoderLayer(e, heads, ff, dropout=0.0)
    r = TNN.TransformerEncoderLayer(e, heads, ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    return Case(f, r, [x])


def c_encoder(data, kinds):
    e, heads, n = 4, 2, data.draw(st.sampled_from([1, 2]))
    x = _vals(data, (1, data.draw(st.sampled_from([1, 3])), e), kinds)
    f = nn.TransformerEncoder(lambda: nn.TransformerEncoderLayer(e, heads, 8, dropout=0.0), n, norm=nn.LayerNorm(e))
    r = TNN.TransformerEncoder(TNN.TransformerEncoderLayer(e, heads, 8, dropout=0.0, activation="gelu",
                                                           batch_first=True, norm_first=True), n,
                               norm=TNN.LayerNorm(e), enable_nested_tensor=False)
    return Case(f, r, [x])


def c_sequential(data, kinds):
    i = data.draw(st.sampled_from([1, 5]))
    f = nn.Sequential(nn.Linear(i, 7), nn.ReLU(), nn.Linear(7, 3))
    r = TNN.Sequential(TNN.Linear(i, 7), TNN.ReLU(), TNN.Linear(7, 3))
    return Case(f, r, [_vals(data, _shape(data, 1) + (i,), kinds)])


def c_module_list(data, kinds):
    f = nn.ModuleList([nn.Linear(3, 3), nn.Tanh()])
    r = TNN.ModuleList([TNN.Linear(3, 3), TNN.Tanh()])

    def run(m, x):
        for layer in m:
            x = layer(x)
        return x
    return Case(f, r, [_vals(data, _shape(data, 1) + (3,), kinds)], call=run)


def c_loss(kind):
    def make(data, kinds):
        red = data.draw(st.sampled_from(["mean", "sum", "none"]))
        n, c = data.draw(st.sampled_from([1, 4])), data.draw(st.sampled_from([1, 5]))
        x = _vals(data, (n, c), kinds)
        if kind == "CrossEntropyLoss":
            ls = data.draw(st.sampled_from([0.0, 0.1]))
            t = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, c, n).astype(np.int64)
            return Case(nn.CrossEntropyLoss(reduction=red, label_smoothing=ls),
                        TNN.CrossEntropyLoss(reduction=red, label_smoothing=ls), [x], other=[t])
        y = _vals(data, (n, c), ("normal",))
        if kind == "MSELoss":
            return Case(nn.MSELoss(reduction=red), TNN.MSELoss(reduction=red), [x], other=[y])
        y01 = (1 / (1 + np.exp(-y))).astype(np.float32)
        return Case(nn.BCEWithLogitsLoss(reduction=red), TNN.BCEWithLogitsLoss(reduction=red), [x], other=[y01])
    return make


LAYER_CASES = {
    "Linear": c_linear, "Identity": c_identity, "Flatten": c_flatten,
    "ReLU": _act(nn.ReLU, TNN.ReLU()), "GELU": _act(nn.GELU, TNN.GELU()), "Sigmoid": _act(nn.Sigmoid, TNN.Sigmoid()),
    "Tanh": _act(nn.Tanh, TNN.Tanh()), "SiLU": _act(nn.SiLU, TNN.SiLU()),
    "Softmax": c_softmax(False), "LogSoftmax": c_softmax(True), "Dropout": c_dropout, "LayerNorm": c_layer_norm,
    "Embedding": c_embedding, "Conv2d": c_conv2d, "MaxPool2d": c_pool("max"), "AvgPool2d": c_pool("avg"),
    "AdaptiveAvgPool2d": c_pool("adaptive"), "BatchNorm1d": c_batch_norm(False), "BatchNorm2d": c_batch_norm(True),
    "RNN": c_rnn("RNN"), "LSTM": c_rnn("LSTM"), "GRU": c_rnn("GRU"),
    "MultiHeadAttention": c_mha("MultiHeadAttention"), "MultiheadAttention": c_mha("MultiheadAttention"),
    "TransformerEncoderLayer": c_encoder_layer, "TransformerEncoder": c_encoder,
    "Sequential": c_sequential, "ModuleList": c_module_list,
    "MSELoss": c_loss("MSELoss"), "CrossEntropyLoss": c_loss("CrossEntropyLoss"),
    "BCEWithLogitsLoss": c_loss("BCEWithLogitsLoss"),
}
# Not layers of their own: the base classes (exercised by every case above).
NOT_LAYERS = {"Module": "the base class", "RNNBase": "the base of RNN / LSTM / GRU (their cases)"}


def _to_fast(a, device, grad):
    t = fnn.tensor(np.ascontiguousarray(a), requires_grad=False)
    if device != "cpu":
        t = t.to(device)
    if grad:
        t.requires_grad_()
    return t


def _copy_weights(case):
    sd = {k: torch.from_numpy(np.array(v.cpu().numpy() if hasattr(v, "cpu") else v, np.float64))
          for k, v in case.fast.state_dict().items()}
    case.ref.double()
    missing = case.ref.load_state_dict(sd, strict=False)
    assert not missing.unexpected_keys, missing
    # torch-only buffers (e.g. BatchNorm's num_batches_tracked) may be missing; nothing else
    assert all("num_batches_tracked" in k for k in missing.missing_keys), missing


def run_case(case, device, data, finite):
    _copy_weights(case)
    if device != "cpu":
        case.fast.to(device)
    xs = [_to_fast(a, device, case.grads and finite) for a in case.inputs]
    others = [_to_fast(a, device, False) for a in case.other]
    try:
        out = case.outputs(case.call(case.fast, *xs, *others))
    except Exception as e:  # noqa: BLE001
        C.skip_if_no_kernel(e, device)
    rx = [torch.from_numpy(np.array(a, np.float64)).requires_grad_(case.grads and finite) for a in case.inputs]
    ro = [torch.from_numpy(a) if a.dtype == np.int64 else torch.from_numpy(np.array(a, np.float64)) for a in case.other]
    rout = case.ref_outputs(case.ref_call(case.ref, *rx, *ro))
    out, rout = _flat(out), _flat(rout)
    assert len(out) == len(rout)
    what = type(case.fast).__name__
    for o, r in zip(out, rout):
        r = r.detach().numpy()
        if not finite:
            # NaN / Inf / huge inputs: a NaN of the float64 result is NaN here, an Inf is non-finite;
            # finite results are not compared (a float32 intermediate — a sum of huge values, a
            # variance — may overflow where float64 does not: docs/RELIABILITY.md)
            got = np.asarray(o.cpu().numpy() if hasattr(o, "cpu") else o, np.float64)
            assert got.shape == r.shape, what
            assert np.isnan(got[np.isnan(r)]).all(), f"{what}: a NaN did not propagate"
            assert not np.isfinite(got[np.isinf(r)]).any(), f"{what}: an Inf became finite"
            continue
        assert_matches(o.cpu().numpy() if hasattr(o, "cpu") else o, r, rtol=1e-4,
                       atol=1e-4 * (1 + np.abs(np.nan_to_num(r, posinf=0, neginf=0)).max(initial=0)), what=what)
    if not finite or not case.grads:
        return
    gs = [data.draw(values(tuple(r.shape), kinds=("normal",))) for r in rout]
    loss_f = None
    for o, g in zip(out, gs):
        term = (o * _to_fast(g, device, False)).sum()
        loss_f = term if loss_f is None else loss_f + term
    loss_r = sum((r * torch.from_numpy(g.astype(np.float64))).sum() for r, g in zip(rout, gs))
    if not loss_r.requires_grad:
        return
    loss_f.backward()
    loss_r.backward()
    tol = lambda r: dict(rtol=2e-4, atol=2e-4 * (1 + np.abs(r).max(initial=0)))  # noqa: E731
    for x, r in zip(xs, rx):
        ref = r.grad.numpy()
        assert_matches(x.grad.cpu().numpy(), ref, what=what + " grad input", **tol(ref))
    rp = dict(case.ref.named_parameters())
    for name, p in case.fast.named_parameters():
        ref = rp[name].grad
        if ref is None:
            continue
        ref = ref.numpy()
        assert p.grad is not None, f"{what}: no gradient for parameter {name}"
        assert_matches(p.grad.cpu().numpy(), ref, what=f"{what} grad {name}", **tol(ref))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layer", sorted(LAYER_CASES))
@FUZZ
@given(data=st.data())
def test_layer(layer, device, data):
    fnn.manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    torch.manual_seed(0)
    case = LAYER_CASES[layer](data, ("normal", "denormal"))
    run_case(case, device, data, finite=True)


@pytest.mark.parametrize("layer", sorted(set(LAYER_CASES) - {"Embedding", "Identity", "Flatten", "Dropout"}))
@FUZZ
@given(data=st.data())
def test_layer_nonfinite_inputs(layer, data):
    """NaN / Inf inputs: no crash, and wherever PyTorch's float64 output is NaN / Inf, fastnn's is
    too (propagation; the finite positions are compared as above)."""
    fnn.manual_seed(0)
    case = LAYER_CASES[layer](data, ("nonfinite", "special"))
    run_case(case, "cpu", data, finite=False)


def test_every_public_layer_is_fuzzed():
    public = {n for n in getattr(nn, "__all__", dir(nn))
              if inspect.isclass(getattr(nn, n, None)) and issubclass(getattr(nn, n), nn.Module)}
    missing = sorted(public - set(LAYER_CASES) - set(NOT_LAYERS))
    assert not missing, f"public layers of fastnn.nn without a fuzz case in tests/test_fuzz_layers.py: {missing}"
    stale = sorted((set(LAYER_CASES) | set(NOT_LAYERS)) - public)
    assert not stale, f"cases for layers fastnn.nn does not have: {stale}"
