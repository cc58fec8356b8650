"""fastnn.Trainer: a Keras-style fit / evaluate / predict loop with callbacks and a History.

    trainer = fnn.Trainer(model, fnn.optim.Adam(model.parameters()), "cross_entropy", metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=10, validation_split=0.2, callbacks=[fnn.EarlyStopping(patience=2)])

Reproducibility: shuffling, dropout seeds and parameter init all draw from the global
generator, so ``fastnn.manual_seed(s)`` before building the model gives the same History.
"""
from __future__ import annotations

import copy
import math
import sys
import time

import numpy as np

from . import _C
from . import _kernels as K
from .autograd import no_grad
from .data.dataset import train_val_split
from .data.loader import DataLoader
from .nn import functional as F

Tensor = _C.Tensor

__all__ = ["Trainer", "History", "Callback", "EarlyStopping", "ModelCheckpoint", "LambdaCallback"]

_LOSSES = {"cross_entropy": F.cross_entropy, "categorical_crossentropy": F.cross_entropy,
           "mse": F.mse_loss, "mse_loss": F.mse_loss, "bce_with_logits": F.binary_cross_entropy_with_logits,
           "binary_crossentropy": F.binary_cross_entropy_with_logits}


def _accuracy(out, y):
    """Correct count for logits: argmax over classes, or logit > 0 for one output / binary."""
    o = K.np_(out)
    yy = K.np_(y)
    if o.ndim >= 2 and o.shape[-1] > 1:
        pred = o.argmax(-1)
        return int((pred == yy.reshape(pred.shape)).sum())
    pred = (o.reshape(-1) > 0)
    return int((pred == (yy.reshape(-1) > 0.5)).sum())


_METRICS = {"accuracy": _accuracy, "acc": _accuracy}


class History:
    """Per-epoch logs: ``history.history['loss']``, ``['val_accuracy']``, ... and ``epoch``."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, k):
        return self.history[k]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"

    def plot(self, keys=None, ax=None, show=False):
        """Plot the curves with matplotlib (ImportError with a hint when it is not installed)."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib") from e
        keys = keys or [k for k in self.history if not k.startswith("val_")]
        if ax is None:
            _, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
            axes = axes[0]
        else:
            axes = [ax] * len(keys)
        for a, k in zip(axes, keys):
            a.plot(self.epoch, self.history[k], label=k)
            if "val_" + k in self.history:
                a.plot(self.epoch, self.history["val_" + k], label="val_" + k)
            a.set_xlabel("epoch")
            a.legend()
        if show:
            plt.show()
        return axes


class Callback:
    trainer = None

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...


def _improved(mode, current, best, min_delta):
    if best is None:
        return True
    return current < best - min_delta if mode == "min" else current > best + min_delta


