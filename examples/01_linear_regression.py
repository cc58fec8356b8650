"""Example 1: linear regression by gradient descent on y = 2x (+ noise).
Quality bar: recovers w ≈ 2 (±0.05) and b ≈ 0 (±0.05)."""
import time

import numpy as np

import fastnn as fnn
from fastnn import nn, optim

fnn.manual_seed(0)
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (256, 1)).astype(np.float32)
y = (2.0 * x + 0.01 * rng.standard_normal((256, 1))).astype(np.float32)

model = nn.Linear(1, 1)
opt = optim.SGD(model.parameters(), lr=0.1)
xt, yt = fnn.tensor(x), fnn.tensor(y)
t0 = time.perf_counter()
for step in range(200):
    loss = nn.functional.mse_loss(model(xt), yt)
    opt.zero_grad()
    loss.backward()
    opt.step()
w, b = model.weight.item(), model.bias.item()
print(f"w = {w:.4f}, b = {b:.4f}, final MSE = {loss.item():.2e} ({time.perf_counter() - t0:.2f} s)")
ok = abs(w - 2) < 0.05 and abs(b) < 0.05
print("quality bar (|w-2| < 0.05, |b| < 0.05):", "PASS" if ok else "FAIL")
