"""One small, valid call of every public op in fastnn.ops, shared by the reliability suites
(test_determinism.py, test_concurrency.py, test_memory.py, test_sanitize_smoke via tools/sanitize.sh).

``CASES[name](rng, device)`` returns a zero-argument callable that builds nothing itself
(inputs are made once, outside it) and returns the op's outputs; in-place ops (``adam_``,
``sgd_``, ``clip_grad_norm_``) copy their state inside the call so that every call starts from
the same values. Shapes are small and not multiples of any tile (odd sizes) so that vector
bodies and scalar tails both run, and cheap enough for the emulated CUDA device.

``run(call)`` turns the outputs into a tuple of NumPy arrays (None and floats included) for
bitwise comparison. ``not_on_device(exc)`` recognises the documented "not implemented on cuda"
error, so the suites pick up each CUDA kernel as it lands without edits here.
"""
from __future__ import annotations

import inspect
import numbers
import re

import numpy as np

import fastnn as fnn
from fastnn import ops

# The documented ways an op says it has no kernel on the device yet.
_NOT_ON_DEVICE = re.compile(r"not implemented on cuda|no CUDA .*kernel yet|expected a tensor on (device )?'?cpu'?")


def not_on_device(exc):
    """True when exc is an op's documented refusal of a device it has no kernel for."""
    return isinstance(exc, (RuntimeError, ValueError, TypeError)) and bool(_NOT_ON_DEVICE.search(str(exc)))


# Known defects found by these suites, reported to their owners: the test is marked xfail (not
# strict: it passes again as soon as the op is fixed) instead of turning the suite red.
KNOWN_ISSUES: dict = {}  # (op, device) -> why it fails (xfail); fixed ones are removed


def handle_unsupported(exc, name, device):
    """In a test: skip on a device without the kernel, xfail a known defect, else re-raise."""
    import pytest
    if device != "cpu" and not_on_device(exc) and (name, device) not in KNOWN_ISSUES:
        pytest.skip(f"no {device} kernel yet: {exc}")
    if (name, device) in KNOWN_ISSUES:
        pytest.xfail(KNOWN_ISSUES[(name, device)])
    raise exc


def skip_if_no_kernel(exc, device):
    """In a test of a whole model: skip while one of its layers has no kernel on `device`."""
    import pytest
    if device != "cpu" and not_on_device(exc):
        pytest.skip(f"a layer has no {device} kernel yet: {exc}")
    raise exc


def dev(a, device):
    t = fnn.from_numpy(np.array(a))  # a copy: in-place ops must not touch the case's inputs
    return t if device == "cpu" else t.to(device)


def to_numpy(out):
    """Outputs (tensor, tuple of tensors, float, None) -> tuple of NumPy values."""
    if not isinstance(out, (tuple, list)):
        out = (out,)
    res = []
    for o in out:
        if o is None or isinstance(o, numbers.Number):
            res.append(np.asarray(np.nan if o is None else o, dtype=np.float64))
        else:
            res.append(np.array(o.cpu().numpy() if hasattr(o, "cpu") else o, copy=True))
    return tuple(res)


def run(call):
    return to_numpy(call())


def bitwise_equal(a, b):
    """Same shapes, dtypes and bytes (NaN payloads included) for every output."""
    return len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
                                    for x, y in zip(a, b))


