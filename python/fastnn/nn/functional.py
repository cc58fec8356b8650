"""Differentiable functional forms of the layers (``fastnn.nn.functional``, ``F`` by convention).

Each function is one forward kernel call and, when a graph is being recorded, one Node whose
backward is one backward kernel call (see fastnn/_kernels.py for which kernel runs). Losses
use fused kernels that return the loss and its gradient together, so their backward is a
scale of a tensor computed in the forward.
"""
from __future__ import annotations

import numbers

from .. import _C
from .. import _kernels as K
from .. import random as _random
from ..autograd import _attach, _mode, _needs, _rg

Tensor = _C.Tensor

__all__ = ["linear", "relu", "gelu", "sigmoid", "tanh", "silu", "softmax", "log_softmax", "cross_entropy",
           "binary_cross_entropy_with_logits", "mse_loss", "layer_norm", "dropout", "embedding", "conv2d",
           "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "flatten", "scaled_dot_product_attention"]


def _pair(v, name, op):
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{op}: argument '{name}': expected an int or a pair of ints, got {v}")
    return v


def _expect_ndim(x, nd, op, name="input"):
    if x.ndim != nd:
        raise ValueError(f"{op}: argument '{name}': expected a {nd}-D tensor, got {x.ndim}-D with shape {tuple(x.shape)}")


def linear(x, weight, bias=None):
    """x @ weight.T + bias (weight: (out, in), PyTorch's layout)."""
    out = K.linear(x, weight, bias)  # the binding validates shapes and dtypes
    if _needs(x, weight, bias):
        nb = bias is not None and _rg(bias)
        if x.requires_grad:
            _attach(out, (x, weight, bias), lambda g: K.linear_backward(g, x, weight, nb), "LinearBackward")
        else:  # first layer: no grad_input GEMM
            _attach(out, (x, weight, bias), lambda g: (None,) + K.linear_weight_backward(g, x, nb), "LinearBackward")
    return out


def _act(name, fwd, bwd):
    # backward kernels take the input (x); the NumPy fallbacks may use the output instead
    def f(x):
        out = fwd(x)
        if _mode.enabled and x.requires_grad:
            _attach(out, (x,), lambda g: (bwd(g, x, out),), name)
        return out
    return f


relu = _act("ReluBackward", K.relu, K.relu_backward)
sigmoid = _act("SigmoidBackward", K.sigmoid, K.sigmoid_backward)
tanh = _act("TanhBackward", K.tanh, K.tanh_backward)
silu = _act("SiluBackward", K.silu, K.silu_backward)
relu.__doc__ = "max(x, 0)"


def gelu(x, approximate="none"):
    """x * Phi(x) (exact erf form), or the tanh approximation with approximate='tanh'."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: argument 'approximate': expected 'none' or 'tanh', got {approximate!r}")
    out = K.gelu(x, approximate)
    if _mode.enabled and x.requires_grad:
        _attach(out, (x,), lambda g: (K.gelu_backward(g, x, approximate),), "GeluBackward")
    return out


def _dim(dim, x, op):
    nd = x.ndim
    if not -nd <= dim < nd:
        raise IndexError(f"{op}: argument 'dim': expected a dimension in [{-nd}, {nd - 1}], got {dim}")
    return dim % nd


def softmax(x, dim=-1):
    d = _dim(dim, x, "softmax")
    out = K.softmax(x, d)
    if _mode.enabled and x.requires_grad:
        _attach(out, (x,), lambda g: (K.softmax_backward(g, out, d),), "SoftmaxBackward")
    return out


def log_softmax(x, dim=-1):
    d = _dim(dim, x, "log_softmax")
    out = K.log_softmax(x, d)
    if _mode.enabled and x.requires_grad:
        _attach(out, (x,), lambda g: (K.log_softmax_backward(g, out, d),), "LogSoftmaxBackward")
    return out


def _reduction(r, op):
    if r not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: argument 'reduction': expected 'mean', 'sum' or 'none', got {r!r}")
    return r


def _as_input(t, op, name):
    if t.__class__ is Tensor:
        return t
    try:
        return K.t_(t)
    except Exception as e:
        raise TypeError(f"{op}: argument '{name}': expected a tensor, got {type(t).__name__}") from e


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy on (N, C) logits and (N,) int class indices (fused kernel)."""
    _reduction(reduction, "cross_entropy")
    target = _as_input(target, "cross_entropy", "target")
    _expect_ndim(logits, 2, "cross_entropy", "input")
    if target.dtype.is_floating_point:
        raise TypeError(f"cross_entropy: argument 'target': expected integer class indices, got {target.dtype!r}")
    if tuple(target.shape) != (logits.shape[0],):
        raise ValueError(f"cross_entropy: argument 'target': expected shape ({logits.shape[0]},), "
                         f"got {tuple(target.shape)}")
    loss, grad = K.cross_entropy(logits, target, reduction, label_smoothing)
    if _mode.enabled and logits.requires_grad:
        _attach(loss, (logits,), lambda g: (_scale_grad(grad, g, reduction),), "CrossEntropyBackward")
    return loss


def _scale_grad(grad, g, reduction):
    if reduction == "none":
        return K.mul(grad, g.reshape(list(g.shape) + [1] * (grad.ndim - g.ndim)))
    return K.mul(grad, g)


def _same_shape(x, y, op):
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(f"{op}: argument 'target': expected shape {tuple(x.shape)} (that of 'input'), "
                         f"got {tuple(y.shape)}")


def binary_cross_entropy_with_logits(logits, target, reduction="mean", pos_weight=None):
    _reduction(reduction, "binary_cross_entropy_with_logits")
    target = _as_input(target, "binary_cross_entropy_with_logits", "target")
    _same_shape(logits, target, "binary_cross_entropy_with_logits")
    loss, grad = K.bce_with_logits(logits, target, reduction, pos_weight)
    if _mode.enabled and logits.requires_grad:
        _attach(loss, (logits,), lambda g: (_scale_grad(grad, g, reduction),), "BCEWithLogitsBackward")
    return loss


def mse_loss(x, target, reduction="mean"):
    _reduction(reduction, "mse_loss")
    target = _as_input(target, "mse_loss", "target")
    _same_shape(x, target, "mse_loss")
    loss, grad = K.mse_loss(x, target, reduction)
    if _mode.enabled and x.requires_grad:
        _attach(loss, (x,), lambda g: (_scale_grad(grad, g, reduction),), "MSELossBackward")
    return loss


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    ns = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(ns):]) != ns or x.ndim < len(ns):
        raise ValueError(f"layer_norm: argument 'input': expected trailing dimensions {ns}, got shape {tuple(x.shape)}")
    out, mu, rstd = K.layer_norm(x, len(ns), weight, bias, eps)
    if _needs(x, weight, bias):
        nb = bias is not None
        _attach(out, (x, weight, bias),
                lambda g: K.layer_norm_backward(g, x, len(ns), weight, mu, rstd, nb), "LayerNormBackward")
    return out


