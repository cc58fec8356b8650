"""The call path of fastnn.ops.gemm / matmul / linear (csrc/bindings/fastcall.h, bind_gemm.cpp):
they are C builtins parsing their own arguments, and products of at most 131072 multiply-adds
run with the GIL held. Numerics are tested in test_gemm.py; here: the Python-level signature
contract (same as a `def`), argument conversions, reference counts, and both sides of the GIL
threshold (results against float64 NumPy with test_gemm's bound, and whether another Python
thread runs during a large product).
"""
from __future__ import annotations

import inspect
import sys
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn.ops import gemm, linear, matmul

from test_gemm import check_close, gemm_ref, rand

HOLD_MAX = 131072  # kGemmHoldGilMaxWork in bind_gemm.cpp


def test_signatures_and_docs():
    assert str(inspect.signature(gemm)) == ("(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, "
                                            "bias=None, activation=None, out=None)")
    assert str(inspect.signature(matmul)) == "(a, b, *, out=None)"
    assert str(inspect.signature(linear)) == "(x, weight, bias=None, *, activation=None)"
    for f in (gemm, matmul, linear):
        assert f.__doc__ and "@" in f.__doc__
        assert f is getattr(fastnn._C, f.__name__)


def test_argument_errors_like_a_def(rng):
    a = rand(rng, 3, 4)
    with pytest.raises(TypeError, match=r"gemm\(\) missing required argument 'b'"):
        gemm(a)
    with pytest.raises(TypeError, match=r"gemm\(\) takes at most 2 positional arguments but 3 were given"):
        gemm(a, a, True)
    with pytest.raises(TypeError, match=r"gemm\(\) got an unexpected keyword argument 'transb'"):
        gemm(a, a, transb=True)
    with pytest.raises(TypeError, match=r"gemm\(\) got multiple values for argument 'a'"):
        gemm(a, a, a=a)
    with pytest.raises(TypeError, match=r"gemm: argument 'alpha': expected a float, got str"):
        gemm(a, a, trans_b=True, alpha="2")
    with pytest.raises(TypeError, match=r"gemm: argument 'beta': expected a float, got NoneType"):
        gemm(a, a, trans_b=True, beta=None)
    with pytest.raises(TypeError, match=r"gemm: argument 'trans_a': expected a bool, got str"):
        gemm(a, a, trans_a="yes")
    with pytest.raises(TypeError, match=r"linear\(\) takes at most 3 positional arguments but 4 were given"):
        linear(a, a, None, "relu")
    with pytest.raises(TypeError, match=r"linear\(\) missing required argument 'weight'"):
        linear(x=a)
    with pytest.raises(TypeError, match=r"matmul\(\) got an unexpected keyword argument 'c'"):
        matmul(a, a.T, c=a)
    # Errors raised by the op itself still arrive as fastnn's exceptions.
    with pytest.raises(ValueError, match=r"gemm: argument 'b': inner dimensions do not match"):
        gemm(a, a)
    with pytest.raises(TypeError, match=r"gemm: argument 'a': expected a fastnn.Tensor"):
        gemm([[1.0]], a)


def test_argument_conversions(rng):
    a, b = rand(rng, 5, 7), rand(rng, 7, 3)
    ref, tol = gemm_ref(a, b, alpha=2.0)
    # Keywords for the positional parameters; int / NumPy scalars for alpha; NumPy bools and
    # ints for the flags (pybind11's conversions, as before).
    check_close(gemm(b=b, a=a, alpha=2), ref, tol)
    check_close(gemm(a, b, alpha=np.float32(2.0), trans_a=np.bool_(False), trans_b=0), ref, tol)
    ref_t, tol_t = gemm_ref(a.T.copy(), b, trans_a=True)
    check_close(gemm(a.T.copy(), b, trans_a=1), ref_t, tol_t)
    c = rand(rng, 5, 3)
    ref_c, tol_c = gemm_ref(a, b, beta=-1.0, c=c)
    check_close(gemm(a, b, beta=-1, c=c), ref_c, tol_c)
    x, w, bias = rand(rng, 4, 7), rand(rng, 3, 7), rand(rng, 3)
    ref_l, tol_l = gemm_ref(x, w, trans_b=True, bias=bias, activation="relu")
    check_close(linear(x, w, bias, activation="relu"), ref_l, tol_l, "relu")
    check_close(linear(x=x, weight=w, bias=bias, activation="relu"), ref_l, tol_l, "relu")
    out = np.empty((5, 3), np.float32)
    matmul(a, b, out=out)
    check_close(out, *gemm_ref(a, b))