def _f(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---- cases ------------------------------------------------------------------------------------
def _unary(name):
    def make(rng, d):
        x = dev(_f(rng, 7, 33), d)
        fn = getattr(ops, name)
        return lambda: fn(x)
    return make


def _unary_backward(name):
    def make(rng, d):
        x, g = dev(_f(rng, 7, 33), d), dev(_f(rng, 7, 33), d)
        fn = getattr(ops, name)
        return lambda: fn(g, x)
    return make


def _binary(name):
    def make(rng, d):
        a, b = dev(_f(rng, 5, 1, 17), d), dev(_f(rng, 3, 17), d)
        fn = getattr(ops, name)
        return lambda: fn(a, b)
    return make


def _reduce(name):
    def make(rng, d):
        x = dev(_f(rng, 5, 17, 9), d)
        fn = getattr(ops, name)
        return lambda: fn(x, axis=1)
    return make


def _gemm(rng, d):
    a, b, bias = dev(_f(rng, 17, 33), d), dev(_f(rng, 65, 33), d), dev(_f(rng, 65), d)
    return lambda: ops.gemm(a, b, trans_b=True, bias=bias, activation="relu")


def _matmul(rng, d):
    a, b = dev(_f(rng, 2, 17, 33), d), dev(_f(rng, 33, 9), d)
    return lambda: ops.matmul(a, b)


def _matmul_backward(rng, d):
    a, b, g = dev(_f(rng, 2, 17, 33), d), dev(_f(rng, 33, 9), d), dev(_f(rng, 2, 17, 9), d)
    return lambda: ops.matmul_backward(g, a, b)


def _linear(rng, d):
    x, w, b = dev(_f(rng, 3, 5, 33), d), dev(_f(rng, 17, 33), d), dev(_f(rng, 17), d)
    return lambda: ops.linear(x, w, b, activation="gelu")


def _linear_backward(rng, d):
    x, w, g = dev(_f(rng, 3, 5, 33), d), dev(_f(rng, 17, 33), d), dev(_f(rng, 3, 5, 17), d)
    return lambda: ops.linear_backward(g, x, w, True)


def _conv2d(rng, d):
    x, w, b = dev(_f(rng, 2, 3, 9, 11), d), dev(_f(rng, 5, 3, 3, 3), d), dev(_f(rng, 5), d)
    return lambda: ops.conv2d(x, w, b, stride=1, padding=1, activation="relu")


def _conv2d_backward(rng, d):
    x, w, g = dev(_f(rng, 2, 3, 9, 11), d), dev(_f(rng, 5, 3, 3, 3), d), dev(_f(rng, 2, 5, 4, 5), d)
    return lambda: ops.conv2d_backward(g, x, w, stride=2, padding=0)


def _pool_input(rng, d):
    return dev(_f(rng, 2, 3, 9, 11), d)


def _max_pool2d(rng, d):
    x = _pool_input(rng, d)
    return lambda: ops.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)


def _max_pool2d_backward(rng, d):
    xn = _f(rng, 2, 3, 9, 11)
    x = dev(xn, d)
    _, idx = ops.max_pool2d(fnn.from_numpy(xn), 3, stride=2, padding=1, return_indices=True)
    idx = idx.to(d) if d != "cpu" else idx
    g = dev(_f(rng, *idx.shape), d)
    return lambda: ops.max_pool2d_backward(g, x, idx, 3, stride=2, padding=1)


def _avg_pool2d(rng, d):
    x = _pool_input(rng, d)
    return lambda: ops.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


def _avg_pool2d_backward(rng, d):
    x, g = _pool_input(rng, d), dev(_f(rng, 2, 3, 5, 6), d)
    return lambda: ops.avg_pool2d_backward(g, x, 3, stride=2, padding=1, count_include_pad=False)


def _adaptive_avg_pool2d(rng, d):
    x = _pool_input(rng, d)
    return lambda: ops.adaptive_avg_pool2d(x, (4, 5))


def _adaptive_avg_pool2d_backward(rng, d):
    x, g = _pool_input(rng, d), dev(_f(rng, 2, 3, 4, 5), d)
    return lambda: ops.adaptive_avg_pool2d_backward(g, x)


def _qkv(rng, d):
    return [dev(_f(rng, 1, 2, n, 8), d) for n in (9, 17, 17)]


def _attention(rng, d):
    q, k, v = _qkv(rng, d)
    return lambda: ops.attention(q, k, v, causal=True, dropout_p=0.25, seed=7, return_lse=True)


