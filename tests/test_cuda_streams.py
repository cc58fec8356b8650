"""CUDA streams (python/fastnn/cuda.py, csrc/cuda_backend/backend.cpp): a per-thread current stream
on which kernels, memsets and device scratch are issued, and the caching allocator's per-stream
pools (csrc/cuda_backend/device_allocator.cpp). Under the emulator work is synchronous, so these
tests check identity, scoping, per-thread state, results and the allocator's reuse rule."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import fastnn
from fastnn import cuda

pytestmark = pytest.mark.skipif(not cuda.is_available(), reason="no 'cuda' device (real or emulated)")


def test_default_and_new_streams_have_distinct_identities():
    d = cuda.default_stream()
    assert d.cuda_stream == 0
    assert cuda.current_stream() == d
    s = cuda.Stream()
    assert s.cuda_stream != 0 and s != d
    s.synchronize()
    s.close()
    s.close()  # idempotent


def test_stream_context_sets_and_restores_current_stream():
    s1, s2 = cuda.Stream(), cuda.Stream()
    with cuda.stream(s1):
        assert cuda.current_stream() == s1
        with cuda.stream(s2):
            assert cuda.current_stream() == s2
        assert cuda.current_stream() == s1
    assert cuda.current_stream() == cuda.default_stream()


def test_current_stream_is_per_thread():
    s = cuda.Stream()
    seen = {}

    def other():
        seen["other"] = cuda.current_stream().cuda_stream

    with cuda.stream(s):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert cuda.current_stream() == s
    assert seen["other"] == 0


def test_kernels_on_a_stream_give_the_default_streams_results(rng):
    a = rng.standard_normal((33, 17)).astype(np.float32)
    b = rng.standard_normal((17, 65)).astype(np.float32)
    ref = fastnn.ops.matmul(fastnn.tensor(a, device="cuda"), fastnn.tensor(b, device="cuda")).cpu().numpy()
    s = cuda.Stream()
    with cuda.stream(s):
        x, y = fastnn.tensor(a, device="cuda"), fastnn.tensor(b, device="cuda")
        out = fastnn.ops.matmul(x, y)
        z = fastnn.zeros((5, 7), device="cuda")
    s.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), ref)
    np.testing.assert_array_equal(z.cpu().numpy(), np.zeros((5, 7), np.float32))


def test_memory_freed_on_a_stream_is_reused_only_on_that_stream():
    cuda.empty_cache()
    nbytes = 1 << 20
    s = cuda.Stream()
    with cuda.stream(s):
        t = fastnn.empty((nbytes // 4,), device="cuda")
    del t  # cached in s's pool
    before = cuda.memory_stats()["num_cache_hits"]
    u = fastnn.empty((nbytes // 4,), device="cuda")  # default stream: must not take s's block
    assert cuda.memory_stats()["num_cache_hits"] == before
    del u
    with cuda.stream(s):
        v = fastnn.empty((nbytes // 4,), device="cuda")  # s again: a cache hit
    assert cuda.memory_stats()["num_cache_hits"] == before + 1
    del v
    s.close()  # s's idle blocks join the default pool
    w = fastnn.empty((nbytes // 4,), device="cuda")
    assert cuda.memory_stats()["num_cache_hits"] == before + 2
    del w


def test_closing_the_current_stream_falls_back_to_the_default():
    s = cuda.Stream()
    cuda.set_stream(s)
    try:
        s.close()
        assert cuda.current_stream().cuda_stream == 0
    finally:
        cuda.set_stream(cuda.default_stream())


def test_bad_arguments():
    with pytest.raises(TypeError, match="argument 's'"):
        cuda.stream("not a stream")
    with pytest.raises(TypeError, match="argument 's'"):
        cuda.set_stream(3)
    s = cuda.Stream()
    s.close()
    with pytest.raises(ValueError, match="closed"):
        cuda.set_stream(s)
    with pytest.raises(ValueError, match="device index"):
        cuda.Stream(device=99)