def _mode_for(monitor, mode):
    if mode != "auto":
        return mode
    return "max" if ("acc" in monitor) else "min"


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs; with
    ``restore_best_weights`` the model gets the weights of its best epoch back."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best_weights=False):
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(min_delta)
        self.mode = _mode_for(monitor, mode)
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.best_epoch, self.best_state, self.stopped_epoch = None, 0, None, None, None

    def on_epoch_end(self, epoch, logs=None):
        cur = (logs or {}).get(self.monitor)
        if cur is None:
            raise ValueError(f"EarlyStopping: argument 'monitor': {self.monitor!r} is not in the logs "
                             f"(available: {sorted(logs or {})})")
        if _improved(self.mode, cur, self.best, self.min_delta):
            self.best, self.wait, self.best_epoch = cur, 0, epoch
            if self.restore_best_weights:
                self.best_state = {k: v.clone() for k, v in self.trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.trainer.stop_training = True
                self.stopped_epoch = epoch

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_state is not None:
            self.trainer.model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Save the model's state dict (fastnn.save, atomic) each epoch, or only on improvement of
    ``monitor`` with ``save_best_only``. ``path`` may contain ``{epoch}`` and log keys."""

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        self.path, self.monitor, self.save_best_only = str(path), monitor, save_best_only
        self.mode = _mode_for(monitor, mode)
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        from .serialization import save
        logs = logs or {}
        if self.save_best_only:
            cur = logs.get(self.monitor)
            if cur is None:
                raise ValueError(f"ModelCheckpoint: argument 'monitor': {self.monitor!r} is not in the logs "
                                 f"(available: {sorted(logs)})")
            if not _improved(self.mode, cur, self.best, 0.0):
                return
            self.best = cur
        save(self.trainer.model.state_dict(), self.path.format(epoch=epoch + 1, **logs))


class LambdaCallback(Callback):
    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_end=None, on_train_begin=None,
                 on_train_end=None):
        self._f = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_batch_end=on_batch_end,
                       on_train_begin=on_train_begin, on_train_end=on_train_end)

    def on_epoch_begin(self, epoch, logs=None):
        if self._f["on_epoch_begin"]:
            self._f["on_epoch_begin"](epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._f["on_epoch_end"]:
            self._f["on_epoch_end"](epoch, logs)

    def on_batch_end(self, batch, logs=None):
        if self._f["on_batch_end"]:
            self._f["on_batch_end"](batch, logs)

    def on_train_begin(self, logs=None):
        if self._f["on_train_begin"]:
            self._f["on_train_begin"](logs)

    def on_train_end(self, logs=None):
        if self._f["on_train_end"]:
            self._f["on_train_end"](logs)


class _Progress:
    """One line per epoch, rewritten in place (only on a TTY with verbose=1; verbose=2 prints one
    line per epoch anywhere; verbose=0 prints nothing)."""

    def __init__(self, verbose, stream=None):
        self.stream = stream or sys.stdout
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = verbose == 1 and tty
        self.summary = verbose >= 2 or self.live
        self.last = 0.0

    def update(self, epoch, epochs, done, total, logs, samples, t0, final=False):
        if not (self.live or (final and self.summary)):
            return
        now = time.perf_counter()
        if not final and now - self.last < 0.1:
            return
        self.last = now
        w = 24
        filled = int(w * done / max(total, 1))
        bar = "=" * filled + (">" if filled < w else "") + " " * (w - filled - 1)
        rate = samples / max(now - t0, 1e-9)
        items = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        line = f"Epoch {epoch + 1}/{epochs} [{bar[:w]}] {done}/{total} - {items} - {rate:,.0f} samples/s"
        if self.live:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class Trainer:
    def __init__(self, model, optimizer, loss, metrics=("accuracy",), device=None):
        self.model, self.optimizer = model, optimizer
        if isinstance(loss, str):
            if loss not in _LOSSES:
                raise ValueError(f"Trainer: argument 'loss': expected one of {sorted(_LOSSES)} or a callable, got {loss!r}")
            loss = _LOSSES[loss]
        self.loss_fn = loss
        self.metrics = {}
        for m in metrics or ():
            if callable(m):
                self.metrics[getattr(m, "__name__", "metric")] = m
            elif m in _METRICS:
                self.metrics["accuracy" if m in ("acc", "accuracy") else m] = _METRICS[m]
            else:
                raise ValueError(f"Trainer: argument 'metrics': unknown metric {m!r} (available: {sorted(_METRICS)})")
        self.device = device
        if device is not None:
            model.to(device)
        self.stop_training = False

    def _batch(self, b):
        if self.device is not None and self.device != "cpu":
            return tuple(t.to(self.device) for t in b)
        return b

    def fit(self, x, y, epochs=1, batch_size=32, validation_split=None, validation_data=None, shuffle=True,
            callbacks=(), verbose=1):
        if validation_data is None and validation_split:
            x, y, xv, yv = train_val_split(x, y, val_fraction=validation_split, shuffle=False)
            validation_data = (xv, yv)
        loader = DataLoader((x, y), batch_size=batch_size, shuffle=shuffle)
        history = History()
        callbacks = list(callbacks or ())
        for cb in callbacks:
            cb.trainer = self
        self.stop_training = False
        prog = _Progress(verbose)
        for cb in callbacks:
            cb.on_train_begin()
        model, opt, loss_fn = self.model, self.optimizer, self.loss_fn
        for epoch in range(epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            model.train()
            t0 = time.perf_counter()
            tot_loss, n_seen = 0.0, 0
            correct = {k: 0 for k in self.metrics}
            nb = len(loader)
            logs = {}
            for i, batch in enumerate(loader):
                xb, yb = self._batch(batch)
                out = model(xb)
                loss = loss_fn(out, yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                bs = xb.shape[0]
                lv = loss.item()
                if not math.isfinite(lv):
                    raise FloatingPointError(f"Trainer.fit: the loss became {lv} at epoch {epoch + 1}, batch {i + 1}")
                tot_loss += lv * bs
                n_seen += bs
                for k, fn in self.metrics.items():
                    correct[k] += fn(out, yb)
                logs = {"loss": tot_loss / n_seen, **{k: c / n_seen for k, c in correct.items()}}
                for cb in callbacks:
                    cb.on_batch_end(i, logs)
                prog.update(epoch, epochs, i + 1, nb, logs, n_seen, t0)
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=max(batch_size, 256))
                logs.update({"val_" + k: v for k, v in val.items()})
            prog.update(epoch, epochs, nb, nb, logs, n_seen, t0, final=True)
            history.append(epoch, dict(logs))
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        self.history = history
        return history

    @no_grad()
    def evaluate(self, x, y, batch_size=256):
        """{'loss': mean loss, metric: value} over (x, y) in eval mode."""
        self.model.eval()
        tot, n = 0.0, 0
        correct = {k: 0 for k in self.metrics}
        for batch in DataLoader((x, y), batch_size=batch_size):
            xb, yb = self._batch(batch)
            out = self.model(xb)
            bs = xb.shape[0]
            tot += self.loss_fn(out, yb).item() * bs
            n += bs
            for k, fn in self.metrics.items():
                correct[k] += fn(out, yb)
        self.model.train()
        return {"loss": tot / max(n, 1), **{k: c / max(n, 1) for k, c in correct.items()}}

    @no_grad()
    def predict(self, x, batch_size=256):
        """Model outputs for x (eval mode) as one fastnn.Tensor."""
        self.model.eval()
        outs = []
        for (xb,) in DataLoader((x,), batch_size=batch_size):
            o = self.model(self._batch((xb,))[0])
            outs.append(np.array(K.np_(o)))
        self.model.train()
        return K.t_(np.concatenate(outs) if outs else np.zeros((0,), np.float32))