def test_reference_counts(rng):
    a, b, bias = rand(rng, 6, 5), rand(rng, 5, 4), rand(rng, 4)
    out = np.empty((6, 4), np.float32)
    before = [sys.getrefcount(x) for x in (a, b, bias, out)]
    for _ in range(50):
        r = gemm(a, b, bias=bias, alpha=1.5)
        assert sys.getrefcount(r) == 2  # r and getrefcount's argument: a new reference, not shared
        gemm(a, b, out=out)
        linear(a, b.T, bias, activation="tanh")
        matmul(a, b)
        with pytest.raises(TypeError):
            gemm(a, b, alpha="x")
    del r
    assert [sys.getrefcount(x) for x in (a, b, bias, out)] == before


def test_gil_threshold_predicate():
    rel = fastnn._C._gemm_releases_gil
    assert not rel(1) and not rel(64 * 128 * 10) and not rel(HOLD_MAX)
    assert rel(HOLD_MAX + 1) and rel(1024.0**3)
    assert rel(1, "cuda")  # an emulated or real CUDA kernel may take long at any size


@pytest.mark.parametrize("m, k, n, batch", [
    (64, 128, 10, 1),    # 81920: held
    (64, 128, 16, 1),    # 131072: held (the threshold itself)
    (64, 128, 17, 1),    # 139264: released
    (16, 64, 16, 8),     # batched, 131072 in all: held
    (16, 64, 17, 8),     # batched, 139264 in all: released
])
def test_both_sides_of_gil_threshold(threads, rng, m, k, n, batch):
    held = m * k * n * batch <= HOLD_MAX
    assert fastnn._C._gemm_releases_gil(m * k * n * batch) != held
    if batch == 1:
        a, b, bias = rand(rng, m, k), rand(rng, k, n), rand(rng, n)
        ref, tol = gemm_ref(a, b, bias=bias, activation="gelu")
        check_close(gemm(a, b, bias=bias, activation="gelu"), ref, tol, "gelu")
        ref, tol = gemm_ref(a, b.T.copy(), trans_b=True, bias=bias, activation="relu")
        check_close(linear(a, b.T.copy(), bias, activation="relu"), ref, tol, "relu")
        check_close(matmul(a, b), *gemm_ref(a, b))
    else:
        a, b = rand(rng, batch, m, k), rand(rng, batch, k, n)
        got = np.asarray(matmul(a, b))
        for i in range(batch):
            check_close(got[i], *gemm_ref(a[i], b[i]))


def _other_thread_progress(fn):
    """Iterations a second Python thread makes while fn() runs in this one."""
    count = [0]
    started = threading.Event()
    stop = threading.Event()

    def spin():
        started.set()
        while not stop.is_set():
            count[0] += 1
            time.sleep(0)

    t = threading.Thread(target=spin)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)  # with the GIL held, the spinner cannot preempt fn() at all
    try:
        t.start()
        started.wait()
        fn()  # warm-up; the spinner runs meanwhile
        c0 = count[0]
        fn()
        c1 = count[0]
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    return c1 - c0


def test_small_products_hold_the_gil(threads, rng):
    # Nothing lets the spinner in: no GIL release inside the call, and the 1 s switch
    # interval does not expire during it.
    a, b = rand(rng, 64, 128), rand(rng, 128, 10)
    assert _other_thread_progress(lambda: gemm(a, b)) == 0
    assert _other_thread_progress(lambda: linear(a, b.T)) == 0
    assert _other_thread_progress(lambda: matmul(a, b)) == 0


def test_large_products_release_the_gil(threads, rng):
    # 512^3 (134M multiply-adds, ~1 ms or more): the spinner, which gives up the GIL at every
    # iteration, gets through iterations while the product runs in this thread -- once the OS
    # schedules it, which with both cores busy (2 threads, a loaded machine) may take a few
    # tries; a product that held the GIL would give 0 every time (see the test above).
    a, b = rand(rng, 512, 512), rand(rng, 512, 512)
    for fn in (lambda: gemm(a, b), lambda: linear(a, b), lambda: matmul(a, b)):
        assert any(_other_thread_progress(fn) > 0 for _ in range(200))
