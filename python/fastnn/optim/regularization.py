"""L1 / L2 penalties as differentiable scalars (add them to the loss), and grad clipping."""
from __future__ import annotations

from ..autograd import abs as _abs, add, mul, sum as _sum
from ..ops import clip_grad_norm_ as _clip


def l1_penalty(params, weight=1.0):
    """weight * sum_i |p_i| over all parameters (a 0-d tensor with grad)."""
    total = None
    for p in params:
        s = _sum(_abs(p))
        total = s if total is None else add(total, s)
    return mul(total, float(weight))


def l2_penalty(params, weight=1.0):
    """weight * sum_i p_i^2 (note: 0.5 * weight * ... is the classic weight decay)."""
    total = None
    for p in params:
        s = _sum(mul(p, p))
        total = s if total is None else add(total, s)
    return mul(total, float(weight))


def clip_grad_norm_(params, max_norm, norm_type=2.0):
    """Scale the grads of ``params`` so their total norm is at most max_norm; returns the norm."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return _clip(grads, max_norm, norm_type)
