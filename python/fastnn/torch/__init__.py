"""fastnn inside PyTorch: custom operators, a fused Adam optimizer and drop-in modules.

    import torch, fastnn.torch as ft
    y = ft.linear(x, w, b)                 # torch.ops.fastnn.linear, differentiable
    model = torch.nn.Sequential(ft.Linear(64, 32), torch.nn.ReLU(), ft.Linear(32, 10))
    opt = ft.FusedAdam(model.parameters(), lr=1e-3)

Imported only on demand (``import fastnn`` never imports torch). The ops are
``torch.library.custom_op`` registrations -- ``torch.ops.fastnn.gemm``, ``linear``, ``conv2d``,
``attention``, ``adam_`` (plus the backward ops ``linear_backward``, ``conv2d_backward``,
``attention_backward``) -- with fake implementations for ``torch.compile`` / ``torch.export`` and
autograd formulas whose backward runs fastnn kernels. Tensors cross over zero-copy through
DLPack (detached first). CPU tensors work everywhere; CUDA tensors go to fastnn's CUDA backend
when fastnn sees a GPU (``fastnn.cuda.is_available()``) -- on a CPU-only torch build, as on our
build machines, that path cannot be exercised. Only float32 is supported (the kernels' dtype).
Not supported: double backward (the backward ops have no autograd formula), attention dropout.
"""
from __future__ import annotations


try:
    import torch
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("fastnn.torch needs PyTorch (pip install torch); the rest of fastnn works without it") from e

from . import _ops
from ._optim import FusedAdam
from ._modules import Attention, Conv2d, Linear

__all__ = ["gemm", "linear", "conv2d", "attention", "adam_", "FusedAdam", "Linear", "Conv2d", "Attention"]


def _pair(v, name):
    if isinstance(v, int):
        return [v, v]
    v = [int(i) for i in v]
    if len(v) != 2:
        raise ValueError(f"fastnn.torch.conv2d: argument '{name}': expected an int or a pair, got {v}")
    return v


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None):
    """``alpha * op(a) @ op(b) + beta * c + bias`` (op(x) = x.T when trans_x); differentiable."""
    return torch.ops.fastnn.gemm(a, b, c, bias, bool(trans_a), bool(trans_b), float(alpha), float(beta))


def linear(x, weight, bias=None):
    """``torch.nn.functional.linear`` on fastnn's GEMM; differentiable."""
    return torch.ops.fastnn.linear(x, weight, bias)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``torch.nn.functional.conv2d`` on fastnn's kernels (int padding, or 'valid'; 'same' when the
    total padding is even on both axes); differentiable."""
    dilation = _pair(dilation, "dilation")
    if isinstance(padding, str):
        padding = _string_padding(padding, weight.shape[2:], dilation, _pair(stride, "stride"))
    return torch.ops.fastnn.conv2d(x, weight, bias, _pair(stride, "stride"), _pair(padding, "padding"), dilation,
                                   int(groups))


def _string_padding(padding, kernel, dilation, stride):
    if padding == "valid":
        return [0, 0]
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if stride != [1, 1] or any(t % 2 for t in total):
            raise ValueError("fastnn.torch.conv2d: padding='same' needs stride 1 and an even total padding "
                             f"(kernel {list(kernel)}, dilation {dilation}, stride {stride})")
        return [t // 2 for t in total]
    raise ValueError(f"fastnn.torch.conv2d: argument 'padding': expected an int, a pair, 'valid' or 'same', "
                     f"got {padding!r}")


def attention(q, k, v, *, causal=False, scale=None, key_padding_mask=None):
    """``softmax(scale * q k^T + masks) v`` with q (B, H, Nq, D), k and v (B, H, Nk, D) (any strides),
    scale 1/sqrt(D) by default, ``causal`` aligned bottom-right, ``key_padding_mask`` (B, Nk) bool
    (True = ignore); equals ``torch.nn.functional.scaled_dot_product_attention`` with ``is_causal``
    for Nq == Nk. Differentiable in q, k, v."""
    out, _ = torch.ops.fastnn.attention(q, k, v, key_padding_mask, bool(causal),
                                        None if scale is None else float(scale))
    return out


def adam_(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
          weight_decay=0.0, decoupled=False, maximize=False, amsgrad=False, max_exp_avg_sqs=None):
    """One fused Adam/AdamW step in place over lists of float32 tensors (see fastnn.ops.adam_)."""
    torch.ops.fastnn.adam_(list(params), list(grads), list(exp_avgs), list(exp_avg_sqs),
                           list(max_exp_avg_sqs or []), int(step), float(lr), float(beta1), float(beta2),
                           float(eps), float(weight_decay), bool(decoupled), bool(maximize), bool(amsgrad))


