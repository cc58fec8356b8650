"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` with PyTorch's constructor arguments, parameter
names, shapes and initialisation.

The whole stack (all layers and directions) is one autograd node: its forward runs, per layer,
the input projection of the whole sequence as one GEMM per direction (``_C.linear``), then the
recurrence in C++ (``fastnn.ops.rnn_layer_forward``: per step one recurrent GEMM + one fused
cell kernel); its backward runs the layers in reverse (``rnn_layer_backward`` = BPTT, then
``linear_backward`` for the input weights). The node's output is one flat tensor
``[output | h_n | c_n]``; the returned tensors are differentiable views of it, so a loss on any
of them (or all) back-propagates through the one node.

Variable lengths: ``forward(input, hx, lengths=...)`` (one length per sequence, 1..T): outputs
beyond each length are zeros and ``h_n``/``c_n`` are the states at each sequence's last valid
step (the reverse direction starts there), as with ``torch.nn.utils.rnn.pack_padded_sequence``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _C
from .. import _kernels as K
from .. import random as _random
from ..autograd import _attach, _mode, _rg
from ..ops import rnn as _rnn_ops
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU"]

_F32 = _C.DType.float32


def _flat_slice(t, a, b, shape):
    return t._getitem(slice(a, b))._reshape(list(shape))


def _zeros(shape, like):
    return _C.zeros(list(shape), _F32, str(like.device))


def _lengths_array(lengths, batch):
    if lengths is None:
        return None
    if isinstance(lengths, _C.Tensor):
        lengths = K.np_(lengths)
    arr = np.ascontiguousarray(np.asarray(lengths), dtype=np.int64)
    if arr.shape != (batch,):
        raise ValueError(f"rnn: argument 'lengths': expected shape ({batch},) (one length per sequence), "
                         f"got {arr.shape}")
    return arr


def _rnn_stack(mode, x, h0, c0, params, lengths, num_layers, num_dirs, bias, dropout, training):
    """Runs the stack; returns the flat [output | h_n | c_n] tensor with its autograd node."""
    T, B = x.shape[0], x.shape[1]
    per = 4 if bias else 2
    w = [[params[(l * num_dirs + d) * per:(l * num_dirs + d + 1) * per] for d in range(num_dirs)]
         for l in range(num_layers)]
    H = w[0][0][1].shape[1]
    lstm = mode == "lstm"
    LD = num_layers * num_dirs
    ny, nh = T * B * num_dirs * H, LD * B * H
    out = _C.empty([ny + nh * (2 if lstm else 1)], _F32, str(x.device))
    saves = []
    inp = x
    for l in range(num_layers):
        seed = None
        if l > 0 and dropout > 0.0 and training:
            seed = _random.next_seed()
            inp = K.dropout(inp, dropout, seed)
        xprojs = [K.linear(inp, pw[0], pw[2] if bias else None) for pw in w[l]]
        h0l = h0._getitem(slice(l * num_dirs, (l + 1) * num_dirs)) if h0 is not None else None
        c0l = c0._getitem(slice(l * num_dirs, (l + 1) * num_dirs)) if c0 is not None else None
        y, hs, cs, saved = _rnn_ops.rnn_layer_forward(mode, xprojs, [pw[1] for pw in w[l]],
                                                      [pw[3] for pw in w[l]] if bias else None, h0l, c0l, lengths)
        for d in range(num_dirs):
            k = l * num_dirs + d
            final = T if d == 0 else 0
            _flat_slice(out, ny + k * B * H, ny + (k + 1) * B * H, (B, H)).copy_(hs[d]._getitem(final))
            if lstm:
                _flat_slice(out, ny + nh + k * B * H, ny + nh + (k + 1) * B * H, (B, H)).copy_(cs[d]._getitem(final))
        saves.append((inp, hs, cs, saved, seed))
        inp = y
    _flat_slice(out, 0, ny, (T, B, num_dirs * H)).copy_(inp)

    inputs = (x, h0, c0) + tuple(params)
    if not (_mode.enabled and any(_rg(t) for t in inputs if t is not None)):
        return out, H
    need_x = _rg(x)

    def backward(g):
        gy = _flat_slice(g, 0, ny, (T, B, num_dirs * H))
        ghn = _flat_slice(g, ny, ny + nh, (LD, B, H))
        gcn = _flat_slice(g, ny + nh, ny + 2 * nh, (LD, B, H)) if lstm else None
        pgrads = [None] * len(params)
        gh0 = _zeros((LD, B, H), g) if h0 is not None else None
        gc0 = _zeros((LD, B, H), g) if c0 is not None else None
        gtop = gy
        for l in reversed(range(num_layers)):
            inp_l, hs, cs, saved, seed = saves[l]
            sl = slice(l * num_dirs, (l + 1) * num_dirs)
            # LSTM / RNN: the recurrent and the input projection share their gradient, so
            # grad b_hh = grad b_ih (the input projection's backward forms it); GRU's differ.
            own_bh = bias and mode == "gru"
            dxp, dwh, dbh, dh0, dc0 = _rnn_ops.rnn_layer_backward(
                mode, gtop, ghn._getitem(sl), gcn._getitem(sl) if lstm else None, [pw[1] for pw in w[l]], hs,
                cs if lstm else None, saved if mode in ("lstm", "gru") else None, lengths, own_bh)
            if gh0 is not None:
                gh0._getitem(sl).copy_(dh0)
            if gc0 is not None:
                gc0._getitem(sl).copy_(dc0)
            gx = None
            for d in range(num_dirs):
                k = (l * num_dirs + d) * per
                if l == 0 and not need_x:
                    gw, gb = K.linear_weight_backward(dxp[d], inp_l, bias)
                    gxd = None
                else:
                    gxd, gw, gb = K.linear_backward(dxp[d], inp_l, w[l][d][0], bias)
                pgrads[k], pgrads[k + 1] = gw, dwh[d]
                if bias:
                    pgrads[k + 2], pgrads[k + 3] = gb, dbh[d] if own_bh else gb
                if gxd is not None:
                    gx = gxd if gx is None else K.add(gx, gxd)
            if gx is not None and seed is not None:
                gx = K.dropout_backward(gx, dropout, seed)
            gtop = gx
        return (gtop, gh0, gc0) + tuple(pgrads)

    _attach(out, inputs, backward, {"lstm": "LSTMBackward", "gru": "GRUBackward"}.get(mode, "RNNBackward"))
    return out, H


