"""Example 2: MLP binary classifier on 100 synthetic features (BCEWithLogits, Adam).
Quality bar: >= 90% held-out accuracy (the labels come from a noisy non-linear rule)."""
import time

import numpy as np

import fastnn as fnn
from fastnn import nn, optim

rng = np.random.default_rng(0)
n, d = 12000, 100
x = rng.standard_normal((n, d)).astype(np.float32)
w = rng.standard_normal(d)
score = x @ w / np.sqrt(d) + 0.5 * np.sin(3 * x[:, 0]) + 0.05 * rng.standard_normal(n)
y = (score > 0).astype(np.float32).reshape(-1, 1)

fnn.manual_seed(0)
model = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 1))
trainer = fnn.Trainer(model, optim.Adam(model.parameters(), lr=1e-3), "bce_with_logits", metrics=["accuracy"])
t0 = time.perf_counter()
trainer.fit(x[:10000], y[:10000], epochs=10, batch_size=64, validation_split=0.1, verbose=1)
res = trainer.evaluate(x[10000:], y[10000:])
print(f"test loss {res['loss']:.4f}, test accuracy {res['accuracy']:.4f} ({time.perf_counter() - t0:.1f} s)")
print("quality bar (accuracy >= 0.90):", "PASS" if res["accuracy"] >= 0.90 else "FAIL")
