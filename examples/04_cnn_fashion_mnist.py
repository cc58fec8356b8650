"""Example 4: CNN (conv-pool-conv-pool-linear, Adam) on Fashion-MNIST, trained twice: the plain
network, then the same network with BatchNorm after each convolution and batch augmentation
(random 28x28 crop of the image padded by 2 pixels + horizontal flip, then per-channel
normalisation), reporting the accuracy change.
Quality bar: >= 85% test accuracy for both (one epoch by default; argv[1] = epochs, argv[2] =
number of training images for a quicker run)."""
import sys
import time

import fastnn as fnn
from fastnn import data, nn, optim

if not data.fashion_mnist_available():
    sys.exit("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
x, y = data.load_fashion_mnist(split="train")
xt, yt = data.load_fashion_mnist(split="test")
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
if len(sys.argv) > 2:
    x, y = x[:int(sys.argv[2])], y[:int(sys.argv[2])]


class BatchTransform(nn.Module):
    """Applies a fastnn.data transform to the input batch (only in training if train_only)."""

    def __init__(self, transform, train_only):
        super().__init__()
        self.transform, self.train_only = transform, train_only

    def forward(self, xb):
        return self.transform(xb) if self.training or not self.train_only else xb

    def extra_repr(self):
        return f"{self.transform!r}, train_only={self.train_only}"


def cnn(batch_norm):
    bn = (lambda c: [nn.BatchNorm2d(c)]) if batch_norm else (lambda c: [])
    return [nn.Conv2d(1, 16, 3, padding=1), *bn(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), *bn(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10)]


def train(model):
    print(model)
    tr = fnn.Trainer(model, optim.Adam(model.parameters(), lr=1e-3), "cross_entropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    tr.fit(x, y, epochs=epochs, batch_size=64, verbose=1)
    acc = tr.evaluate(xt, yt)["accuracy"]
    print(f"test accuracy {acc:.4f} ({time.perf_counter() - t0:.1f} s)")
    return acc


fnn.manual_seed(0)
acc_plain = train(nn.Sequential(*cnn(False)))
fnn.manual_seed(0)
augment = data.Compose([data.RandomCrop(28, padding=2), data.RandomHorizontalFlip()])
normalize = data.Normalize([0.2860], [0.3530])  # Fashion-MNIST training-set pixel mean / std
acc_bn = train(nn.Sequential(BatchTransform(augment, True), BatchTransform(normalize, False), *cnn(True)))
print(f"plain CNN {acc_plain:.4f} -> BatchNorm + augmentation {acc_bn:.4f} "
      f"(change {100 * (acc_bn - acc_plain):+.2f} points)")
print("quality bar (accuracy >= 0.85, both):", "PASS" if min(acc_plain, acc_bn) >= 0.85 else "FAIL")