def _attention_backward(rng, d):
    q, k, v = _qkv(rng, d)
    out, lse = ops.attention(q, k, v, causal=True, dropout_p=0.25, seed=7, return_lse=True)
    g = dev(_f(rng, 1, 2, 9, 8), d)
    return lambda: ops.attention_backward(g, q, k, v, out, lse, causal=True, dropout_p=0.25, seed=7)


def _optim_state(rng, d):
    sizes = (1, 17, 129)
    return [[_f(rng, n) for n in sizes] for _ in range(4)]


def _adam_(rng, d):
    p, g, m, v = _optim_state(rng, d)
    v = [np.abs(a) for a in v]

    def call():
        ts = [[dev(a, d) for a in lst] for lst in (p, g, m, v)]
        ops.adam_(*ts, step=3, lr=1e-2, weight_decay=0.1, decoupled=True)
        return tuple(ts[0] + ts[2] + ts[3])
    return call


def _sgd_(rng, d):
    p, g, m, _ = _optim_state(rng, d)

    def call():
        tp, tg, tm = ([dev(a, d) for a in lst] for lst in (p, g, m))
        ops.sgd_(tp, tg, tm, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
        return tuple(tp + tm)
    return call


def _clip_grad_norm_(rng, d):
    _, g, _, _ = _optim_state(rng, d)

    def call():
        tg = [dev(a, d) for a in g]
        n = ops.clip_grad_norm_(tg, 0.5)
        return tuple(tg) + (n,)
    return call


def _grad_norm(rng, d):
    g = [dev(a, d) for a in _optim_state(rng, d)[1]]
    return lambda: ops.grad_norm(g, 3.0)


def _activation(rng, d):
    x = dev(_f(rng, 7, 33), d)
    return lambda: ops.activation(x, "gelu_tanh")


def _activation_backward(rng, d):
    x, g = dev(_f(rng, 7, 33), d), dev(_f(rng, 7, 33), d)
    return lambda: ops.activation_backward(g, x, "silu")


def _ce_inputs(rng, d):
    logits = dev(_f(rng, 9, 17), d)
    t = rng.integers(0, 17, 9).astype(np.int64)
    t[2] = -100
    return logits, dev(t, d)


def _cross_entropy(rng, d):
    lg, t = _ce_inputs(rng, d)
    return lambda: ops.cross_entropy(lg, t, label_smoothing=0.1)


def _cross_entropy_forward_backward(rng, d):
    lg, t = _ce_inputs(rng, d)
    return lambda: ops.cross_entropy_forward_backward(lg, t, label_smoothing=0.1)


def _cross_entropy_backward(rng, d):
    lg, t = _ce_inputs(rng, d)
    g = dev(np.float32(0.5).reshape(()), d)
    return lambda: ops.cross_entropy_backward(g, lg, t, reduction="mean")


def _bce(rng, d):
    x, t, pw = dev(_f(rng, 9, 17), d), dev(rng.random((9, 17)).astype(np.float32), d), dev(_f(rng, 17) ** 2, d)
    return x, t, pw


def _bce_fwd(rng, d):
    x, t, pw = _bce(rng, d)
    return lambda: ops.binary_cross_entropy_with_logits(x, t, pos_weight=pw)


def _bce_bwd(rng, d):
    x, t, pw = _bce(rng, d)
    g = dev(np.float32(2.0).reshape(()), d)
    return lambda: ops.binary_cross_entropy_with_logits_backward(g, x, t, pos_weight=pw)


def _mse(rng, d):
    x, t = dev(_f(rng, 9, 17), d), dev(_f(rng, 9, 17), d)
    return lambda: ops.mse_loss(x, t, reduction="sum")


def _mse_bwd(rng, d):
    x, t, g = dev(_f(rng, 9, 17), d), dev(_f(rng, 9, 17), d), dev(np.float32(1.5).reshape(()), d)
    return lambda: ops.mse_loss_backward(g, x, t, reduction="mean")


def _layer_norm(rng, d):
    x, w, b = dev(_f(rng, 5, 3, 33), d), dev(_f(rng, 33), d), dev(_f(rng, 33), d)
    return lambda: ops.layer_norm(x, w, b)


def _layer_norm_backward(rng, d):
    xn, wn, bn = _f(rng, 5, 3, 33), _f(rng, 33), _f(rng, 33)
    _, mean, rstd = ops.layer_norm(xn, wn, bn)
    x, w, g = dev(xn, d), dev(wn, d), dev(_f(rng, 5, 3, 33), d)
    mean, rstd = dev(mean.numpy(), d), dev(rstd.numpy(), d)
    return lambda: ops.layer_norm_backward(g, x, w, mean, rstd)


def _dropout(rng, d):
    x = dev(_f(rng, 7, 33), d)
    return lambda: ops.dropout(x, 0.3, 1234, 5)


def _dropout_backward(rng, d):
    g = dev(_f(rng, 7, 33), d)
    return lambda: ops.dropout_backward(g, 0.3, 1234, 5)


def _embedding(rng, d):
    idx, table = dev(rng.integers(0, 17, (5, 9)).astype(np.int64), d), dev(_f(rng, 17, 33), d)
    return lambda: ops.embedding(idx, table)


def _embedding_backward(rng, d):
    idx, g = dev(rng.integers(0, 17, (5, 9)).astype(np.int64), d), dev(_f(rng, 5, 9, 33), d)
    # CUDA embedding backward accumulates duplicate rows with atomics by default: the reliability
    # suites call its deterministic path (the public op's keyword, else the binding's argument).
    if "deterministic" in inspect.signature(ops.embedding_backward).parameters:
        return lambda: ops.embedding_backward(g, idx, 17, deterministic=True)
    return lambda: fnn._C.embedding_backward(g, idx, 17, True)


def _broadcast_to(rng, d):
    x = dev(_f(rng, 1, 17), d)
    return lambda: ops.broadcast_to(x, (5, 3, 17))


def _sum_to_shape(rng, d):
    g = dev(_f(rng, 5, 3, 17), d)
    return lambda: ops.sum_to_shape(g, (3, 1))


def _binary_backward(rng, d):
    a, b, g = dev(_f(rng, 5, 1, 17), d), dev(_f(rng, 3, 17) + 3, d), dev(_f(rng, 5, 3, 17), d)
    return lambda: ops.binary_backward(g, a, b, "div")


def _reduce_backward(name):
    def make(rng, d):
        g = dev(_f(rng, 5, 9), d)
        fn = getattr(ops, name)
        return lambda: fn(g, (5, 17, 9), axis=1)
    return make


def _max_backward(rng, d):
    xn = _f(rng, 5, 17, 9)
    _, idx = ops.max(xn, axis=1)
    g, idx = dev(_f(rng, 5, 9), d), dev(idx.numpy(), d)
    return lambda: ops.max_backward(g, idx, (5, 17, 9), axis=1)


def _batch_norm(rng, d):
    x, w, b = dev(_f(rng, 5, 3, 7, 9), d), dev(_f(rng, 3), d), dev(_f(rng, 3), d)

    def call():
        rm, rv = dev(np.zeros(3, np.float32), d), dev(np.ones(3, np.float32), d)  # updated in place
        return ops.batch_norm(x, w, b, rm, rv, training=True) + (rm, rv)
    return call


def _batch_norm_backward(rng, d):
    xn, wn = _f(rng, 5, 3, 7, 9), _f(rng, 3)
    _, mean, invstd = ops.batch_norm(xn, wn, None, training=True)
    x, w, g = dev(xn, d), dev(wn, d), dev(_f(rng, 5, 3, 7, 9), d)
    mean, invstd = dev(mean.numpy(), d), dev(invstd.numpy(), d)
    return lambda: ops.batch_norm_backward(g, x, w, mean, invstd)


def _cell(kind):
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]

    def make(rng, d):
        gx, gh, st = dev(_f(rng, 5, gates * 17), d), dev(_f(rng, 5, gates * 17), d), dev(_f(rng, 5, 17), d)
        if kind == "lstm":
            return lambda: ops.lstm_cell(gx, gh, st)
        if kind == "gru":
            return lambda: ops.gru_cell(gx, gh, st)
        return lambda: ops.rnn_cell(gx, gh)
    return make


