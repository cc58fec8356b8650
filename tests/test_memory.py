"""Memory: no op leaks, and a request too large for memory fails cleanly.

* Every public op (tests/op_cases.py) is called many times on the same inputs: the process RSS
  stays within RSS_SLACK_MIB of its value after a warm-up, and fastnn's allocators hold no more
  live bytes afterwards than before (the second check catches a leaked tensor storage even when
  the caching allocator hides it from the RSS).
  The count: FASTNN_MEMORY_CALLS (default 10000 by hand: ``FASTNN_MEMORY_CALLS=10000 pytest
  tests/test_memory.py``); CI sets a smaller count, and slow ops (emulated CUDA, attention, conv)
  are capped by a per-op time budget (FASTNN_MEMORY_SECONDS, default 0.5 s) with a floor of 5 calls (the live-bytes check needs one).
* An allocation too large for the machine raises MemoryError naming the size in bytes, for a
  tensor factory and inside an op, on the CPU and on the emulated device; the process then keeps
  working (the next call succeeds and frees normally).
"""
from __future__ import annotations

import mmap
import os
import re
import time

import numpy as np
import pytest

import fastnn as fnn
from fastnn import ops

import op_cases as C
from conftest import DEVICES

CALLS = int(os.environ.get("FASTNN_MEMORY_CALLS", "10000"))
SECONDS = float(os.environ.get("FASTNN_MEMORY_SECONDS", "0.5"))
MIN_CALLS = 5
# tools/sanitize.sh raises it: under ASan freed blocks wait in the quarantine (up to 256 MiB) before
# reuse, so RSS grows without a leak; the live-bytes check and LeakSanitizer cover leaks there.
RSS_SLACK_MIB = float(os.environ.get("FASTNN_MEMORY_RSS_SLACK_MIB", "4.0"))
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def _live_bytes(device):
    s = fnn.memory_stats() if device == "cpu" else fnn.cuda.memory_stats(0)
    return s["allocated_bytes"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(C.CASES))
def test_no_leak(name, device):
    try:
        call = C.make(name, device)
        out = call()  # warm-up: caches, thread pools, lazily created state
    except Exception as e:  # noqa: BLE001
        C.handle_unsupported(e, name, device)
    del out
    call()
    live0, rss0 = _live_bytes(device), _rss_mib()
    n, t0 = 0, time.perf_counter()
    # The budget is checked as we go: on a loaded machine one call's time varies 100-fold.
    while n < CALLS and (n < MIN_CALLS or time.perf_counter() - t0 < SECONDS):
        call()
        n += 1
    live1, rss1 = _live_bytes(device), _rss_mib()
    assert live1 <= live0, f"{name}: {live1 - live0} bytes of tensors still allocated after {n} calls"
    assert rss1 - rss0 < RSS_SLACK_MIB, f"{name}: RSS grew by {rss1 - rss0:.1f} MiB over {n} calls"


def test_leak_detector_detects():
    """The two checks above can fail: keeping every output alive shows in both."""
    call = C.make("matmul", "cpu")
    call()
    fnn.empty_cache()  # else blocks cached by earlier tests serve the allocations below without new RSS
    live0, rss0 = _live_bytes("cpu"), _rss_mib()
    kept = [call() for _ in range(2000)]  # 2000 x 2*17*9 floats ~ 2.4 MiB of storage + objects
    assert _live_bytes("cpu") > live0
    # 64 MiB of certainly fresh pages, all written (a heap allocation could reuse pages earlier tests
    # left resident, which would not show in RSS).
    kept_big = mmap.mmap(-1, 64 << 20)
    kept_big.write(b"\x01" * (64 << 20))
    assert _rss_mib() - rss0 > RSS_SLACK_MIB
    del kept, kept_big


_TOO_BIG = 1 << 50  # 4 PiB of float32: more than any machine, less than the int64 size limit


def _expect_memory_error(fn, nbytes):
    with pytest.raises(MemoryError) as ei:
        fn()
    msg = str(ei.value)
    # The size appears in bytes (any digit grouping) or in a binary unit.
    digits = re.sub(r"[,_' ]", "", msg)
    assert str(nbytes) in digits or re.search(r"\d+(\.\d+)? ?[PT]i?B", msg), f"size missing from: {msg}"


@pytest.mark.parametrize("device", DEVICES)
def test_too_large_raises_memory_error_and_process_survives(device):
    nbytes = _TOO_BIG * 4
    _expect_memory_error(lambda: fnn.empty(_TOO_BIG, device=device), nbytes)
    _expect_memory_error(lambda: fnn.zeros(_TOO_BIG, device=device), nbytes)
    # Inside an op: the output of a broadcast is allocated by the binding.
    x = C.dev(np.ones((1, 1), np.float32), device)
    try:
        ops.broadcast_to(x, (1 << 25, 1 << 25))
    except MemoryError as e:
        assert str(4 << 50) in re.sub(r"[,_' ]", "", str(e)) or re.search(r"[PT]i?B", str(e)), str(e)
    except Exception as e:  # noqa: BLE001
        if not (device != "cpu" and C.not_on_device(e)):
            raise
    else:
        pytest.fail("broadcast_to to 2^50 elements did not raise")
    # Still usable: an ordinary call works and memory is given back.
    a = C.dev(np.eye(3, dtype=np.float32), device)
    np.testing.assert_array_equal(ops.matmul(a, a).cpu().numpy(), np.eye(3))


def test_size_overflow_is_value_error():
    """Shapes whose element count overflows int64 are rejected before any allocation."""
    with pytest.raises((ValueError, MemoryError)):
        fnn.empty(1 << 40, 1 << 40)
