"""Concurrency: every public op, and whole training steps, called from several Python threads at
once give exactly the results of serial calls, on the CPU and on the emulated CUDA device; and the
GIL is released while a kernel runs (another Python thread keeps running meanwhile).

Results are compared bitwise with a serial call on the same inputs: every op is deterministic
at a fixed thread count (tests/test_determinism.py), so any difference is interference between
the concurrent calls (shared scratch buffers, allocator races, global state).
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn, ops, optim

import op_cases as C
from conftest import DEVICES

N_THREADS = 4


def _in_threads(fn, n=N_THREADS):
    """Runs fn(i) in n threads started together; returns their results (re-raises the first error)."""
    results, errors = [None] * n, []
    start = threading.Barrier(n)

    def body(i):
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    ts = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    assert not any(t.is_alive() for t in ts), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(C.CASES))
def test_op_from_threads(name, device):
    try:
        call = C.make(name, device)
        expected = C.run(call)
    except Exception as e:  # noqa: BLE001
        C.handle_unsupported(e, name, device)
    calls = 2 if device == "cpu" else 1

    def worker(i):
        # Each thread also has its own inputs (another seed) to catch cross-talk between calls.
        own = C.make(name, device, seed=1 + i)
        return [(C.run(call), C.run(own)) for _ in range(calls)]
    per_thread = _in_threads(worker)
    for i, rs in enumerate(per_thread):
        own_expected = C.run(C.make(name, device, seed=1 + i))
        for shared, own in rs:
            assert C.bitwise_equal(shared, expected), f"{name}: a concurrent call differs from the serial one"
            assert C.bitwise_equal(own, own_expected), f"{name}: thread {i}'s own call differs from serial"


def _model(seed, device):
    fnn.manual_seed(seed)
    m = nn.Sequential(nn.Linear(12, 33), nn.GELU(), nn.LayerNorm(33), nn.Linear(33, 5))  # no dropout: no RNG
    return m.to(device) if device != "cpu" else m


def _train_fixed(model, device, steps=4):
    """Training steps on fixed batches (no shared random state)."""
    x, y = C.tiny_data(device)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for s in range(steps):
        xb, yb = x[s * 16:(s + 1) * 16], y[s * 16:(s + 1) * 16]
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(np.float32(loss.item()))
    return np.array(losses).tobytes(), C.params_bytes(model)


@pytest.mark.parametrize("device", DEVICES)
def test_training_steps_from_threads(device):
    """Four models trained at once in four threads end exactly where serial training takes them."""
    try:
        models = [_model(10 + i, device) for i in range(N_THREADS)]
        serial = [_train_fixed(_model(10 + i, device), device) for i in range(N_THREADS)]
    except Exception as e:  # noqa: BLE001
        C.skip_if_no_kernel(e, device)
    concurrent = _in_threads(lambda i: _train_fixed(models[i], device))
    for i in range(N_THREADS):
        assert concurrent[i] == serial[i], f"model {i}: concurrent training differs from serial training"


def _gil_gaps(kernel, seconds):
    """Runs kernel() repeatedly in a thread for about `seconds` while this thread counts; returns
    (longest gap between two of this thread's iterations, time one kernel call takes)."""
    kernel()  # warm up (allocator, thread pool)
    t0 = time.perf_counter()
    kernel()
    one = time.perf_counter() - t0
    done = threading.Event()

    def loop():
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            kernel()
        done.set()
    th = threading.Thread(target=loop)
    th.start()
    last, gap = time.perf_counter(), 0.0
    while not done.is_set():
        now = time.perf_counter()
        gap, last = max(gap, now - last), now
        time.sleep(0)  # yield the GIL
    th.join()
    return gap, one


def _gil_factories(device):
    """{name: (make(size) -> kernel, first size, largest size)}."""
    rng = np.random.default_rng(0)

    def r(*shape):
        return C.dev(rng.standard_normal(shape).astype(np.float32), device)

    def gemm(s):
        a = r(s, s)
        return lambda: ops.gemm(a, a)

    if device == "cpu":
        def conv(s):
            x, w = r(s, 32, 48, 48), r(32, 32, 3, 3)
            return lambda: ops.conv2d(x, w, padding=1)

        def attention(s):
            q = r(s, 4, 768, 64)
            return lambda: ops.attention(q, q, q)
        return {"gemm": (gemm, 700, 6000), "conv2d": (conv, 16, 1024), "attention": (attention, 2, 256)}
    return {"gemm": (gemm, 160, 1200)}


def _long_kernel(make, size, cap, seconds=0.1):
    """(kernel, size): the problem grows until one call takes >= `seconds` (a held GIL must be told
    from scheduler slices, whatever the machine's speed: an idle CI machine is several times
    faster than a loaded one), or until `cap`."""
    while True:
        k = make(size)
        k()  # warm-up
        t0 = time.perf_counter()
        k()
        if time.perf_counter() - t0 >= seconds or size >= cap:
            return k, size
        size = min(cap, int(size * 1.5) + 1)


@pytest.mark.parametrize("device", DEVICES)
def test_gil_released_during_kernels(device):
    """While a long kernel runs in one thread, another Python thread is never blocked for the
    kernel's whole duration (it would be if the binding held the GIL)."""
    for name, (make, size, cap) in _gil_factories(device).items():
        kernel, size = _long_kernel(make, size, cap)
        gap, one = _gil_gaps(kernel, seconds=1.0)
        for _ in range(3):  # the sizing call ran slow (a burst of other load): a bigger problem
            if one > 0.05 or size >= cap:
                break
            kernel, size = _long_kernel(make, min(cap, 2 * size), cap)
            gap, one = _gil_gaps(kernel, seconds=1.0)
        # A held GIL blocks the counting thread for >= one whole call; released, the gaps are
        # scheduler slices (a few ms, tens on a loaded 2-core VM).
        assert one > 0.05, f"{name}: the kernel is still too short ({one * 1e3:.1f} ms) for this test to mean anything"
        assert gap < 0.6 * one, f"{name}: another thread waited {gap * 1e3:.0f} ms during a {one * 1e3:.0f} ms call"
