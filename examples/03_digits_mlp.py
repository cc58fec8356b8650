"""Example 3: MLP classifiers. sklearn digits 64-128-10 (Adam, cross-entropy,
validation_split=0.2, EarlyStopping); then Fashion-MNIST 784-128-10 when it is installed
(apt-get install dataset-fashion-mnist).
Quality bars: digits >= 97% test accuracy; Fashion-MNIST >= 85%."""
import time

import numpy as np

import fastnn as fnn
from fastnn import data, nn, optim


def run(name, xtr, ytr, xte, yte, d_in, epochs, bar, lr):
    fnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(d_in, 128), nn.ReLU(), nn.Linear(128, 10))
    print(model)
    tr = fnn.Trainer(model, optim.Adam(model.parameters(), lr=lr), "cross_entropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    hist = tr.fit(xtr, ytr, epochs=epochs, batch_size=32 if d_in == 64 else 64, validation_split=0.2, verbose=1,
                  callbacks=[fnn.EarlyStopping("val_loss", patience=3, restore_best_weights=True)])
    acc = tr.evaluate(xte, yte)["accuracy"]
    print(f"{name}: {len(hist.epoch)} epochs, test accuracy {acc:.4f} ({time.perf_counter() - t0:.1f} s)")
    print(f"quality bar ({name} accuracy >= {bar}):", "PASS" if acc >= bar else "FAIL")


x, y = data.load_digits()
perm = np.random.default_rng(0).permutation(len(x))
x, y = x[perm], y[perm]
run("digits", x[:1437], y[:1437], x[1437:], y[1437:], 64, 20, 0.97, 3e-3)

if data.fashion_mnist_available():
    xtr, ytr = data.load_fashion_mnist(split="train", flatten=True)
    xte, yte = data.load_fashion_mnist(split="test", flatten=True)
    run("fashion-mnist", xtr, ytr, xte, yte, 784, 5, 0.85, 1e-3)
else:
    print("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): skipped")
