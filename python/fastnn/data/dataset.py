"""Array-backed datasets and splits. Samples are gathered a whole batch at a time (one NumPy
fancy-index per array), never one Python object per sample."""
from __future__ import annotations

import numpy as np

from .. import _C
from .. import random as _random

Tensor = _C.Tensor


def _as_array(a, name):
    if isinstance(a, Tensor):
        a = a.numpy() if not a.is_cuda else a.cpu().numpy()
    a = np.asarray(a)
    if a.ndim == 0:
        raise ValueError(f"TensorDataset: argument '{name}': expected an array with a sample dimension, got a scalar")
    return a


class TensorDataset:
    """Dataset over arrays sharing their first dimension: ``ds[idx]`` → tuple of arrays."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: expected at least one array")
        self.arrays = tuple(_as_array(a, f"arrays[{i}]") for i, a in enumerate(arrays))
        n = len(self.arrays[0])
        for i, a in enumerate(self.arrays):
            if len(a) != n:
                raise ValueError(f"TensorDataset: argument 'arrays[{i}]': expected {n} samples "
                                 f"(the length of arrays[0]), got {len(a)}")

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, idx):
        return tuple(a[idx] for a in self.arrays)


class Subset:
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, idx):
        return self.dataset[self.indices[idx]]

    @property
    def arrays(self):
        return tuple(a[self.indices] for a in self.dataset.arrays)


def random_split(dataset, lengths, seed=None):
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1)."""
    n = len(dataset)
    lengths = list(lengths)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1.0) < 1e-6:
        counts = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"random_split: argument 'lengths': expected lengths summing to {n} (the dataset size), "
                         f"got {lengths} (sum {sum(lengths)})")
    g = np.random.default_rng(seed) if seed is not None else _random.generator()
    perm = g.permutation(n)
    out, start = [], 0
    for k in lengths:
        out.append(Subset(dataset, perm[start:start + k]))
        start += k
    return out


def train_val_split(*arrays, val_fraction=0.2, shuffle=True, seed=None):
    """(train arrays..., val arrays...) split along the first dimension.

    With ``shuffle=False`` the LAST ``val_fraction`` of the samples is the validation set
    (Keras' validation_split convention)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"train_val_split: argument 'val_fraction': expected a value in [0, 1), got {val_fraction}")
    arrays = [_as_array(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    n = len(arrays[0])
    n_val = int(round(n * val_fraction))
    if shuffle:
        g = np.random.default_rng(seed) if seed is not None else _random.generator()
        perm = g.permutation(n)
    else:
        perm = np.arange(n)
    tr, va = perm[:n - n_val], perm[n - n_val:]
    return tuple(a[tr] for a in arrays) + tuple(a[va] for a in arrays)
