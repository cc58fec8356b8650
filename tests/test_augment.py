"""fastnn.data augmentation: every output image is checked against a per-image reference
(explicit pad + slice / mirror) using the offsets and flip decisions the transform's own seeded
generator draws (replayed from an identical seed)."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import data


def _batch(rng, n=7, c=3, h=5, w=6):
    return rng.standard_normal((n, c, h, w)).astype(np.float32)


def test_random_crop_matches_per_image_reference(rng):
    x = _batch(rng)
    crop = data.RandomCrop((4, 5), padding=2, fill=-1.0, seed=11)
    out = crop(x)
    replay = np.random.default_rng(11)
    oy = replay.integers(0, 5 + 4 - 4 + 1, len(x))
    ox = replay.integers(0, 6 + 4 - 5 + 1, len(x))
    assert out.shape == (7, 3, 4, 5) and out.dtype == np.float32
    for i in range(len(x)):
        padded = np.pad(x[i], ((0, 0), (2, 2), (2, 2)), constant_values=-1.0)
        np.testing.assert_array_equal(out[i], padded[:, oy[i]:oy[i] + 4, ox[i]:ox[i] + 5])
    assert len({(a, b) for a, b in zip(oy, ox)}) > 1  # offsets differ between images


def test_random_crop_without_padding_is_a_window(rng):
    x = _batch(rng)
    out = data.RandomCrop(5, seed=0)(x[:, :, :5, :])
    assert out.shape == (7, 3, 5, 5)
    full = data.RandomCrop((5, 6), seed=0)(x)
    np.testing.assert_array_equal(full, x)  # the only window is the image


def test_flip(rng):
    x = _batch(rng, n=64)
    out = data.RandomHorizontalFlip(0.5, seed=3)(x)
    flips = np.random.default_rng(3).random(64) < 0.5
    for i in range(64):
        np.testing.assert_array_equal(out[i], x[i, :, :, ::-1] if flips[i] else x[i])
    assert 0 < flips.sum() < 64
    np.testing.assert_array_equal(data.RandomHorizontalFlip(0.0, seed=1)(x), x)
    np.testing.assert_array_equal(data.RandomHorizontalFlip(1.0, seed=1)(x), x[..., ::-1])


def test_normalize_and_compose_on_tensors(rng):
    x = _batch(rng)
    mean, std = [0.1, -0.2, 0.3], [0.5, 2.0, 1.5]
    norm = data.Normalize(mean, std)
    ref = (x.astype(np.float64) - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]
    np.testing.assert_allclose(norm(x), ref, rtol=1e-6, atol=1e-6)
    t = data.Compose([data.RandomCrop(5, padding=1, seed=4), data.RandomHorizontalFlip(seed=5), norm])
    out = t(fastnn.tensor(x))
    assert isinstance(out, fastnn.Tensor) and tuple(out.shape) == (7, 3, 5, 5)
    again = data.Compose([data.RandomCrop(5, padding=1, seed=4), data.RandomHorizontalFlip(seed=5), norm])(x)
    np.testing.assert_array_equal(out.numpy(), again)  # seeded: repeatable


def test_global_seed_makes_default_transforms_repeatable(rng):
    x = _batch(rng)
    fastnn.manual_seed(7)
    a = data.RandomCrop(4, padding=1)(x)
    fastnn.manual_seed(7)
    b = data.RandomCrop(4, padding=1)(x)
    np.testing.assert_array_equal(a, b)


def test_errors(rng):
    with pytest.raises(ValueError, match="N, C, H, W"):
        data.RandomCrop(3)(np.zeros((4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="larger than the padded image"):
        data.RandomCrop(9, padding=1)(_batch(rng))
    with pytest.raises(ValueError, match="probability"):
        data.RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="positive"):
        data.Normalize([0.0], [0.0])
    with pytest.raises(ValueError, match="channel statistics"):
        data.Normalize([0.0, 0.0], [1.0, 1.0])(_batch(rng))