def _cell_backward(kind):
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]

    def make(rng, d):
        gxn, ghn, stn = _f(rng, 5, gates * 17), _f(rng, 5, gates * 17), _f(rng, 5, 17)
        gh = dev(_f(rng, 5, 17), d)
        if kind == "lstm":
            h, c, saved = (dev(t.numpy(), d) for t in ops.lstm_cell(gxn, ghn, stn))
            gc, cp = dev(_f(rng, 5, 17), d), dev(stn, d)
            return lambda: ops.lstm_cell_backward(gh, gc, saved, cp, c)
        if kind == "gru":
            _, saved = ops.gru_cell(gxn, ghn, stn)
            saved, hp = dev(saved.numpy(), d), dev(stn, d)
            return lambda: ops.gru_cell_backward(gh, saved, hp)
        h = dev(ops.rnn_cell(gxn, ghn).numpy(), d)
        return lambda: ops.rnn_cell_backward(gh, h)
    return make


def _rnn_layer_inputs(rng, d):
    """LSTM, two directions, lengths: (xprojs, w_hh, b_hh, h0, c0, lengths) on d."""
    T_, B, H = 5, 3, 9
    xp = [dev(_f(rng, T_, B, 4 * H), d) for _ in range(2)]
    w = [dev(_f(rng, 4 * H, H) * 0.3, d) for _ in range(2)]
    b = [dev(_f(rng, 4 * H), d) for _ in range(2)]
    h0, c0 = dev(_f(rng, 2, B, H), d), dev(_f(rng, 2, B, H), d)
    return xp, w, b, h0, c0, dev(np.array([5, 2, 4], np.int64), d)


