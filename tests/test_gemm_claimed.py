"""Single products split along N on several threads (gemm_one_claimed in gemm_driver.cpp): the
column panels of each (A block, k block) step are cut into guided units (column_units: large
first, single panels last) claimed at run time from an atomic counter, with no barriers; the A
block is either shared (packed in claimed chunks into one of two buffers, even / odd steps) or,
when it fits half of L2, packed privately by each thread. Each C tile is computed with the same
k blocks in the same order whichever thread claims it, so the result is bitwise that of 1 thread
at any thread count (3 threads oversubscribe this 2-core machine) and however the claims fall.
Checked against float64 NumPy with test_gemm's bound, at every SIMD level.

Shapes (kc = 512 on the 8 x 48 tile; 384 for the 12 x 32 one; the A block is shared when
mc x kc floats exceed half of L2, 1 MiB here):
  (1100, 1100, 600): k = 3 blocks of 367, shared 1100-row A block (1.6 MiB), so step 2 repacks
      the buffer of step 0 (waits for step 0's units); n = 12 x 48 + 24.
  (130, 2000, 1100): 4 k blocks of 500, private A blocks (130 x 500); n = 22 x 48 + 44.
  (300, 700, 190): one k block, 4 panels (the last 46 wide): four single-panel units.
  (4100, 200, 2100): two A blocks of rows (mc = 4088 on a >= ~9 MiB L3, else more), shared A.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.ops import gemm, matmul

from test_gemm import rand
from test_gemm_big import run as run_checked

SHAPES = [(1100, 1100, 600), (130, 2000, 1100), (300, 700, 190)]


def with_threads(nt, fn):
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(nt)
    try:
        return fn()
    finally:
        fastnn.set_num_threads(before)


def late_thread(n):
    """config.h's gemm_late_thread_blocks: in gemm_one_claimed, thread 0 takes no work in the
    first n steps until the other threads have claimed all of the step's column units."""
    before = fastnn._C._get_gemm_late_thread_blocks()
    fastnn._C._set_gemm_late_thread_blocks(n)
    return before


@pytest.mark.parametrize("m, k, n", SHAPES)
def test_claimed_split_vs_reference(simd_level, rng, m, k, n):
    c, bias = rand(rng, m, n), rand(rng, n)
    for nt in (2, 3):
        with_threads(nt, lambda: run_checked(rng, m, k, n, False, False, alpha=-0.75, beta=1.5, c=c, bias=bias,
                                             activation="gelu_tanh"))
        with_threads(nt, lambda: run_checked(rng, m, k, n, True, True, alpha=2.0))


@pytest.mark.parametrize("m, k, n", SHAPES + [(4100, 200, 2100)])
@pytest.mark.parametrize("late", [0, 2, 1000])
def test_claimed_split_bitwise_equal_any_threads(rng, m, k, n, late):
    # late > 0: thread 0 sits out the first `late` steps (all of them for 1000), so the others
    # pack every A chunk and take every unit there, and thread 0 then finds nothing left. A unit
    # computed twice (beta applied twice), skipped, or run before its previous k block would
    # differ from the 1-thread product.
    a, b, c, bias = rand(rng, m, k), rand(rng, k, n), rand(rng, m, n), rand(rng, n)
    product = lambda: np.asarray(gemm(a, b, beta=0.5, c=c, bias=bias, activation="relu"))  # noqa: E731
    want = with_threads(1, product)
    before = late_thread(late)
    try:
        for nt in (2, 3, 2):
            assert np.array_equal(with_threads(nt, product), want), nt
    finally:
        late_thread(before)


def test_claimed_split_alpha_zero(rng):
    # alpha == 0 reads neither A nor B (k blocks of depth 0): every unit still applies beta * C.
    m, k, n = 1100, 1100, 600
    a, b, c = rand(rng, m, k), rand(rng, k, n), rand(rng, m, n)
    got = with_threads(2, lambda: np.asarray(gemm(a, b, alpha=0.0, beta=-2.0, c=c)))
    assert np.array_equal(got, np.float32(-2.0) * c)


def test_claimed_split_batched_small_tile(rng):
    # Batched products large enough for both threads each run gemm_one<false> (12 x 32 tile)
    # one after another through the claimed split, the shared A block in two buffers.
    a, b = rand(rng, 2, 700, 1100), rand(rng, 2, 1100, 500)
    want = with_threads(1, lambda: np.asarray(matmul(a, b)))
    before = late_thread(1)
    try:
        got = with_threads(2, lambda: np.asarray(matmul(a, b)))
    finally:
        late_thread(before)
    assert np.array_equal(got, want)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    tol = 2.0 * 1100 * np.finfo(np.float32).eps * (np.abs(a).astype(np.float64) @ np.abs(b))  # |error| <= gamma_k sum|ab|
    assert np.all(np.abs(got - ref) <= tol)
