"""Fused multi-tensor optimizers (in place; CPU kernels in csrc/cpu/kernels/optim_kernels.cpp).

Each call makes one pass over the memory of every tensor (two when ``found_inf`` is given:
the grads are first scanned for Inf/NaN), vectorised and threaded over the concatenated
element range of the whole list. Formulas are exactly torch.optim.Adam / AdamW / SGD.
"""
from __future__ import annotations

import math

from .. import _C

__all__ = ["adam_", "sgd_", "clip_grad_norm_", "grad_norm"]


def adam_(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
          weight_decay=0.0, decoupled=False, maximize=False, amsgrad=False, max_exp_avg_sqs=None,
          grad_scale=None, found_inf=None):
    """One Adam (``decoupled=False``, L2 added to the grad) or AdamW (``decoupled=True``) step.

    ``step`` is the 1-based step count after this update (torch's ``state['step']``); the bias
    corrections are computed from it in double. ``grad_scale`` (number or 1-element tensor)
    divides the grads. ``found_inf`` (1-element float32 tensor): if it is non-zero on entry, or
    any scaled grad is Inf/NaN (it is then set to 1), nothing is updated — this costs one extra
    read pass over the grads. Returns None.
    """
    _C.adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, int(step), float(lr), float(beta1),
             float(beta2), float(eps), float(weight_decay), bool(decoupled), bool(maximize), bool(amsgrad),
             grad_scale, found_inf)


def sgd_(params, grads, momentum_buffers=None, *, lr, momentum=0.0, dampening=0.0, nesterov=False,
         weight_decay=0.0, maximize=False, first_step=False):
    """One SGD step (torch.optim.SGD semantics). With momentum, ``first_step=True`` initialises
    the buffers to the (decayed) grad, as torch does when it creates them lazily. Returns None."""
    _C.sgd_(params, grads, momentum_buffers, float(lr), float(momentum), float(dampening), bool(nesterov),
            float(weight_decay), bool(maximize), bool(first_step))


def grad_norm(grads, norm_type=2.0) -> float:
    """Total ``norm_type``-norm of all grads taken together (accumulated in double)."""
    return _C.grad_norm(grads, _norm_type(norm_type))


def clip_grad_norm_(grads, max_norm, norm_type=2.0) -> float:
    """torch.nn.utils.clip_grad_norm_ on a list of grads: scales them in place by
    ``min(1, max_norm / (total_norm + 1e-6))`` and returns the total norm (a float)."""
    return _C.clip_grad_norm_(grads, float(max_norm), _norm_type(norm_type))


def _norm_type(norm_type) -> float:
    if isinstance(norm_type, str) and norm_type.lower() == "inf":
        return math.inf
    return float(norm_type)
