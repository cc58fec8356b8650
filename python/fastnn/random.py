"""The global random state of the Python layer: parameter init, DataLoader shuffling and the
seeds handed to dropout kernels all draw from one NumPy Generator, so
``fastnn.manual_seed(s)`` makes a whole training run reproducible."""
from __future__ import annotations

import numpy as np

from . import _kernels as K

__all__ = ["manual_seed", "generator", "next_seed", "randn", "rand", "randint"]

_state = {"gen": np.random.default_rng()}


def manual_seed(seed: int) -> None:
    """Seed init, shuffling and dropout (and NumPy-free reproducibility of the whole layer)."""
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"manual_seed: argument 'seed': expected a non-negative integer, got {seed}")
    _state["gen"] = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _state["gen"]


def next_seed() -> int:
    """A fresh 63-bit seed for a kernel that takes one (dropout)."""
    return int(_state["gen"].integers(0, 2**63 - 1))


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def randn(*shape, dtype=np.float32, requires_grad=False):
    t = K.t_(_state["gen"].standard_normal(_shape(shape), dtype=np.float32).astype(dtype, copy=False))
    t.requires_grad = requires_grad
    return t


def rand(*shape, dtype=np.float32, requires_grad=False):
    t = K.t_(_state["gen"].random(_shape(shape), dtype=np.float32).astype(dtype, copy=False))
    t.requires_grad = requires_grad
    return t


def randint(low, high, shape):
    return K.t_(_state["gen"].integers(low, high, size=tuple(shape), dtype=np.int64))
