"""2-D convolution and pooling (CPU kernels: implicit GEMM on the GEMM microkernel, direct
depthwise kernels, pooling kernels; see csrc/include/fastnn/conv.h and pool.h).

Conventions are PyTorch's: float32 activations NCHW, weights OIHW (O, C/groups, kh, kw);
``stride``, ``padding``, ``dilation``, ``kernel_size`` take an int or a pair; conv2d's
``padding`` may also be ``'valid'`` or ``'same'`` (stride 1 only; an odd total padding
puts the extra row/column at the bottom/right). Every backward function is its own kernel.
"""
from __future__ import annotations

from .. import _C

__all__ = ["conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
           "avg_pool2d_backward", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """act(conv2d(x, weight) + bias); ``activation`` None, 'relu' or 'gelu' (also 'gelu_tanh',
    'sigmoid', 'tanh') is fused into the kernel's epilogue."""
    return _C.conv2d(x, weight, bias, stride, padding, dilation, groups, activation)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need_input=True,
                    need_weight=True, need_bias=True):
    """(grad_input, grad_weight, grad_bias) of :func:`conv2d` without activation (``grad_out`` is the
    gradient of the pre-activation output); entries not needed are None."""
    return _C.conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups, bool(need_input),
                              bool(need_weight), bool(need_bias))


def max_pool2d(x, kernel_size, stride=None, padding=0, return_indices=False):
    """Max pooling; ``stride`` defaults to ``kernel_size``; padding <= kernel_size / 2 (never wins).
    With ``return_indices`` returns (out, indices): int64 positions h*W + w in each input plane of
    the first maximum (a NaN counts as the maximum), as PyTorch."""
    return _C.max_pool2d(x, kernel_size, stride, padding, bool(return_indices))


def max_pool2d_backward(grad_out, x, indices, kernel_size, stride=None, padding=0):
    """grad_input of :func:`max_pool2d`: each grad_out element is added at its argmax."""
    return _C.max_pool2d_backward(grad_out, x, indices, kernel_size, stride, padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling; with ``count_include_pad=False`` the divisor is the number of input
    elements in the window."""
    return _C.avg_pool2d(x, kernel_size, stride, padding, bool(count_include_pad))


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, count_include_pad=True):
    return _C.avg_pool2d_backward(grad_out, x, kernel_size, stride, padding, bool(count_include_pad))


def adaptive_avg_pool2d(x, output_size=1):
    """Adaptive average pooling (PyTorch windows); ``output_size=1`` is global average pooling."""
    return _C.adaptive_avg_pool2d(x, output_size)


def adaptive_avg_pool2d_backward(grad_out, x):
    return _C.adaptive_avg_pool2d_backward(grad_out, x)
