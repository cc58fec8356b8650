"""DataLoader: batches from an array dataset, seeded shuffling, drop_last."""
from __future__ import annotations

import numpy as np

from .. import _kernels as K
from .. import random as _random
from .dataset import TensorDataset


class DataLoader:
    """Iterate over ``dataset`` (a TensorDataset/Subset, or a tuple of arrays) in batches of
    fastnn tensors. Shuffling draws a permutation per epoch from ``np.random.default_rng(seed)``
    when ``seed`` is given, else from the global generator (fastnn.manual_seed).
    Floating arrays are handed out as float32, integer arrays as int64."""

    def __init__(self, dataset, batch_size=32, shuffle=False, drop_last=False, seed=None):
        if isinstance(dataset, (tuple, list)):
            dataset = TensorDataset(*dataset)
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"DataLoader: argument 'batch_size': expected a positive integer, got {batch_size!r}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self._gen = np.random.default_rng(seed) if seed is not None else None
        arrays = getattr(dataset, "arrays", None)
        if arrays is not None:
            # convert once, not per batch
            self._arrays = tuple(_canon(a) for a in arrays)
        else:
            self._arrays = None

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            g = self._gen if self._gen is not None else _random.generator()
            order = g.permutation(n)
        else:
            order = None
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for s in range(0, stop, self.batch_size):
            e = min(s + self.batch_size, n)
            idx = order[s:e] if order is not None else slice(s, e)
            if self._arrays is not None:
                batch = tuple(a[idx] for a in self._arrays)
            else:
                batch = tuple(_canon(a) for a in self.dataset[idx if order is not None else np.arange(s, e)])
            yield tuple(K.t_(b) for b in batch)


def _canon(a):
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.dtype != np.float32:
        return a.astype(np.float32)
    if a.dtype.kind in "iu" and a.dtype != np.int64:
        return a.astype(np.int64)
    return a
