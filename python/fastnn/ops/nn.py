"""Training kernels: activations, softmax, losses, LayerNorm, dropout, embedding, broadcast
arithmetic and reductions — forward and ``*_backward`` functions (the autograd layer calls the
latter). Functional: every call returns new tensors. Kernels: csrc/cpu/kernels/nn_kernels.cpp.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from .. import _C

__all__ = [
    "relu", "gelu", "sigmoid", "tanh", "silu", "activation", "activation_backward",
    "relu_backward", "gelu_backward", "sigmoid_backward", "tanh_backward", "silu_backward",
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
    "cross_entropy", "cross_entropy_forward_backward", "cross_entropy_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
    "mse_loss", "mse_loss_backward",
    "layer_norm", "layer_norm_backward", "dropout", "dropout_backward", "embedding", "embedding_backward",
    "add", "sub", "mul", "div", "broadcast_to", "sum_to_shape", "binary_backward",
    "sum", "mean", "max", "sum_backward", "mean_backward", "max_backward",
]


# ---- activations ----------------------------------------------------------------------------
def activation(x, name: str):
    """name: 'relu' | 'gelu' (erf) | 'gelu_tanh' | 'sigmoid' | 'tanh' | 'silu'."""
    return _C.activation(x, name)


def activation_backward(grad_y, x, name: str):
    """grad_x = grad_y * act'(x) (from the forward INPUT x)."""
    return _C.activation_backward(grad_y, x, name)


def _gelu_name(approximate: str) -> str:
    if approximate == "none":
        return "gelu"
    if approximate == "tanh":
        return "gelu_tanh"
    raise ValueError(f"gelu: argument 'approximate': expected 'none' or 'tanh', got {approximate!r}")


def relu(x):
    return _C.activation(x, "relu")


def gelu(x, approximate: str = "none"):
    return _C.activation(x, _gelu_name(approximate))


def sigmoid(x):
    return _C.activation(x, "sigmoid")


def tanh(x):
    return _C.activation(x, "tanh")


def silu(x):
    return _C.activation(x, "silu")


def relu_backward(grad_y, x):
    return _C.activation_backward(grad_y, x, "relu")


def gelu_backward(grad_y, x, approximate: str = "none"):
    return _C.activation_backward(grad_y, x, _gelu_name(approximate))


def sigmoid_backward(grad_y, x):
    return _C.activation_backward(grad_y, x, "sigmoid")


def tanh_backward(grad_y, x):
    return _C.activation_backward(grad_y, x, "tanh")


def silu_backward(grad_y, x):
    return _C.activation_backward(grad_y, x, "silu")


# ---- softmax --------------------------------------------------------------------------------
def _last_axis(x, axis, op):
    nd = len(np.shape(x)) if not hasattr(x, "ndim") else x.ndim
    if axis not in (-1, nd - 1):
        raise ValueError(f"{op}: argument 'axis': only the last axis (-1) is supported, got {axis}")


def softmax(x, axis: int = -1):
    _last_axis(x, axis, "softmax")
    return _C.softmax(x, False)


def log_softmax(x, axis: int = -1):
    _last_axis(x, axis, "log_softmax")
    return _C.softmax(x, True)


def softmax_backward(grad_y, y):
    """From the forward OUTPUT y: y * (grad_y - sum(grad_y * y))."""
    return _C.softmax_backward(grad_y, y, False)


def log_softmax_backward(grad_y, y):
    """From the forward OUTPUT y: grad_y - exp(y) * sum(grad_y)."""
    return _C.softmax_backward(grad_y, y, True)


# ---- losses ---------------------------------------------------------------------------------
def cross_entropy(logits, target, label_smoothing=0.0, ignore_index=-100, reduction="mean"):
    """torch.nn.functional.cross_entropy for (N, C) or (C,) logits and int64/int32 class targets."""
    loss, _ = _C.cross_entropy(logits, target, float(label_smoothing), int(ignore_index), reduction, True, False, None)
    return loss


