"""DLPack everywhere: every public op of fastnn.ops accepts any DLPack producer. Each op is
called once with NumPy arrays and once with PyTorch tensors (and JAX arrays when jax is
installed) holding the same values; the results must be identical (same kernels, same
inputs: bitwise), and in-place ops must update the producer's own memory."""
from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

import fastnn
from fastnn import ops

torch = pytest.importorskip("torch")

R = np.random.default_rng(0)


def f32(*shape, positive=False):
    a = R.standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.5 if positive else a


X, Y, ROW, G = f32(3, 5), f32(3, 5), f32(5), f32(3, 5)
T01 = (R.random((3, 5)) > 0.5).astype(np.float32)
IMG, W, B = f32(2, 3, 7, 7), f32(4, 3, 3, 3), f32(4)
Q, K, V, GO = f32(1, 2, 5, 8), f32(1, 2, 6, 8), f32(1, 2, 6, 8), f32(1, 2, 5, 8)
OUT, LSE = (t.numpy() for t in ops.attention(Q, K, V, return_lse=True))
TGT = np.array([0, 4, 2], np.int64)
IDX = np.array([1, 0, 9, 1], np.int64)
TABLE = f32(10, 5)
LN_OUT = [t.numpy() for t in ops.layer_norm(X, ROW, ROW)]
MAX_OUT = [t.numpy() for t in ops.max(X, axis=1)]
POOL_OUT = [t.numpy() for t in ops.max_pool2d(IMG, 2, return_indices=True)]
ONE = np.ones((), np.float32)  # the upstream gradient of a reduced loss
# Recurrent cells (batch 3, hidden 2) and one GRU layer over 4 steps; batch norm over IMG.
GX4, GH4, GX3, GH3, H2, H2B = f32(3, 8), f32(3, 8), f32(3, 6), f32(3, 6), f32(3, 2), f32(3, 2)
LSTM_OUT = [t.numpy() for t in ops.lstm_cell(GX4, GH4, H2)]
GRU_OUT = [t.numpy() for t in ops.gru_cell(GX3, GH3, H2)]
RNN_H = ops.rnn_cell(GX3[:, :2].copy(), GH3[:, :2].copy()).numpy()
XPROJ, WHH, GY = f32(4, 3, 6), f32(6, 2), f32(4, 3, 2)
_y, _hs, _cs, _saved = ops.rnn_layer_forward("gru", [XPROJ], [WHH])
GRU_HS, GRU_SAVED = [h.numpy() for h in _hs], [t.numpy() for t in _saved]
C3 = f32(3)
BN_OUT = [t.numpy() for t in ops.batch_norm(IMG, C3, C3)]


def inplace(arrays, T):
    """Fresh copies of the arrays as producers of type T (the op mutates them)."""
    return [T(a.copy()) for a in arrays]


# Fixed inputs of the cases (each case must see the same values with every producer).
A_2x3x2x2 = f32(2, 3, 2, 2)
A_2x3x3x3 = f32(2, 3, 3, 3)
A_2x4x5x5 = f32(2, 4, 5, 5)
A_3 = f32(3)
A_3x3 = f32(3, 3)
A_4x5 = f32(4, 5)
A_5 = f32(5)