class RNNBase(Module):
    """Common machinery of RNN / LSTM / GRU (PyTorch's RNNBase)."""

    _GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False):
        super().__init__()
        name = type(self).__name__
        for arg, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: argument '{arg}': expected an integer >= 1, got {v!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout <= 1.0):
            raise ValueError(f"{name}: argument 'dropout': expected a probability in [0, 1], got {dropout!r}")
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional = bool(bidirectional)
        D = 2 if bidirectional else 1
        G = self._GATES[mode] * hidden_size
        self._flat_names = []
        for l in range(num_layers):
            for d in range(D):
                sfx = f"_l{l}" + ("_reverse" if d == 1 else "")
                in_l = input_size if l == 0 else hidden_size * D
                shapes = [("weight_ih", (G, in_l)), ("weight_hh", (G, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (G,)), ("bias_hh", (G,))]
                for base, shape in shapes:
                    setattr(self, base + sfx, Parameter(_C.empty(list(shape), "float32", "cpu")))
                    self._flat_names.append(base + sfx)
        self.reset_parameters()

    def reset_parameters(self):
        k = 1.0 / math.sqrt(self.hidden_size)
        for n in self._flat_names:
            init.uniform_(getattr(self, n), -k, k)

    @property
    def all_weights(self):
        return [getattr(self, n) for n in self._flat_names]

    def _run(self, x, hx, cx, lengths):
        name = type(self).__name__
        if x.ndim not in (2, 3):
            raise ValueError(f"{name}: argument 'input': expected a 2-D (unbatched) or 3-D tensor, got shape "
                             f"{tuple(x.shape)}")
        batched = x.ndim == 3
        D = 2 if self.bidirectional else 1
        if not batched:
            x = x.unsqueeze(1)
            hx = hx.unsqueeze(1) if hx is not None else None
            cx = cx.unsqueeze(1) if cx is not None else None
        elif self.batch_first:
            x = x.transpose(0, 1)
        x = x.contiguous()
        T, B = x.shape[0], x.shape[1]
        if x.shape[2] != self.input_size:
            raise ValueError(f"{name}: argument 'input': expected input_size={self.input_size} features, got shape "
                             f"{tuple(x.shape)}")
        want = (self.num_layers * D, B, self.hidden_size)
        for arg, t in (("hx", hx), ("cx", cx)):
            if t is not None and tuple(t.shape) != want:
                raise ValueError(f"{name}: argument '{arg}': expected shape {want}, got {tuple(t.shape)}")
        hx = hx.contiguous() if hx is not None else None
        cx = cx.contiguous() if cx is not None else None
        lens = _lengths_array(lengths, B)
        flat, H = _rnn_stack(self.mode, x, hx, cx, self.all_weights, lens, self.num_layers, D, self.bias,
                             self.dropout, self.training)
        ny, nh = T * B * D * H, self.num_layers * D * B * H
        y = flat[0:ny].reshape(T, B, D * H)
        hn = flat[ny:ny + nh].reshape(self.num_layers * D, B, H)
        cn = flat[ny + nh:ny + 2 * nh].reshape(self.num_layers * D, B, H) if self.mode == "lstm" else None
        if not batched:
            y, hn = y.squeeze(1), hn.squeeze(1)
            cn = cn.squeeze(1) if cn is not None else None
        elif self.batch_first:
            y = y.transpose(0, 1)
        return y, hn, cn

    def forward(self, input, hx=None, lengths=None):  # noqa: A002 - PyTorch's argument name
        y, hn, _ = self._run(input, hx, None, lengths)
        return y, hn

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN, ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``, act = tanh or relu."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: argument 'nonlinearity': expected 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """LSTM; ``forward(input, (h0, c0)=None, lengths=None) -> output, (h_n, c_n)``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)

    def forward(self, input, hx=None, lengths=None):  # noqa: A002
        h0, c0 = (None, None) if hx is None else hx
        y, hn, cn = self._run(input, h0, c0, lengths)
        return y, (hn, cn)


class GRU(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
