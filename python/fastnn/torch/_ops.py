"""fastnn's kernels as PyTorch custom operators (``torch.ops.fastnn.*``).

Every op is a ``torch.library.custom_op``: an opaque call PyTorch's dispatcher, autograd,
``torch.compile`` and ``torch.export`` understand. Each has
  * a real implementation: the torch tensors are detached (DLPack refuses tensors that
    require grad) and handed to the fastnn kernel as DLPack producers, zero-copy; the
    fastnn result comes back through ``torch.from_dlpack``, also zero-copy;
  * a fake implementation (``register_fake``): output shapes only, so the compilers can
    trace through it;
  * for the differentiable ones, ``register_autograd`` whose backward is itself a fastnn
    custom op (``linear_backward``, ``conv2d_backward``, ``attention_backward``, ``gemm``).

This module has no defaults and no argument normalisation (custom-op schemas keep both
simple); the public functions in ``fastnn.torch`` add them.

Note: this annotation style (no ``from __future__ import annotations``) is deliberate:
``custom_op`` infers the schema from the real annotation objects.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .. import ops as _fops


def _in(t: Optional[Tensor]):
    """A torch tensor as a fastnn kernel input: detached, shared through DLPack by the kernel."""
    return None if t is None else t.detach()


def _out(x) -> Tensor:
    """A fastnn result as a torch tensor, zero-copy (the DLPack deleter keeps fastnn's storage alive)."""
    return torch.from_dlpack(x)


def _empty_like_shape(ref: Tensor) -> Tensor:
    return ref.new_empty((0,))


# ---- gemm ------------------------------------------------------------------------------------
@torch.library.custom_op("fastnn::gemm", mutates_args=())
def gemm(a: Tensor, b: Tensor, c: Optional[Tensor], bias: Optional[Tensor], trans_a: bool, trans_b: bool,
         alpha: float, beta: float) -> Tensor:
    """alpha * op(a) @ op(b) + beta * c + bias (bias: one entry per output column)."""
    return _out(_fops.gemm(_in(a), _in(b), trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, c=_in(c),
                           bias=_in(bias)))


@gemm.register_fake
def _gemm_fake(a, b, c, bias, trans_a, trans_b, alpha, beta):
    torch._check(a.dim() == 2 and b.dim() == 2, lambda: "fastnn::gemm: expected 2-D operands")
    m, k = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
    kb, n = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    torch._check(k == kb, lambda: f"fastnn::gemm: inner sizes differ ({k} vs {kb})")
    return a.new_empty((m, n))


def _gemm_setup(ctx, inputs, output):
    a, b, c, bias, trans_a, trans_b, alpha, beta = inputs
    ctx.save_for_backward(a, b)
    ctx.cfg = (trans_a, trans_b, alpha, beta)


def _gemm_backward(ctx, grad):
    a, b = ctx.saved_tensors
    trans_a, trans_b, alpha, beta = ctx.cfg
    need = ctx.needs_input_grad
    ga = gb = gc = gbias = None
    # d op(a) = alpha * grad @ op(b)^T and d op(b) = alpha * op(a)^T @ grad; a transposed operand
    # takes the transpose of that, which is again one GEMM with the transposes folded into strides.
    if need[0]:
        ga = (gemm(b, grad, None, None, trans_b, True, alpha, 0.0) if trans_a
              else gemm(grad, b, None, None, False, not trans_b, alpha, 0.0))
    if need[1]:
        gb = (gemm(grad, a, None, None, True, trans_a, alpha, 0.0) if trans_b
              else gemm(a, grad, None, None, not trans_a, False, alpha, 0.0))
    if need[2]:
        gc = grad * beta
    if need[3]:
        gbias = grad.sum(0)
    return ga, gb, gc, gbias, None, None, None, None


gemm.register_autograd(_gemm_backward, setup_context=_gemm_setup)


# ---- linear ----------------------------------------------------------------------------------
@torch.library.custom_op("fastnn::linear", mutates_args=())
def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """x @ weight.T + bias over any leading dims (torch.nn.functional.linear)."""
    return _out(_fops.linear(_in(x), _in(weight), _in(bias)))


@linear.register_fake
def _linear_fake(x, weight, bias):
    torch._check(x.shape[-1] == weight.shape[1], lambda: "fastnn::linear: in_features differ")
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.custom_op("fastnn::linear_backward", mutates_args=())
def linear_backward(grad: Tensor, x: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(grad_x, grad_weight, grad_bias) of fastnn::linear."""
    gx, gw, gb = _fops.linear_backward(_in(grad), _in(x), _in(weight), True)
    return _out(gx), _out(gw), _out(gb)


@linear_backward.register_fake
def _linear_backward_fake(grad, x, weight):
    return x.new_empty(x.shape), weight.new_empty(weight.shape), weight.new_empty((weight.shape[0],))


def _linear_setup(ctx, inputs, output):
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)


def _linear_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    gx, gw, gb = linear_backward(grad, x, weight)
    need = ctx.needs_input_grad
    return (gx if need[0] else None), (gw if need[1] else None), (gb if need[2] else None)


linear.register_autograd(_linear_backward, setup_context=_linear_setup)


# ---- conv2d ----------------------------------------------------------------------------------
@torch.library.custom_op("fastnn::conv2d", mutates_args=())
def conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int], padding: List[int],
           dilation: List[int], groups: int) -> Tensor:
    """torch.nn.functional.conv2d (NCHW, OIHW; stride/padding/dilation as pairs)."""
    return _out(_fops.conv2d(_in(x), _in(weight), _in(bias), tuple(stride), tuple(padding), tuple(dilation),
                             groups))


def _conv_out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@conv2d.register_fake
def _conv2d_fake(x, weight, bias, stride, padding, dilation, groups):
    torch._check(x.dim() == 4 and weight.dim() == 4, lambda: "fastnn::conv2d: expected 4-D x and weight")
    torch._check(x.shape[1] == weight.shape[1] * groups, lambda: "fastnn::conv2d: channels differ")
    oh = _conv_out_size(x.shape[2], weight.shape[2], stride[0], padding[0], dilation[0])
    ow = _conv_out_size(x.shape[3], weight.shape[3], stride[1], padding[1], dilation[1])
    return x.new_empty((x.shape[0], weight.shape[0], oh, ow))


@torch.library.custom_op("fastnn::conv2d_backward", mutates_args=())
def conv2d_backward(grad: Tensor, x: Tensor, weight: Tensor, stride: List[int], padding: List[int],
                    dilation: List[int], groups: int, need_input: bool, need_weight: bool,
                    need_bias: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """(grad_x, grad_weight, grad_bias) of fastnn::conv2d; a gradient not asked for is an empty tensor."""
    res = _fops.conv2d_backward(_in(grad), _in(x), _in(weight), tuple(stride), tuple(padding), tuple(dilation),
                                groups, need_input, need_weight, need_bias)
    return tuple(_out(r) if r is not None else _empty_like_shape(x) for r in res)


@conv2d_backward.register_fake
def _conv2d_backward_fake(grad, x, weight, stride, padding, dilation, groups, need_input, need_weight, need_bias):
    return (x.new_empty(x.shape) if need_input else _empty_like_shape(x),
            weight.new_empty(weight.shape) if need_weight else _empty_like_shape(x),
            weight.new_empty((weight.shape[0],)) if need_bias else _empty_like_shape(x))


def _conv2d_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.cfg = (stride, padding, dilation, groups)


def _conv2d_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    gx, gw, gb = conv2d_backward(grad, x, weight, *ctx.cfg, need[0], need[1], need[2])
    return (gx if need[0] else None), (gw if need[1] else None), (gb if need[2] else None), None, None, None, None


conv2d.register_autograd(_conv2d_backward, setup_context=_conv2d_setup)


# ---- attention -------------------------------------------------------------------------------
@torch.library.custom_op("fastnn::attention", mutates_args=())
def attention(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Optional[Tensor], causal: bool,
              scale: Optional[float]) -> Tuple[Tensor, Tensor]:
    """(out, lse) of softmax(scale * q k^T + masks) v; q (B, H, Nq, D), k and v (B, H, Nk, D), any
    strides; key_padding_mask (B, Nk) bool, True = ignore; causal aligned bottom-right. lse is
    not differentiable (its gradient is taken as zero)."""
    out, lse = _fops.attention(_in(q), _in(k), _in(v), causal=causal, scale=scale,
                               key_padding_mask=_in(key_padding_mask), return_lse=True)
    return _out(out), _out(lse)


@attention.register_fake
def _attention_fake(q, k, v, key_padding_mask, causal, scale):
    torch._check(q.dim() == 4 and k.dim() == 4 and v.dim() == 4, lambda: "fastnn::attention: expected 4-D q, k, v")
    return q.new_empty(q.shape), q.new_empty(q.shape[:3])


@torch.library.custom_op("fastnn::attention_backward", mutates_args=())
def attention_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                       key_padding_mask: Optional[Tensor], causal: bool,
                       scale: Optional[float]) -> Tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv) of fastnn::attention (P recomputed block by block from lse)."""
    dq, dk, dv = _fops.attention_backward(_in(grad_out), _in(q), _in(k), _in(v), _in(out), _in(lse), causal=causal,
                                          scale=scale, key_padding_mask=_in(key_padding_mask))
    return _out(dq), _out(dk), _out(dv)


@attention_backward.register_fake
def _attention_backward_fake(grad_out, q, k, v, out, lse, key_padding_mask, causal, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _attention_setup(ctx, inputs, output):
    q, k, v, key_padding_mask, causal, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, key_padding_mask)
    ctx.cfg = (causal, scale)


def _attention_backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse, mask = ctx.saved_tensors
    dq, dk, dv = attention_backward(grad_out, q, k, v, out, lse, mask, *ctx.cfg)
    return dq, dk, dv, None, None, None


attention.register_autograd(_attention_backward, setup_context=_attention_setup)


# ---- adam_ -----------------------------------------------------------------------------------
@torch.library.custom_op("fastnn::adam_", mutates_args=("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"))
def adam_(params: List[Tensor], grads: List[Tensor], exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor],
          max_exp_avg_sqs: List[Tensor], step: int, lr: float, beta1: float, beta2: float, eps: float,
          weight_decay: float, decoupled: bool, maximize: bool, amsgrad: bool) -> None:
    """One fused Adam (decoupled=False) / AdamW (decoupled=True) step over a list of float32
    tensors, in place, exactly torch.optim.Adam's formulas; ``step`` is the 1-based count after
    this update; ``max_exp_avg_sqs`` is used (and must be given) only with amsgrad."""
    det = lambda ts: [t.detach() for t in ts]  # noqa: E731
    _fops.adam_(det(params), det(grads), det(exp_avgs), det(exp_avg_sqs), step=step, lr=lr, beta1=beta1,
                beta2=beta2, eps=eps, weight_decay=weight_decay, decoupled=decoupled, maximize=maximize,
                amsgrad=amsgrad, max_exp_avg_sqs=det(max_exp_avg_sqs) if amsgrad else None)


@adam_.register_fake
def _adam_fake(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay,
               decoupled, maximize, amsgrad):
    return None
