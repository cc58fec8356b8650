"""The hardware-limit probes behind `fastnn bench --probe` run at every SIMD level and give
plausible figures (positive and finite; the values are not compared: the VM is noisy)."""
from __future__ import annotations

import math

import pytest

import fastnn


def test_fma_probe_every_level(simd_level):
    g = fastnn._C._probe_fma_gflops(1, 0.05)
    assert math.isfinite(g) and g > 0.5


@pytest.mark.parametrize("pattern", ["triad", "adam"])
def test_bandwidth_probe_every_level(simd_level, pattern):
    gbs = fastnn._C._probe_bandwidth_gbs(pattern, 1 << 16, 2, 2)
    assert math.isfinite(gbs) and gbs > 0.01


def test_probe_errors():
    with pytest.raises(ValueError, match="argument 'pattern': expected 'triad' or 'adam', got 'copy'"):
        fastnn._C._probe_bandwidth_gbs("copy", 10, 1)
    with pytest.raises(ValueError, match="argument 'threads': expected >= 1, got 0"):
        fastnn._C._probe_fma_gflops(0)