def cross_entropy_forward_backward(logits, target, label_smoothing=0.0, ignore_index=-100, reduction="mean",
                                   grad_loss=None):
    """(loss, grad_logits) in one fused pass over the logits; grad_loss defaults to 1."""
    return _C.cross_entropy(logits, target, float(label_smoothing), int(ignore_index), reduction, True, True,
                            grad_loss)


def cross_entropy_backward(grad_loss, logits, target, label_smoothing=0.0, ignore_index=-100, reduction="mean"):
    _, g = _C.cross_entropy(logits, target, float(label_smoothing), int(ignore_index), reduction, False, True,
                            grad_loss)
    return g


def binary_cross_entropy_with_logits(logits, target, pos_weight=None, reduction="mean"):
    loss, _ = _C.bce_with_logits(logits, target, pos_weight, reduction, False, None)
    return loss


def binary_cross_entropy_with_logits_backward(grad_loss, logits, target, pos_weight=None, reduction="mean"):
    _, g = _C.bce_with_logits(logits, target, pos_weight, reduction, True, grad_loss)
    return g


def mse_loss(input, target, reduction="mean"):
    loss, _ = _C.mse_loss(input, target, reduction, False, None)
    return loss


def mse_loss_backward(grad_loss, input, target, reduction="mean"):
    """Gradient w.r.t. input (the gradient w.r.t. target is its negative)."""
    _, g = _C.mse_loss(input, target, reduction, True, grad_loss)
    return g


# ---- layer norm, dropout, embedding ---------------------------------------------------------
def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """Over the last axis. Returns (y, mean, rstd); mean/rstd have x.shape[:-1]."""
    return _C.layer_norm(x, weight, bias, float(eps))


def layer_norm_backward(grad_y, x, weight, mean, rstd, need_weight=True, need_bias=True):
    """Returns (grad_x, grad_weight or None, grad_bias or None)."""
    return _C.layer_norm_backward(grad_y, x, weight, mean, rstd, bool(need_weight and weight is not None),
                                  bool(need_bias))


def dropout(x, p, seed, offset=0):
    """Inverted dropout with the Philox-4x32-10 mask of fastnn/philox.h: element e is kept iff
    philox(counter=(e//4, offset), key=seed)[e % 4] < (1-p)*2^32; kept values are scaled by 1/(1-p)."""
    return _C.dropout(x, float(p), int(seed), int(offset))


def dropout_backward(grad_y, p, seed, offset=0):
    """The mask is regenerated from (seed, offset), not stored."""
    return _C.dropout(grad_y, float(p), int(seed), int(offset))


def embedding(indices, table):
    return _C.embedding(indices, table)


def embedding_backward(grad_out, indices, num_weights):
    """Dense (num_weights, dim) gradient; duplicate indices accumulate deterministically."""
    return _C.embedding_backward(grad_out, indices, int(num_weights))


# ---- broadcast arithmetic -------------------------------------------------------------------
def _operand(x):
    if isinstance(x, numbers.Number):
        return np.asarray(x, dtype=np.float32)
    return x


def add(a, b):
    return _C.binary(_operand(a), _operand(b), "add")


def sub(a, b):
    return _C.binary(_operand(a), _operand(b), "sub")


def mul(a, b):
    return _C.binary(_operand(a), _operand(b), "mul")


def div(a, b):
    return _C.binary(_operand(a), _operand(b), "div")


def broadcast_to(x, shape):
    return _C.broadcast_to(_operand(x), tuple(int(s) for s in shape))


def sum_to_shape(grad, shape):
    """Backward of broadcasting: sums grad over the dimensions that were broadcast to reach
    grad's shape from `shape` (leading extra dims and size-1 dims)."""
    shape = tuple(int(s) for s in shape)
    gshape = tuple(grad.shape)
    lead = len(gshape) - len(shape)
    if lead < 0:
        raise ValueError(f"sum_to_shape: argument 'shape': {shape} has more dimensions than grad {gshape}")
    out = grad
    for ax in range(len(gshape) - 1, -1, -1):  # right to left keeps the remaining axis numbers valid
        if ax < lead:
            out, _ = _C.reduce(out, ax, False, "sum")
        elif shape[ax - lead] == 1 and gshape[ax] != 1:
            out, _ = _C.reduce(out, ax, True, "sum")
        elif shape[ax - lead] != gshape[ax]:
            raise ValueError(f"sum_to_shape: grad of shape {gshape} does not broadcast from shape {shape}")
    if tuple(out.shape) != shape:
        out = out.reshape(shape)
    return out