def _rnn_layer_forward(rng, d):
    xp, w, b, h0, c0, lengths = _rnn_layer_inputs(rng, d)

    def call():
        y, hs, cs, saved = ops.rnn_layer_forward("lstm", xp, w, b, h0, c0, lengths)
        return (y,) + tuple(hs) + tuple(cs) + tuple(saved)
    return call


def _rnn_layer_backward(rng, d):
    xp, w, b, h0, c0, lengths = _rnn_layer_inputs(rng, d)
    _, hs, cs, saved = ops.rnn_layer_forward("lstm", xp, w, b, h0, c0, lengths)
    gy, ghn, gcn = dev(_f(rng, 5, 3, 18), d), dev(_f(rng, 2, 3, 9), d), dev(_f(rng, 2, 3, 9), d)

    def call():
        dxp, dw, db, dh0, dc0 = ops.rnn_layer_backward("lstm", gy, ghn, gcn, w, hs, cs, saved, lengths, True)
        return tuple(dxp) + tuple(dw) + tuple(db) + (dh0, dc0)
    return call


CASES = {
    "gemm": _gemm, "matmul": _matmul, "linear": _linear, "matmul_backward": _matmul_backward,
    "linear_backward": _linear_backward,
    "conv2d": _conv2d, "conv2d_backward": _conv2d_backward, "max_pool2d": _max_pool2d,
    "max_pool2d_backward": _max_pool2d_backward, "avg_pool2d": _avg_pool2d, "avg_pool2d_backward": _avg_pool2d_backward,
    "adaptive_avg_pool2d": _adaptive_avg_pool2d, "adaptive_avg_pool2d_backward": _adaptive_avg_pool2d_backward,
    "attention": _attention, "attention_backward": _attention_backward,
    "adam_": _adam_, "sgd_": _sgd_, "clip_grad_norm_": _clip_grad_norm_, "grad_norm": _grad_norm,
    "activation": _activation, "activation_backward": _activation_backward,
    "softmax_backward": _unary_backward("softmax_backward"),  # (grad, y): same form
    "log_softmax_backward": _unary_backward("log_softmax_backward"),
    "cross_entropy": _cross_entropy, "cross_entropy_forward_backward": _cross_entropy_forward_backward,
    "cross_entropy_backward": _cross_entropy_backward,
    "binary_cross_entropy_with_logits": _bce_fwd, "binary_cross_entropy_with_logits_backward": _bce_bwd,
    "mse_loss": _mse, "mse_loss_backward": _mse_bwd, "layer_norm": _layer_norm,
    "layer_norm_backward": _layer_norm_backward, "dropout": _dropout, "dropout_backward": _dropout_backward,
    "embedding": _embedding, "embedding_backward": _embedding_backward, "broadcast_to": _broadcast_to,
    "sum_to_shape": _sum_to_shape, "binary_backward": _binary_backward, "max_backward": _max_backward,
    "sum_backward": _reduce_backward("sum_backward"), "mean_backward": _reduce_backward("mean_backward"),
}
if hasattr(ops, "batch_norm"):
    CASES.update(batch_norm=_batch_norm, batch_norm_backward=_batch_norm_backward)
