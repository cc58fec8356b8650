"""nn layers and losses: forward and gradients vs float64 NumPy references (finite
differences), Module API (state_dict, repr, modes), initialisation statistics."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

import fastnn as fnn
from fastnn import nn
from fastnn.nn import functional as F
from gradcheck_util import assert_close, check_module, fd_grads, tol


# ---- float64 references ------------------------------------------------------------------------
def ref_linear(x, w, b):
    return x @ w.T + b


def _win(x, kh, kw, s, p, value=0.0):
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=value)
    w = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return w[:, :, ::s, ::s]


def ref_conv(x, w, b, s=1, p=0):
    win = _win(x, w.shape[2], w.shape[3], s, p)
    return np.einsum("ncijkl,ockl->noij", win, w) + b[None, :, None, None]


def ref_gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def ref_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def ref_layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def ref_mha(x, w_in, b_in, w_out, b_out, heads, mask=None):
    bsz, n, e = x.shape
    d = e // heads
    qkv = (x @ w_in.T + b_in).reshape(bsz, n, 3, heads, d)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    if mask is not None:
        s = np.where(mask[:, None, None, :], -np.inf, s)
    o = ref_softmax(s) @ v
    return o.transpose(0, 2, 1, 3).reshape(bsz, n, e) @ w_out.T + b_out


# ---- layers --------------------------------------------------------------------------------------
def test_linear(rng, simd_level, threads):
    fnn.manual_seed(0)
    m = nn.Linear(5, 3)
    check_module(m, lambda x, w, b: ref_linear(x, w, b), rng.standard_normal((4, 5)), k=5)


def test_linear_input_without_grad(rng):
    """First-layer path: only grad_weight / grad_bias are computed (no grad_input GEMM)."""
    m = nn.Linear(6, 4)
    check_module(m, lambda x, w, b: ref_linear(x, w, b), rng.standard_normal((5, 6)), k=6, grad_x=False)
    m.zero_grad()
    check_module(m, lambda x, w, b: ref_linear(x, w, b), rng.standard_normal((2, 3, 6)), k=6, grad_x=False)


def test_linear_3d_input_no_bias(rng):
    m = nn.Linear(4, 2, bias=False)
    check_module(m, lambda x, w: x @ w.T, rng.standard_normal((2, 3, 4)), k=4)


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_conv2d(stride, padding, rng):
    m = nn.Conv2d(2, 3, 3, stride=stride, padding=padding)
    check_module(m, lambda x, w, b: ref_conv(x, w, b, stride, padding), rng.standard_normal((2, 2, 5, 5)), k=18)


def test_pools(rng):
    x = rng.permutation(2 * 2 * 6 * 6).reshape(2, 2, 6, 6) / 10.0  # distinct values: max is differentiable
    check_module(nn.MaxPool2d(2), lambda a: _win(a, 2, 2, 2, 0).max(axis=(-1, -2)), x, k=1)
    check_module(nn.MaxPool2d(3, 2, 1), lambda a: _win(a, 3, 3, 2, 1, -np.inf).max(axis=(-1, -2)), x, k=1)
    check_module(nn.AvgPool2d(2), lambda a: _win(a, 2, 2, 2, 0).mean(axis=(-1, -2)), x, k=4)
    check_module(nn.AdaptiveAvgPool2d(1), lambda a: a.mean(axis=(2, 3), keepdims=True), x, k=36)
    check_module(nn.AdaptiveAvgPool2d((3, 2)), lambda a: a.reshape(2, 2, 3, 2, 2, 3).mean(axis=(3, 5)), x, k=6)


@pytest.mark.parametrize("name", ["relu", "gelu", "sigmoid", "tanh", "silu"])
def test_activations(name, rng):
    x = rng.standard_normal((3, 7))
    x = np.where(np.abs(x) < 1e-3, 0.5, x)  # relu's kink: FD across 0 is meaningless
    mod = {"relu": nn.ReLU(), "gelu": nn.GELU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "silu": nn.SiLU()}[name]
    ref = {"relu": lambda a: np.maximum(a, 0), "gelu": ref_gelu, "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
           "tanh": np.tanh, "silu": lambda a: a / (1 + np.exp(-a))}[name]
    check_module(mod, ref, x, k=4)


def test_softmax_log_softmax(rng):
    x = rng.standard_normal((3, 5))
    check_module(nn.Softmax(-1), ref_softmax, x, k=5)
    check_module(nn.Softmax(0), lambda a: ref_softmax(a, 0), x, k=5)
    check_module(nn.LogSoftmax(-1), lambda a: np.log(ref_softmax(a)), x, k=5)


def test_layer_norm(rng):
    fnn.manual_seed(1)
    m = nn.LayerNorm(6)
    with fnn.no_grad():  # non-trivial affine parameters
        nn.init.normal_(m.weight)
        nn.init.normal_(m.bias)
    check_module(m, ref_layer_norm, rng.standard_normal((2, 3, 6)), k=6)


def test_embedding(rng):
    m = nn.Embedding(7, 3, padding_idx=0)
    np.testing.assert_array_equal(m.weight.numpy()[0], 0)
    idx = np.array([[1, 3, 3], [0, 6, 1]])
    out = m(fnn.tensor(idx))
    np.testing.assert_array_equal(out.numpy(), m.weight.numpy()[idx])
    r = rng.standard_normal(out.shape)
    (out * fnn.tensor(r)).sum().backward()
    want = np.zeros((7, 3))
    np.add.at(want, idx.reshape(-1), r.reshape(-1, 3))
    want[0] = 0  # padding row gets no gradient
    assert_close(m.weight.grad.numpy(), want, tol(4))
    with pytest.raises(IndexError, match="input|indices"):
        m(fnn.tensor(np.array([7])))


def test_dropout_train_eval(rng):
    fnn.manual_seed(3)
    m = nn.Dropout(0.25)
    x = fnn.tensor(np.ones((64, 64), np.float32), requires_grad=True)
    y = m(x)
    kept = y.numpy() != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()  # the backward regenerates the same mask from the seed
    np.testing.assert_array_equal(x.grad.numpy() != 0, kept)
    m.eval()
    assert m(x) is x
    fnn.manual_seed(3)
    np.testing.assert_array_equal(nn.Dropout(0.25)(x).numpy(), y.numpy())  # same seed, same mask


@pytest.mark.parametrize("masked", [False, True])
def test_multi_head_attention(masked, rng):
    fnn.manual_seed(2)
    m = nn.MultiHeadAttention(8, 2)
    with fnn.no_grad():
        nn.init.normal_(m.in_proj_bias, std=0.1)
        nn.init.normal_(m.out_proj.bias, std=0.1)
    mask = np.array([[False, False, True, True], [False, False, False, False]]) if masked else None
    extra = (fnn.tensor(mask),) if masked else ()
    check_module(m, lambda x, wi, bi, wo, bo: ref_mha(x, wi, bi, wo, bo, 2, mask), rng.standard_normal((2, 4, 8)),
                 k=16, param_names=["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"],
                 extra_inputs=extra)


def test_transformer_encoder_layer(rng):
    fnn.manual_seed(4)
    m = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0)
    names = ["self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
             "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
             "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]
    assert sorted(names) == sorted(n for n, _ in m.named_parameters())

    def ref(x, wi, bi, wo, bo, w1, b1, w2, b2, g1, be1, g2, be2):
        x = x + ref_mha(ref_layer_norm(x, g1, be1), wi, bi, wo, bo, 2)
        return x + ref_linear(ref_gelu(ref_linear(ref_layer_norm(x, g2, be2), w1, b1)), w2, b2)
    check_module(m, ref, rng.standard_normal((2, 3, 8)), k=24, param_names=names)


def test_sequential_mlp(rng):
    fnn.manual_seed(5)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    check_module(m, lambda x, w1, b1, w2, b2: ref_linear(np.tanh(ref_linear(x, w1, b1)), w2, b2),
                 rng.standard_normal((3, 4)), k=6, param_names=names)


def test_cnn_flatten_chain(rng):
    fnn.manual_seed(6)
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    x = rng.standard_normal((2, 1, 4, 4))

    def ref(a, cw, cb, lw, lb):
        h = np.maximum(ref_conv(a, cw, cb, 1, 1), 0)
        h = _win(h, 2, 2, 2, 0).mean(axis=(-1, -2)).reshape(2, -1)
        return ref_linear(h, lw, lb)
    check_module(m, ref, x, k=9, param_names=["0.weight", "0.bias", "4.weight", "4.bias"])


# ---- losses --------------------------------------------------------------------------------------
def _check_loss(fast, ref, x, y, k):
    xt = fnn.tensor(x, requires_grad=True)
    loss = fast(xt, fnn.tensor(y) if not isinstance(y, fnn.Tensor) else y)
    want = ref(x, y)
    assert_close(loss.numpy(), want, tol(k))
    r = np.random.default_rng(0).standard_normal(np.shape(want))
    (loss * fnn.tensor(r)).sum().backward()
    g, = fd_grads(lambda a: ref(a, y), [x], r)[:1]
    assert_close(xt.grad.numpy(), g, tol(k, 4.0))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses(reduction, rng):
    x = rng.standard_normal((5, 4))
    y = rng.integers(0, 4, 5)
    red = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction]

    def ce(a, t):
        lp = np.log(ref_softmax(a))
        return red(-lp[np.arange(len(t)), t])
    _check_loss(nn.CrossEntropyLoss(reduction), ce, x, y, 4)
    yb = (rng.random((5, 4)) > 0.5).astype(np.float32)
    _check_loss(nn.BCEWithLogitsLoss(reduction),
                lambda a, t: red(np.maximum(a, 0) - a * t + np.log1p(np.exp(-np.abs(a)))), x, yb, 4)
    yr = rng.standard_normal((5, 4)).astype(np.float32)
    _check_loss(nn.MSELoss(reduction), lambda a, t: red((a - t) ** 2), x, yr, 20)


def test_loss_errors():
    x = fnn.tensor(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(x, fnn.tensor(np.zeros(2, np.int64)))
    with pytest.raises(TypeError, match="target"):
        F.cross_entropy(x, fnn.tensor(np.zeros(3, np.float32)))
    with pytest.raises(IndexError, match="target"):
        F.cross_entropy(x, fnn.tensor(np.array([0, 1, 4])))
    with pytest.raises(ValueError, match="target"):
        F.mse_loss(x, fnn.tensor(np.zeros((3, 5), np.float32)))
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss("avg")


def test_zero_size_batch():
    m = nn.Linear(3, 2)
    out = m(fnn.tensor(np.zeros((0, 3), np.float32), requires_grad=True))
    assert tuple(out.shape) == (0, 2)
    out.sum().backward()
    np.testing.assert_array_equal(m.weight.grad.numpy(), 0)


# ---- Module API ------------------------------------------------------------------------------------
def _mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))


def test_state_dict_round_trip():
    fnn.manual_seed(0)
    a = _mlp()
    fnn.manual_seed(1)
    b = _mlp()
    sd = a.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert not np.array_equal(b[0].weight.numpy(), a[0].weight.numpy())
    b.load_state_dict(sd)
    x = fnn.tensor(np.ones((2, 4), np.float32))
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_errors():
    m = _mlp()
    sd = m.state_dict()
    bad = dict(sd)
    bad["0.weight"] = fnn.tensor(np.zeros((8, 5), np.float32))
    with pytest.raises(ValueError, match=r"'0\.weight'.*\(8, 4\).*\(8, 5\)"):
        m.load_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "3.bias"}
    with pytest.raises(ValueError, match="missing keys: '3.bias'"):
        m.load_state_dict(missing)
    extra = dict(sd, extra=sd["3.bias"])
    with pytest.raises(ValueError, match="unexpected keys: 'extra'"):
        m.load_state_dict(extra)
    assert m.load_state_dict(missing, strict=False) == (["3.bias"], [])


def test_module_api():
    m = _mlp()
    assert len(list(m.parameters())) == 4 and m.num_parameters() == 4 * 8 + 8 + 8 * 3 + 3
    assert [n for n, _ in m.named_children()] == ["0", "1", "2", "3"]
    assert len(list(m.modules())) == 5
    assert all(isinstance(p, nn.Parameter) for p in m.parameters())
    assert not isinstance(fnn.tensor([1.0]), nn.Parameter)
    m.eval()
    assert not m[2].training
    m.train()
    assert m[2].training
    assert repr(m) == ("Sequential(\n  (0): Linear(in_features=4, out_features=8, bias=True)\n  (1): ReLU()\n"
                       "  (2): Dropout(p=0.1)\n  (3): Linear(in_features=8, out_features=3, bias=True)\n)")
    m.to("cpu")
    out = m(fnn.tensor(np.ones((1, 4), np.float32))).sum()
    out.backward()
    assert m[0].weight.grad is not None
    m.zero_grad()
    assert m[0].weight.grad is None


def test_default_init_bounds():
    fnn.manual_seed(0)
    lin = nn.Linear(100, 50)
    w = lin.weight.numpy()
    b = 1 / math.sqrt(100)  # torch: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(w).max() <= b and np.abs(w).max() > 0.95 * b
    assert abs(w.std() - b / math.sqrt(3)) < 0.05 * b
    t = fnn.tensor(np.zeros((64, 32), np.float32))
    nn.init.xavier_uniform_(t)
    assert np.abs(t.numpy()).max() <= math.sqrt(6 / 96)
    nn.init.kaiming_normal_(t, nonlinearity="relu")
    assert abs(t.numpy().std() - math.sqrt(2 / 32)) < 0.02


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="num_heads"):
        nn.MultiHeadAttention(8, 3)
    with pytest.raises(ValueError, match="x"):
        nn.MultiHeadAttention(8, 2)(fnn.tensor(np.zeros((2, 3, 4), np.float32)))
    with pytest.raises(ValueError, match="weight"):
        nn.Linear(3, 2)(fnn.tensor(np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(1.5)


def test_training_step_on_device(device, rng):
    """Module.to(device) + forward/backward give the CPU gradients on every device (the CUDA
    emulator when no GPU is visible). (The fused optimizer kernels are CPU-only so far.)"""
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    fnn.manual_seed(0)
    models, init_state = [], None
    for dev in ("cpu", device):
        m = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3))
        if init_state is None:
            init_state = {k: v.clone() for k, v in m.state_dict().items()}
        m.load_state_dict(init_state)
        m.to(dev)
        assert all(str(p.device).startswith(dev) for p in m.parameters())
        loss = F.cross_entropy(m(fnn.tensor(x).to(dev)), fnn.tensor(y).to(dev))
        loss.backward()
        models.append(m)
    for (n, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        assert str(b.grad.device).startswith(device)
        assert_close(b.grad.cpu().numpy(), a.grad.numpy(), tol(8, 4.0), what=n)


def test_cross_entropy_label_smoothing_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((6, 5)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    xt = fnn.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xt, fnn.tensor(y), label_smoothing=0.1)
    loss.backward()
    tx = torch.tensor(x, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(y), label_smoothing=0.1)
    tl.backward()
    assert_close(loss.numpy(), tl.detach().numpy(), tol(5))
    assert_close(xt.grad.numpy(), tx.grad.numpy(), tol(5))