def binary_backward(grad, a, b, op):
    """(grad_a, grad_b) for out = a op b with broadcasting; op in add/sub/mul/div."""
    a, b = _operand(a), _operand(b)
    sa, sb = tuple(np.shape(a)), tuple(np.shape(b))
    if op == "add":
        ga, gb = grad, grad
    elif op == "sub":
        ga, gb = grad, _C.unary(grad, "neg")
    elif op == "mul":
        ga, gb = _C.binary(grad, b, "mul"), _C.binary(grad, a, "mul")
    elif op == "div":
        ga = _C.binary(grad, b, "div")
        gb = _C.unary(_C.binary(ga, _C.binary(a, b, "div"), "mul"), "neg")
    else:
        raise ValueError(f"binary_backward: argument 'op': expected 'add', 'sub', 'mul' or 'div', got {op!r}")
    return sum_to_shape(ga, sa), sum_to_shape(gb, sb)


# ---- reductions -----------------------------------------------------------------------------
def _axes(axis, ndim, op):
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    norm = []
    for a in axes:
        a = int(a)
        if not -builtins.max(ndim, 1) <= a < builtins.max(ndim, 1):
            raise IndexError(f"{op}: argument 'axis': expected values in [{-builtins.max(ndim, 1)}, {builtins.max(ndim, 1)}), got {a}")
        norm.append(a % builtins.max(ndim, 1))
    if len(set(norm)) != len(norm):
        raise ValueError(f"{op}: argument 'axis': repeated axis in {axis}")
    return sorted(norm, reverse=True)


def _reduce_multi(x, axis, keepdim, op):
    nd = len(x.shape)
    axes = _axes(axis, nd, op)
    if axes is None:
        out, _ = _C.reduce(x, None, keepdim, op)
        return out
    out = x
    for a in axes:  # descending: earlier axis numbers stay valid
        out, _ = _C.reduce(out, a, keepdim, op)
    return out


def sum(x, axis=None, keepdim=False):  # noqa: A001 - mirrors torch / numpy names
    return _reduce_multi(x, axis, keepdim, "sum")


def mean(x, axis=None, keepdim=False):
    return _reduce_multi(x, axis, keepdim, "mean")


def max(x, axis=None, keepdim=False):  # noqa: A001
    """(values, indices): over one axis, or over everything (axis=None, flat indices)."""
    if axis is not None and not isinstance(axis, numbers.Integral):
        raise ValueError(f"max: argument 'axis': expected an int or None, got {axis!r}")
    return _C.reduce(x, axis, keepdim, "max")


def _expand_reduced(grad, input_shape, axis, keepdim):
    input_shape = tuple(int(s) for s in input_shape)
    nd = len(input_shape)
    axes = _axes(axis, nd, "sum_backward")
    if axes is None:
        axes = list(range(nd))
    kshape = tuple(1 if i in axes else s for i, s in enumerate(input_shape))
    g = grad if tuple(grad.shape) == kshape else grad.reshape(kshape)
    return _C.broadcast_to(g, input_shape), axes


def sum_backward(grad, input_shape, axis=None, keepdim=False):
    return _expand_reduced(grad, input_shape, axis, keepdim)[0]


def mean_backward(grad, input_shape, axis=None, keepdim=False):
    g, axes = _expand_reduced(grad, input_shape, axis, keepdim)
    count = 1
    for a in axes:
        count *= int(input_shape[a])
    # A device-side scalar multiply: a host scalar operand would not mix with a 'cuda' gradient.
    return _C.unary(g, "mul", 1.0 / count if count else float("nan"))


def max_backward(grad, indices, input_shape, axis=None, keepdim=False):
    """Scatters grad to the positions of the maxima (the indices returned by max)."""
    return _C.max_backward(grad, indices, tuple(int(s) for s in input_shape), axis)
