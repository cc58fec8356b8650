"""Matrix products on fastnn's own GEMM kernels (BLIS-style packing + per-ISA microkernels).

* :func:`gemm` -- BLAS semantics on 2-D float32 operands with a fused epilogue:
  ``act(alpha * op(a) @ op(b) + beta * c + bias)``; ``op(x)`` is ``x.T`` when ``trans_x``.
  Any strides (transposed, sliced, negative-step views) are read in place, without a copy.
  ``c`` is only read when ``beta != 0`` and is never modified: the result is a new tensor,
  unless ``out=`` is given (``out`` may be ``c`` itself for an in-place update, but must not
  share memory with ``a``, ``b`` or ``bias``).
* :func:`matmul` -- ``a @ b`` with NumPy's rules (batch broadcasting, 1-D promotion).
* :func:`linear` -- PyTorch's ``x @ weight.T + bias`` over any leading dims, optional fused
  activation.
* :func:`matmul_backward`, :func:`linear_backward` -- gradients through the same kernel,
  transposes folded into strides.

Activations: None, 'relu', 'gelu' (erf form), 'gelu_tanh', 'sigmoid', 'tanh'.
"""
from __future__ import annotations

from .. import _C

__all__ = ["gemm", "matmul", "linear", "matmul_backward", "linear_backward"]


# gemm, matmul and linear are the C builtins themselves (csrc/bindings/bind_gemm.cpp, parsed by
# bindings/fastcall.h): a Python wrapper plus pybind11's keyword matching cost more than a whole
# 64 x 128 x 10 product. Signatures (inspect.signature works) and docstrings are theirs:
#   gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None, activation=None, out=None)
#   matmul(a, b, *, out=None)
#   linear(x, weight, bias=None, *, activation=None)
gemm = _C.gemm
matmul = _C.matmul
linear = _C.linear


def matmul_backward(grad, a, b):
    """``(grad_a, grad_b)`` of ``matmul(a, b)`` given ``grad`` = dL/d(a @ b); sums over broadcast dims."""
    return _C.matmul_backward(grad, a, b)


def linear_backward(grad, x, weight, need_bias=True):
    """``(grad_x, grad_weight, grad_bias)`` of ``linear(x, weight, bias)`` (no activation);
    grad_bias is None unless ``need_bias``."""
    return _C.linear_backward(grad, x, weight, bool(need_bias))
