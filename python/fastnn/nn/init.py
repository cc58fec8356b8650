"""Parameter initialisers (in place, under no_grad), PyTorch's formulas and defaults.
Random draws come from the global generator (fastnn.manual_seed)."""
from __future__ import annotations

import math

import numpy as np

from .. import _kernels as K
from .. import random as _random

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_", "kaiming_uniform_",
           "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "trunc_normal_"]


def _set(t, arr):
    t.copy_(K.t_(np.asarray(arr, dtype=K.np_(t).dtype if not t.is_cuda else np.float32)))
    return t


def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: argument 'nonlinearity': unsupported value {nonlinearity!r}")


def _fans(t):
    if t.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions, got shape {tuple(t.shape)}")
    rf = 1
    for s in t.shape[2:]:
        rf *= s
    return t.shape[1] * rf, t.shape[0] * rf


def uniform_(t, a=0.0, b=1.0):
    return _set(t, _random.generator().uniform(a, b, size=tuple(t.shape)))


def normal_(t, mean=0.0, std=1.0):
    return _set(t, _random.generator().normal(mean, std, size=tuple(t.shape)))


def trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0):
    g = _random.generator()
    x = g.normal(mean, std, size=tuple(t.shape))
    bad = (x < a) | (x > b)
    while bad.any():
        x[bad] = g.normal(mean, std, size=int(bad.sum()))
        bad = (x < a) | (x > b)
    return _set(t, x)


def constant_(t, val):
    return t.fill_(val)


def zeros_(t):
    return t.zero_()


def ones_(t):
    return t.fill_(1.0)


def kaiming_uniform_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    fan_in, fan_out = _fans(t)
    fan = fan_in if mode == "fan_in" else fan_out
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(max(fan, 1))
    return uniform_(t, -bound, bound)


def kaiming_normal_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    fan_in, fan_out = _fans(t)
    fan = fan_in if mode == "fan_in" else fan_out
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(max(fan, 1)))


def xavier_uniform_(t, gain=1.0):
    fan_in, fan_out = _fans(t)
    bound = gain * math.sqrt(6.0 / max(fan_in + fan_out, 1))
    return uniform_(t, -bound, bound)


def xavier_normal_(t, gain=1.0):
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / max(fan_in + fan_out, 1)))
