"""The hardware-limit probes behind `fastnn bench --probe` run at every SIMD level and give
plausible figures (positive and finite; the values are not compared: the VM is noisy)."""
from __future__ import annotations

import math

import pytest

import fastnn


def test_fma_probe_every_level(simd_level):
    # a finite positive rate from the loop at this level; how fast it is belongs to the benchmark (an
    # instrumented build under load measured 0.42 GFLOP/s here)
    g = fastnn._C._probe_fma_gflops(1, 0.05)
    assert math.isfinite(g) and g > 0


@pytest.mark.parametrize("pattern", ["triad", "adam"])
def test_bandwidth_probe_every_level(simd_level, pattern):
    gbs = fastnn._C._probe_bandwidth_gbs(pattern, 1 << 16, 2, 2)
    assert math.isfinite(gbs) and gbs > 0.01


def test_probe_errors():
    with pytest.raises(ValueError, match="argument 'pattern': expected 'triad' or 'adam', got 'copy'"):
        fastnn._C._probe_bandwidth_gbs("copy", 10, 1)
    with pytest.raises(ValueError, match="argument 'threads': expected >= 1, got 0"):
        fastnn._C._probe_fma_gflops(0)


@pytest.mark.parametrize("threads", [1, 2])
def test_adam_pattern_probe_on_lists_leaves_values_unchanged(simd_level, threads):
    # the bench times it on fastnn's own Adam buffers between Adam steps: it must not touch the values.
    # Sizes: empty, one element, a vector tail, and a total past the 2-thread grain (the cut falls
    # inside the big tensor).
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = [0, 1, 17, 40000, 33]
    lists = [[rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(4)]
    lists[3] = [np.abs(x) for x in lists[3]]  # exp_avg_sq >= 0, as in any Adam state
    before = [[x.copy() for x in lst] for lst in lists]
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(threads)
    try:
        assert fastnn._C._probe_adam_pattern(*[[fastnn.from_numpy(x) for x in lst] for lst in lists]) is None
    finally:
        fastnn.set_num_threads(old)
    for lst, ref in zip(lists, before):
        for x, r in zip(lst, ref):
            np.testing.assert_array_equal(x, r)


def test_adam_pattern_probe_errors():
    import numpy as np

    a = [np.zeros(4, np.float32)]
    with pytest.raises(ValueError, match=r"argument 'grads\[0\]': expected shape \(3,\)"):
        fastnn._C._probe_adam_pattern([np.zeros(3, np.float32)], a, a, a)
    with pytest.raises(TypeError, match=r"argument 'exp_avgs\[0\]'.*float32"):
        fastnn._C._probe_adam_pattern(a, a, [np.zeros(4, np.float64)], a)


@pytest.mark.skipif(not fastnn.cuda.is_available(), reason="no CUDA device (nor the emulator)")
def test_adam_pattern_probe_is_cpu_only():
    import numpy as np

    a = [fastnn.from_numpy(np.zeros(4, np.float32)).to("cuda")]
    with pytest.raises(ValueError, match="argument 'params': expected CPU tensors, got tensors on cuda"):
        fastnn._C._probe_adam_pattern(a, a, a, a)