def dropout(x, p=0.5, training=True, seed=None):
    """Inverted dropout. The mask is regenerated from ``seed`` in the backward (not stored);
    the seed comes from the global generator (fastnn.manual_seed) unless given."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: argument 'p': expected a probability in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return K.mul(x, 0.0) if not (_mode.enabled and x.requires_grad) else x * 0.0
    s = _random.next_seed() if seed is None else int(seed)
    out = K.dropout(x, p, s)
    if _mode.enabled and x.requires_grad:
        _attach(out, (x,), lambda g: (K.dropout_backward(g, p, s),), "DropoutBackward")
    return out


def embedding(idx, weight, padding_idx=None):
    idx = _as_input(idx, "embedding", "input")
    if idx.dtype.is_floating_point:
        raise TypeError(f"embedding: argument 'input': expected integer indices, got {idx.dtype!r}")
    out = K.embedding(idx, weight)
    if _mode.enabled and weight.requires_grad:
        n = weight.shape[0]
        _attach(out, (weight,), lambda g: (K.embedding_backward(g, idx, n, padding_idx),), "EmbeddingBackward")
    return out


def conv2d(x, weight, bias=None, stride=1, padding=0):
    _expect_ndim(x, 4, "conv2d")
    _expect_ndim(weight, 4, "conv2d", "weight")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: argument 'weight': expected {x.shape[1]} input channels (those of 'input' "
                         f"{tuple(x.shape)}), got weight shape {tuple(weight.shape)}")
    s, p = _pair(stride, "stride", "conv2d"), _pair(padding, "padding", "conv2d")
    out = K.conv2d(x, weight, bias, s, p)
    if _needs(x, weight, bias):
        nb = bias is not None
        _attach(out, (x, weight, bias), lambda g: K.conv2d_backward(g, x, weight, s, p, nb), "Conv2dBackward")
    return out


def max_pool2d(x, kernel_size, stride=None, padding=0):
    _expect_ndim(x, 4, "max_pool2d")
    k = _pair(kernel_size, "kernel_size", "max_pool2d")
    s = k if stride is None else _pair(stride, "stride", "max_pool2d")
    p = _pair(padding, "padding", "max_pool2d")
    out, idx = K.max_pool2d(x, k, s, p)
    if _mode.enabled and x.requires_grad:
        _attach(out, (x,), lambda g: (K.max_pool2d_backward(g, x, idx, k, s, p),), "MaxPool2dBackward")
    return out


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    _expect_ndim(x, 4, "avg_pool2d")
    k = _pair(kernel_size, "kernel_size", "avg_pool2d")
    s = k if stride is None else _pair(stride, "stride", "avg_pool2d")
    p = _pair(padding, "padding", "avg_pool2d")
    out = K.avg_pool2d(x, k, s, p)
    if _mode.enabled and x.requires_grad:
        _attach(out, (x,), lambda g: (K.avg_pool2d_backward(g, x, k, s, p),), "AvgPool2dBackward")
    return out


def adaptive_avg_pool2d(x, output_size):
    _expect_ndim(x, 4, "adaptive_avg_pool2d")
    o = _pair(output_size, "output_size", "adaptive_avg_pool2d")
    out = K.adaptive_avg_pool2d(x, o)
    if _mode.enabled and x.requires_grad:
        _attach(out, (x,), lambda g: (K.adaptive_avg_pool2d_backward(g, x, o),), "AdaptiveAvgPool2dBackward")
    return out


def flatten(x, start_dim=1, end_dim=-1):
    return x.flatten(start_dim, end_dim)


def scaled_dot_product_attention(q, k, v, key_padding_mask=None, causal=False, dropout_p=0.0, scale=None):
    """Fused attention on (B, H, N, D) q/k/v of any strides (fastnn.ops.attention)."""
    _att, _att_bwd = K.attention, K.attention_backward
    seed = _random.next_seed() if dropout_p > 0.0 else 0
    kw = dict(causal=causal, scale=scale, key_padding_mask=key_padding_mask, dropout_p=dropout_p, seed=seed)
    if not _needs(q, k, v):
        return _att(q, k, v, **kw)
    out, lse = _att(q, k, v, return_lse=True, **kw)
    _attach(out, (q, k, v), lambda g: tuple(_att_bwd(g, q, k, v, out, lse, **kw)), "AttentionBackward")
    return out


def attention_from_qkv(qkv, num_heads, key_padding_mask=None, causal=False, dropout_p=0.0):
    """Attention on a fused QKV projection ``qkv`` (B, N, 3*E) → (B, N, E).

    q, k and v are strided views of ``qkv`` (no copies); the backward writes dq, dk, dv
    straight into one (B, N, 3, H, D) gradient, so the fused projection gets a single
    contiguous gradient instead of three scattered ones."""
    _att, _att_bwd = K.attention, K.attention_backward
    b, n, e3 = qkv.shape
    e = e3 // 3
    d = e // num_heads
    v5 = qkv._view([b, n, 3, num_heads, d]) if qkv.is_contiguous() else qkv._reshape([b, n, 3, num_heads, d])
    q, k, v = (v5._getitem((slice(None), slice(None), i))._permute([0, 2, 1, 3]) for i in range(3))
    seed = _random.next_seed() if dropout_p > 0.0 else 0
    kw = dict(causal=causal, key_padding_mask=key_padding_mask, dropout_p=dropout_p, seed=seed)
    rec = _mode.enabled and qkv.requires_grad
    if rec:
        o, lse = _att(q, k, v, return_lse=True, **kw)
    else:
        o = _att(q, k, v, **kw)
    out = o._permute([0, 2, 1, 3])._reshape([b, n, e])  # (B, N, H, D) → (B, N, E): one copy
    if rec:
        def fn(g):
            g4 = g._reshape([b, n, num_heads, d])._permute([0, 2, 1, 3])
            dq, dk, dv = _att_bwd(g4, q, k, v, o, lse, **kw)
            dqkv = _C.empty([b, n, 3, num_heads, d], qkv.dtype, str(qkv.device))
            for i, gi in enumerate((dq, dk, dv)):
                dqkv._getitem((slice(None), slice(None), i))._permute([0, 2, 1, 3]).copy_(gi)
            return (dqkv._view([b, n, e3]),)
        _attach(out, (qkv,), fn, "AttentionQKVBackward")
    return out