for _k in ("lstm", "gru", "rnn"):
    if hasattr(ops, _k + "_cell"):
        CASES[_k + "_cell"], CASES[_k + "_cell_backward"] = _cell(_k), _cell_backward(_k)
if hasattr(ops, "rnn_layer_forward"):
    CASES.update(rnn_layer_forward=_rnn_layer_forward, rnn_layer_backward=_rnn_layer_backward)
for _n in ("relu", "gelu", "sigmoid", "tanh", "silu", "softmax", "log_softmax"):
    CASES[_n] = _unary(_n)
for _n in ("relu_backward", "gelu_backward", "sigmoid_backward", "tanh_backward", "silu_backward"):
    CASES[_n] = _unary_backward(_n)
for _n in ("add", "sub", "mul", "div"):
    CASES[_n] = _binary(_n)
for _n in ("sum", "mean", "max"):
    CASES[_n] = _reduce(_n)


def public_ops():
    """Every public callable of fastnn.ops (its __all__ or, failing that, its non-underscore functions)."""
    names = getattr(ops, "__all__", None) or [n for n in dir(ops) if not n.startswith("_")]
    return sorted(n for n in names if callable(getattr(ops, n, None)) and not isinstance(getattr(ops, n), type))


def make(name, device, seed=0):
    """The zero-argument call of case `name` on `device` (inputs drawn from a seeded generator)."""
    return CASES[name](np.random.default_rng(seed), device)


# ---- a short training run (determinism, resume, concurrency) -----------------------------------
def tiny_model(device="cpu", seed=0):
    """Linear-GELU-Dropout-LayerNorm-Linear: init, dropout seeds and the data order all come from
    fastnn's one generator (fastnn.manual_seed)."""
    from fastnn import nn
    fnn.manual_seed(seed)
    m = nn.Sequential(nn.Linear(12, 33), nn.GELU(), nn.Dropout(0.1), nn.LayerNorm(33), nn.Linear(33, 5))
    return m.to(device) if device != "cpu" else m


def tiny_data(device="cpu"):
    rng = np.random.default_rng(99)
    x = rng.standard_normal((64, 12)).astype(np.float32)
    y = (np.abs(x[:, :5]).argmax(1)).astype(np.int64)
    return dev(x, device), dev(y, device)


def train_steps(model, opt, x, y, steps, batch=16):
    """`steps` AdamW steps on minibatches drawn from fastnn's generator; returns the losses
    (float32 values, compared bitwise)."""
    from fastnn import random as frandom
    from fastnn.nn import functional as F
    losses = []
    n = int(x.shape[0])
    for _ in range(steps):
        idx = frandom.generator().choice(n, batch, replace=False)
        xb, yb = x[fnn.from_numpy(idx)], y[fnn.from_numpy(idx)]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(np.float32(loss.item()))
    return np.array(losses, np.float32)


def params_bytes(model):
    return [np.array(p.cpu().numpy()).tobytes() for p in model.parameters()]
