"""Example 4: CNN (conv-pool-conv-pool-linear, Adam) on Fashion-MNIST.
Quality bar: >= 85% test accuracy (one epoch by default; pass the epoch count as argv[1])."""
import sys
import time

import fastnn as fnn
from fastnn import data, nn, optim

if not data.fashion_mnist_available():
    sys.exit("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
x, y = data.load_fashion_mnist(split="train")
xt, yt = data.load_fashion_mnist(split="test")
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 1

fnn.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
print(model)
tr = fnn.Trainer(model, optim.Adam(model.parameters(), lr=1e-3), "cross_entropy", metrics=["accuracy"])
t0 = time.perf_counter()
tr.fit(x, y, epochs=epochs, batch_size=64, verbose=1)
acc = tr.evaluate(xt, yt)["accuracy"]
print(f"test accuracy {acc:.4f} ({time.perf_counter() - t0:.1f} s)")
print("quality bar (accuracy >= 0.85):", "PASS" if acc >= 0.85 else "FAIL")
