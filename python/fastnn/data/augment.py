"""Augmentation of image batches (N, C, H, W): random crop with padding, horizontal flip,
normalisation, composable with :class:`Compose` and seeded.

Each transform works on a whole batch at once with vectorised NumPy (one fancy-indexing gather
for the crops, one ``where`` for the flips): no Python loop over images or pixels. A random
transform owns a ``numpy.random.Generator`` seeded from ``seed`` or, when ``seed`` is None, from
fastnn's global generator at construction (so ``fastnn.manual_seed`` makes a run repeatable).
Inputs may be NumPy arrays or fastnn Tensors (CPU); the output has the input's type, float32.
"""
from __future__ import annotations

import numpy as np

from .. import _C
from .. import random as _random

__all__ = ["Compose", "RandomCrop", "RandomHorizontalFlip", "Normalize"]


def _as_batch(x, name):
    is_t = isinstance(x, _C.Tensor)
    a = (x.numpy() if not x.is_cuda else x.cpu().numpy()) if is_t else np.asarray(x)
    if a.ndim != 4:
        raise ValueError(f"{name}: expected an image batch (N, C, H, W), got shape {a.shape}")
    return a, is_t


def _wrap(a, is_t):
    a = np.ascontiguousarray(a, dtype=np.float32)
    return _C.from_numpy(a) if is_t else a


def _rng(seed):
    return np.random.default_rng(_random.next_seed() if seed is None else seed)


class Compose:
    """Applies the transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class RandomCrop:
    """Pads each image by ``padding`` pixels (``fill``) on every side, then crops a random
    ``size`` window (an int for a square, or (h, w)), independently per image."""

    def __init__(self, size, padding=0, fill=0.0, seed=None):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"RandomCrop: argument 'size': expected a positive int or (h, w), got {size!r}")
        if padding < 0:
            raise ValueError(f"RandomCrop: argument 'padding': expected >= 0, got {padding}")
        self.padding, self.fill = int(padding), float(fill)
        self.rng = _rng(seed)

    def __call__(self, x):
        a, is_t = _as_batch(x, "RandomCrop")
        n, c, h, w = a.shape
        p = self.padding
        ch, cw = self.size
        if ch > h + 2 * p or cw > w + 2 * p:
            raise ValueError(f"RandomCrop: crop {self.size} larger than the padded image ({h + 2 * p}, {w + 2 * p})")
        if p:
            a = np.pad(a, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.fill)
        oy = self.rng.integers(0, h + 2 * p - ch + 1, n)
        ox = self.rng.integers(0, w + 2 * p - cw + 1, n)
        rows = (oy[:, None] + np.arange(ch))[:, None, :, None]
        cols = (ox[:, None] + np.arange(cw))[:, None, None, :]
        out = a[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]
        return _wrap(out, is_t)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirrors each image left-right with probability ``p``."""

    def __init__(self, p=0.5, seed=None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: argument 'p': expected a probability in [0, 1], got {p}")
        self.p = float(p)
        self.rng = _rng(seed)

    def __call__(self, x):
        a, is_t = _as_batch(x, "RandomHorizontalFlip")
        flip = self.rng.random(a.shape[0]) < self.p
        return _wrap(np.where(flip[:, None, None, None], a[..., ::-1], a), is_t)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class Normalize:
    """(x - mean[c]) / std[c] per channel."""

    def __init__(self, mean, std):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float32))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float32))
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError(f"Normalize: expected mean and std of one shape (C,), got {self.mean.shape} and "
                             f"{self.std.shape}")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: argument 'std': expected positive values, got {self.std.tolist()}")

    def __call__(self, x):
        a, is_t = _as_batch(x, "Normalize")
        if self.mean.size not in (1, a.shape[1]):
            raise ValueError(f"Normalize: {self.mean.size} channel statistics for a batch with {a.shape[1]} channels")
        m, s = self.mean[None, :, None, None], self.std[None, :, None, None]
        return _wrap((a - m) / s, is_t)

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"