# name -> fn(T): calls the op with every array argument passed through T; returns what to compare.
CASES = {
    "activation": lambda T: ops.activation(T(X), "gelu"),
    "activation_backward": lambda T: ops.activation_backward(T(G), T(X), "gelu"),
    "adaptive_avg_pool2d": lambda T: ops.adaptive_avg_pool2d(T(IMG), 2),
    "adaptive_avg_pool2d_backward": lambda T: ops.adaptive_avg_pool2d_backward(T(A_2x3x2x2), T(IMG)),
    "add": lambda T: ops.add(T(X), T(ROW)),
    "sub": lambda T: ops.sub(T(X), T(ROW)),
    "mul": lambda T: ops.mul(T(X), T(ROW)),
    "div": lambda T: ops.div(T(X), T(ROW * 0 + 2)),
    "binary_backward": lambda T: ops.binary_backward(T(G), T(X), T(ROW), "mul"),
    "broadcast_to": lambda T: ops.broadcast_to(T(ROW), (3, 5)),
    "attention": lambda T: ops.attention(T(Q), T(K), T(V), causal=True, return_lse=True),
    "attention_backward": lambda T: ops.attention_backward(T(GO), T(Q), T(K), T(V), T(OUT), T(LSE)),
    "avg_pool2d": lambda T: ops.avg_pool2d(T(IMG), 2),
    "avg_pool2d_backward": lambda T: ops.avg_pool2d_backward(T(A_2x3x3x3), T(IMG), 2),
    "max_pool2d": lambda T: ops.max_pool2d(T(IMG), 2, return_indices=True),
    "max_pool2d_backward": lambda T: ops.max_pool2d_backward(T(A_2x3x3x3), T(IMG), T(POOL_OUT[1]), 2),
    "binary_cross_entropy_with_logits": lambda T: ops.binary_cross_entropy_with_logits(T(X), T(T01)),
    "binary_cross_entropy_with_logits_backward":
        lambda T: ops.binary_cross_entropy_with_logits_backward(T(ONE), T(X), T(T01)),
    "conv2d": lambda T: ops.conv2d(T(IMG), T(W), T(B), padding=1),
    "conv2d_backward": lambda T: ops.conv2d_backward(T(A_2x4x5x5), T(IMG), T(W)),
    "cross_entropy": lambda T: ops.cross_entropy(T(X), T(TGT)),
    "cross_entropy_backward": lambda T: ops.cross_entropy_backward(T(ONE), T(X), T(TGT)),
    "cross_entropy_forward_backward": lambda T: ops.cross_entropy_forward_backward(T(X), T(TGT)),
    "dropout": lambda T: ops.dropout(T(X), 0.5, 123),
    "dropout_backward": lambda T: ops.dropout_backward(T(G), 0.5, 123),
    "embedding": lambda T: ops.embedding(T(IDX), T(TABLE)),
    "embedding_backward": lambda T: ops.embedding_backward(T(A_4x5), T(IDX), 10),
    "gelu": lambda T: ops.gelu(T(X)),
    "gelu_backward": lambda T: ops.gelu_backward(T(G), T(X)),
    "gemm": lambda T: ops.gemm(T(X), T(Y), trans_b=True, bias=T(A_3)),
    "matmul": lambda T: ops.matmul(T(X), T(Y.T.copy())),
    "matmul_backward": lambda T: ops.matmul_backward(T(A_3x3), T(X), T(Y.T.copy())),
    "linear": lambda T: ops.linear(T(X), T(Y), T(A_3)),
    "linear_backward": lambda T: ops.linear_backward(T(A_3x3), T(X), T(Y)),
    "layer_norm": lambda T: ops.layer_norm(T(X), T(ROW), T(ROW)),
    "layer_norm_backward": lambda T: ops.layer_norm_backward(T(G), T(X), T(ROW), T(LN_OUT[1]), T(LN_OUT[2])),
    "log_softmax": lambda T: ops.log_softmax(T(X)),
    "log_softmax_backward": lambda T: ops.log_softmax_backward(T(G), T(X)),
    "softmax": lambda T: ops.softmax(T(X)),
    "softmax_backward": lambda T: ops.softmax_backward(T(G), T(X)),
    "max": lambda T: ops.max(T(X), axis=1),
    "max_backward": lambda T: ops.max_backward(T(A_3), T(MAX_OUT[1]), (3, 5), axis=1),
    "mean": lambda T: ops.mean(T(X), axis=1),
    "mean_backward": lambda T: ops.mean_backward(T(A_3), (3, 5), axis=1),
    "sum": lambda T: ops.sum(T(X), axis=0),
    "sum_backward": lambda T: ops.sum_backward(T(A_5), (3, 5), axis=0),
    "sum_to_shape": lambda T: ops.sum_to_shape(T(X), (1, 5)),
    "mse_loss": lambda T: ops.mse_loss(T(X), T(Y)),
    "mse_loss_backward": lambda T: ops.mse_loss_backward(T(ONE), T(X), T(Y)),
    "relu": lambda T: ops.relu(T(X)),
    "relu_backward": lambda T: ops.relu_backward(T(G), T(X)),
    "sigmoid": lambda T: ops.sigmoid(T(X)),
    "sigmoid_backward": lambda T: ops.sigmoid_backward(T(G), T(X)),
    "silu": lambda T: ops.silu(T(X)),
    "silu_backward": lambda T: ops.silu_backward(T(G), T(X)),
    "tanh": lambda T: ops.tanh(T(X)),
    "tanh_backward": lambda T: ops.tanh_backward(T(G), T(X)),
    "grad_norm": lambda T: ops.grad_norm([T(G), T(ROW)]),
    "lstm_cell": lambda T: ops.lstm_cell(T(GX4), T(GH4), T(H2)),
    "lstm_cell_backward":
        lambda T: ops.lstm_cell_backward(T(H2B), T(H2B), T(LSTM_OUT[2]), T(H2), T(LSTM_OUT[1])),
    "gru_cell": lambda T: ops.gru_cell(T(GX3), T(GH3), T(H2)),
    "gru_cell_backward": lambda T: ops.gru_cell_backward(T(H2B), T(GRU_OUT[1]), T(H2)),
    "rnn_cell": lambda T: ops.rnn_cell(T(GX3[:, :2]), T(GH3[:, :2])),
    "rnn_cell_backward": lambda T: ops.rnn_cell_backward(T(H2B), T(RNN_H)),
    "rnn_layer_forward": lambda T: ops.rnn_layer_forward("gru", [T(XPROJ)], [T(WHH)]),
    "rnn_layer_backward": lambda T: ops.rnn_layer_backward("gru", T(GY), T(H2B[None]), None, [T(WHH)],
                                                           [T(h) for h in GRU_HS], None, [T(t) for t in GRU_SAVED]),
    "batch_norm": lambda T: ops.batch_norm(T(IMG), T(C3), T(C3)),
    "batch_norm_backward": lambda T: ops.batch_norm_backward(T(IMG), T(IMG), T(C3), T(BN_OUT[1]), T(BN_OUT[2])),
}


