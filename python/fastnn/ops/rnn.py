"""Recurrent cells on fastnn's fused kernels (csrc/cpu/kernels/rnn_cells.cpp, kernels/rnn_cells.cu).

A cell is the elementwise gate math of one time step *after* the two GEMMs: ``gates_x`` is
the input projection ``x W_ih^T + b_ih`` and ``gates_h`` the recurrent one ``h W_hh^T + b_hh``,
both ``(batch, G*hidden)`` in PyTorch's gate order (LSTM ``i|f|g|o``, GRU ``r|z|n``):

* :func:`lstm_cell` -> ``(h, c, saved)``; ``c = f*c_prev + i*g``, ``h = o*tanh(c)``
* :func:`gru_cell` -> ``(h, saved)``; ``h = (1-z)*n + z*h_prev``, ``n = tanh(x_n + r*h_n)``
* :func:`rnn_cell` -> ``h = tanh(gates_x + gates_h)`` (or relu)

``saved`` holds what the backward needs (LSTM: i, f, g, o; GRU: r, z, n, gates_h's n part).
The ``*_backward`` functions return the gradients of the pre-activation projections (for a
GRU those of ``gates_x`` and ``gates_h`` differ in the n part).

:func:`rnn_layer_forward` / :func:`rnn_layer_backward` run one layer over a whole sequence
(one or two directions) in C++: per step one recurrent GEMM (fastnn's) and one fused cell.
``fastnn.nn.RNN/LSTM/GRU`` are built on them.
"""
from __future__ import annotations

from .. import _C

__all__ = ["lstm_cell", "gru_cell", "rnn_cell", "lstm_cell_backward", "gru_cell_backward", "rnn_cell_backward",
           "rnn_layer_forward", "rnn_layer_backward"]


def _mode(nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_cell: argument 'nonlinearity': expected 'tanh' or 'relu', got {nonlinearity!r}")
    return "rnn_" + nonlinearity


def lstm_cell(gates_x, gates_h, c_prev):
    """Fused LSTM step -> ``(h, c, saved)``; ``gates_*``: (B, 4H), ``c_prev``: (B, H)."""
    return _C.rnn_cell("lstm", gates_x, gates_h, c_prev, c_prev)


def lstm_cell_backward(grad_h, grad_c, saved, c_prev, c):
    """-> ``(grad_gates, grad_c_prev)``; ``grad_gates`` is the gradient of both projections."""
    dgx, _, _, dc = _C.rnn_cell_backward("lstm", grad_h, grad_c, saved, None, c_prev, c, None)
    return dgx, dc


def gru_cell(gates_x, gates_h, h_prev):
    """Fused GRU step -> ``(h, saved)``; ``gates_*``: (B, 3H), ``h_prev``: (B, H)."""
    h, _, saved = _C.rnn_cell("gru", gates_x, gates_h, h_prev, None)
    return h, saved


def gru_cell_backward(grad_h, saved, h_prev):
    """-> ``(grad_gates_x, grad_gates_h, grad_h_prev_direct)``; the full grad of ``h_prev`` is
    ``grad_h_prev_direct + grad_gates_h @ W_hh``."""
    dgx, dgh, dh, _ = _C.rnn_cell_backward("gru", grad_h, None, saved, h_prev, None, None, None)
    return dgx, dgh, dh


def rnn_cell(gates_x, gates_h, nonlinearity="tanh"):
    """Fused Elman step ``act(gates_x + gates_h)``, act = tanh or relu."""
    return _C.rnn_cell(_mode(nonlinearity), gates_x, gates_h, gates_x, None)[0]


def rnn_cell_backward(grad_h, h, nonlinearity="tanh"):
    """Gradient of the pre-activation given the cell's output ``h``."""
    return _C.rnn_cell_backward(_mode(nonlinearity), grad_h, None, None, None, None, None, h)[0]


def rnn_layer_forward(mode, xprojs, w_hh, b_hh=None, h0=None, c0=None, lengths=None):
    """One layer over a sequence -> ``(y, hs, cs, saved)``; see fastnn/rnn.h for the layout
    (``y``: (T, B, D*H); per direction ``hs``: (T+1, B, H) states in time order)."""
    return _C.rnn_layer_forward(mode, xprojs, w_hh, b_hh, h0, c0, lengths)


def rnn_layer_backward(mode, grad_y, grad_h_n, grad_c_n, w_hh, hs, cs, saved, lengths=None, need_bias=True):
    """-> ``(grad_xprojs, grad_w_hh, grad_b_hh, grad_h0, grad_c0)`` (lists per direction)."""
    return _C.rnn_layer_backward(mode, grad_y, grad_h_n, grad_c_n, w_hh, hs, cs, saved, lengths, need_bias)
