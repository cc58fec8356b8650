"""Batch normalisation on fastnn's fused kernels (csrc/cpu/kernels/batch_norm_kernels.cpp,
kernels/batch_norm.cu); statistics over every dim but 1 of an (N, C, *) input.

* :func:`batch_norm` -> ``(output, save_mean, save_invstd)``. ``training=True``: batch
  statistics (biased variance for the normalisation), and the running statistics, when given,
  updated in place with ``momentum`` (unbiased variance, as torch). ``training=False``: the
  running statistics normalise.
* :func:`batch_norm_backward` -> ``(grad_input, grad_weight, grad_bias)``.
"""
from __future__ import annotations

from .. import _C

__all__ = ["batch_norm", "batch_norm_backward"]


def batch_norm(input, weight=None, bias=None, running_mean=None, running_var=None, training=True,  # noqa: A002
               momentum=0.1, eps=1e-5):
    return _C.batch_norm(input, weight, bias, running_mean, running_var, bool(training), float(momentum), float(eps))


def batch_norm_backward(grad, input, weight, save_mean, save_invstd, training=True, need_input=True,  # noqa: A002
                        need_weight=True):
    return _C.batch_norm_backward(grad, input, weight, save_mean, save_invstd, bool(training), bool(need_input),
                                  bool(need_weight))