def _adam(T):
    p, m, v = inplace([X, np.zeros_like(X), np.zeros_like(X)], T)
    ops.adam_([p], [T(G)], [m], [v], step=1, lr=0.1)
    return p, m, v


def _sgd(T):
    p, buf = inplace([X, np.zeros_like(X)], T)
    ops.sgd_([p], [T(G)], [buf], lr=0.1, momentum=0.9, first_step=True)
    return p, buf


def _clip(T):
    (g,) = inplace([G], T)
    return ops.clip_grad_norm_([g], 0.5), g


# In-place ops: what is compared is the producer's own memory after the call.
INPLACE = {"adam_": _adam, "sgd_": _sgd, "clip_grad_norm_": _clip}

# Every public op must have a case: test_new_ops_have_a_case fails for an op added without one.
KNOWN = set(CASES) | set(INPLACE)


def public_ops():
    return sorted(n for n in dir(ops) if not n.startswith("_") and callable(getattr(ops, n)))


def as_numpy(r):
    if isinstance(r, (tuple, list)):
        return [as_numpy(x) for x in r]
    if r is None:
        return None
    if isinstance(r, fastnn.Tensor):
        return r.numpy()
    if isinstance(r, torch.Tensor):
        return r.numpy()
    if hasattr(r, "__dlpack__") and not isinstance(r, np.ndarray):
        return np.asarray(r)
    return r


def assert_same(a, b):
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b or (a != a and b != b)


def test_the_case_table_covers_the_public_ops():
    missing = sorted(KNOWN - set(public_ops()))
    assert not missing, f"cases for ops that no longer exist: {missing}"
    assert len(KNOWN) >= 70


def test_new_ops_have_a_case():
    new = sorted(set(public_ops()) - KNOWN)
    assert not new, f"public ops without a DLPack case in tests/test_dlpack_interop.py: {new}"


def _torch_from_numpy(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("name", sorted(CASES) + sorted(INPLACE))
def test_op_accepts_torch_tensors(name):
    fn = CASES.get(name) or INPLACE[name]
    want = as_numpy(fn(lambda a: a))
    got = as_numpy(fn(_torch_from_numpy))
    assert_same(want, got)


def test_torch_inputs_are_not_copied():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)[:, 1:]  # a strided view
    f = fastnn.from_dlpack(t)
    assert f.shape == (3, 3) and np.asarray(f).__array_interface__["data"][0] == t.data_ptr()
    t[0, 0] = 100.0
    assert np.asarray(f)[0, 0] == 100.0
    with pytest.raises(Exception, match="detach|grad"):
        ops.relu(torch.ones(3, requires_grad=True))  # torch refuses to export it; detach first


def test_results_go_back_to_torch_zero_copy():
    out = ops.relu(X)
    t = torch.from_dlpack(out)
    assert t.data_ptr() == np.asarray(out).__array_interface__["data"][0]
    np.testing.assert_array_equal(t.numpy(), np.maximum(X, 0))


# ---- JAX (only when installed; the README's example) -----------------------------------------------
README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_ops_accept_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    for name in ("gemm", "conv2d", "attention", "layer_norm", "cross_entropy", "softmax"):
        assert_same(as_numpy(CASES[name](lambda a: a)), as_numpy(CASES[name](jnp.asarray)))


@pytest.mark.skipif(not README.exists(), reason="README.md not next to the tests")
def test_readme_jax_example():
    text = README.read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "import jax" in b]
    assert len(blocks) == 1, "README.md lost its JAX example"
    pytest.importorskip("jax")
    exec(compile(blocks[0], "README.md (JAX example)", "exec"), {})
