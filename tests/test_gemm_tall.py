"""Tall single products (m >= 2n, past the unpacked small-problem path) through the blocked loops
of gemm_driver.cpp: on 2 threads gemm_shared_b (B packed once by both threads, each thread runs
its own rows in A blocks sized to half of its L2: shared_b_rows; on 1 thread as well when B is one
block, e.g. 8192 x 512 x 512), else on 1 thread gemm_one (A blocks of mc rows from L3). Shapes put several A blocks in each thread's rows, with ragged MR edges, several
k blocks (beta on the first, bias and activation on the last) and several B blocks. Checked
against float64 NumPy with test_gemm's bound (check_close), at every SIMD level and with 1 and 2
threads. Also products split along N whose A block fits in half of L2 (m = 256 x k = 4096 x n =
1024): on 2 threads each thread packs its own copy of the A block (gemm_one's private_a, no
barriers). The 1- and 2-thread results are bitwise equal (same tile, same k blocks, same order of
multiply-adds per C element: only which thread computes a tile differs).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.ops import gemm

from test_gemm import check_close, gemm_ref, rand
from test_gemm_big import run as run_checked


def run(rng, m, k, n, trans_a=False, trans_b=False, **kw):
    run_checked(rng, m, k, n, trans_a, trans_b, **kw)


# (3001, 1030, 100): k = 3 blocks of 344 (kc = 512), so an A block is at most 1 MiB / 1376 B = 760
# rows with a 2 MiB L2 (fewer with a smaller one): each thread's ~1500 rows are >= 2 A blocks,
# the last panel of the last block has 1 row (3001 = 375 * 8 + 1). n = 2 * 48 + 4.
# (2311, 520, 700): one k block of 520 (<= 4/3 kc), 2 B blocks (nc = 672), m % 8 = 7.
# (4001, 500, 150): one B block (one k block, n <= nc), so gemm_shared_b on 1 thread too: A blocks
# of 520 rows (1 MiB / 2000 B), 8 of them, the last one ragged; n = 3 * 48 + 6.
@pytest.mark.parametrize("m, k, n", [(3001, 1030, 100), (2311, 520, 700), (4001, 500, 150)])
def test_tall_several_a_blocks(simd_level, threads, rng, m, k, n):
    c, bias = rand(rng, m, n), rand(rng, n)
    run(rng, m, k, n, alpha=-0.75, beta=1.5, c=c, bias=bias, activation="gelu_tanh")
    run(rng, m, k, n, trans_a=True, trans_b=True, alpha=2.0)


def test_a_block_not_whole_tiles(simd_level, threads, rng):
    # Regression: with mc = 4092 rows (a multiple of the 12-row tile, not of the 8-row big
    # tile; L3 >= ~6 MiB), 8180 rows were cut into A blocks of 4092 on 1 thread: the block's
    # last micro-panel (4 rows) computed 8 rows, and the next block recomputed rows 4092..4095
    # with beta * C applied twice. balanced_block now rounds mc down to whole tiles.
    # k = 700 is two k blocks (kc = 512 for the big tile, one block up to 4/3 kc), so 1 thread
    # takes gemm_one; k = 64 is one B block, which 1 thread runs through gemm_shared_b.
    m, k, n = 8180, 64, 64
    c = rand(rng, m, n)
    run(rng, m, k, n, beta=0.5, c=c)
    run(rng, m, 700, n, alpha=1.5, beta=-1.0, c=c, bias=rand(rng, n), activation="relu")


# (203, 2100, 470): private A blocks -- 5 k blocks of 420 (a 203 x 420 A block), n = 10 panels of
# 48 (the last 38 wide) split 5 + 5 between the threads, m % 8 = 3.
# (64, 1030, 2000): 3 k blocks, 2 B blocks (nc = 672) per thread with ragged edges.
@pytest.mark.parametrize("m, k, n", [(203, 2100, 470), (64, 1030, 2000)])
def test_private_a_blocks(simd_level, threads, rng, m, k, n):
    c, bias = rand(rng, m, n), rand(rng, n)
    run(rng, m, k, n, alpha=-0.75, beta=1.5, c=c, bias=bias, activation="sigmoid")
    run(rng, m, k, n, trans_a=True, trans_b=True, alpha=2.0)


# On the AVX-512 level gemm_shared_b reads a unit-column-stride A in place (8 rows per tile, no
# packing; gemm_microkernel_big_direct_a); below it, or for a transposed A, it packs A blocks.
# m % 8 = 1..7 gives each row count of the last tile; n % 48 = 4, 20, 40 gives the 1-, 2- and
# 3-vector last panel; A as a column slice (row stride 700 > k), with negative row stride, and
# transposed (packed) -- all bitwise equal to the packed A of test_tall_several_a_blocks' path.
@pytest.mark.parametrize("m, n", [(1601, 100), (1602, 68), (1603, 88), (1604, 100), (1605, 68), (1606, 88),
                                  (1607, 100), (1608, 96)])
def test_tall_a_in_place_edges(simd_level, threads, rng, m, n):
    k = 301
    c, bias = rand(rng, m, n), rand(rng, n)
    run(rng, m, k, n, alpha=-0.75, beta=1.5, c=c, bias=bias, activation="tanh")
    wide = rand(rng, m, 700)
    for a in (wide[:, 13:13 + k], wide[::-1, :k]):
        b = rand(rng, k, n)
        got = np.asarray(gemm(a, b, beta=0.5, c=c, bias=bias, activation="relu"))
        ref, tol = gemm_ref(a, b, beta=0.5, c=c, bias=bias, activation="relu")
        check_close(got, ref, tol, "relu")
        assert np.array_equal(got, np.asarray(gemm(np.ascontiguousarray(a), b, beta=0.5, c=c, bias=bias,
                                                   activation="relu")))
        assert np.array_equal(got, np.asarray(gemm(np.asfortranarray(a).T, b, trans_a=True, beta=0.5, c=c,
                                                   bias=bias, activation="relu")))


@pytest.mark.parametrize("m, k, n", [(3001, 1030, 100), (8192, 512, 200), (2311, 520, 700), (203, 2100, 470)])
def test_tall_bitwise_equal_1_and_2_threads(simd_level, rng, m, k, n):
    a, b, c, bias = rand(rng, m, k), rand(rng, k, n), rand(rng, m, n), rand(rng, n)
    before = fastnn.get_num_threads()
    try:
        out = []
        for t in (1, 2):
            fastnn.set_num_threads(t)
            out.append(np.asarray(gemm(a, b, beta=0.5, c=c, bias=bias, activation="relu")))
    finally:
        fastnn.set_num_threads(before)
    assert np.array_equal(out[0], out[1])


def test_tall_claims_bitwise_repeatable(rng):
    # gemm_shared_b hands out B panels and A blocks at run time (who packs / computes what
    # depends on timing): 12 products of 2 threads, each must equal the 1-thread product bitwise
    # (a panel packed twice or not at all, or an A block computed twice with beta, or skipped,
    # would show). 20000 x 64 x 64 is cut into >= 5 A blocks, several B panels (64 = 48 + 16).
    m, k, n = 20000, 64, 64
    a, b, c = rand(rng, m, k), rand(rng, k, n), rand(rng, m, n)
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        want = np.asarray(gemm(a, b, beta=-0.5, c=c))
        fastnn.set_num_threads(2)
        for _ in range(12):
            assert np.array_equal(np.asarray(gemm(a, b, beta=-0.5, c=c)), want)
    finally:
        fastnn.set_num_threads(before)


@pytest.fixture
def late_thread_blocks():
    """Sets fastnn's testing knob (config.h: gemm_late_thread_blocks) and restores it."""
    before = fastnn._C._get_gemm_late_thread_blocks()
    yield fastnn._C._set_gemm_late_thread_blocks
    fastnn._C._set_gemm_late_thread_blocks(before)


# With the knob, gemm_shared_b's thread 0 waits in every (B block, k block) step until the other
# threads have packed all the B panels and stolen `late` of its A blocks (late = 1: part of its
# share, it then runs the rest from the front; 1000: all of it). Shapes (A blocks of ~1 MiB):
# (3001, 1030, 100): 3 k blocks (beta on the first, bias + activation on the last), 4 A blocks,
#   thread 0's share is 2 blocks on 2 threads, 1 on 3; the last A panel has 1 row.
# (2311, 520, 700): 2 B blocks (a barrier between them), 5 A blocks, m % 8 = 7, n % 48 = 28.
# (8191, 509, 203): 16 A blocks (thread 0's share 8 / 5), the last one ragged; n % 48 = 11.
# The stolen blocks and panels must give the 1-thread product bitwise (same tile, same k order per
# element): a block computed twice (beta applied twice), skipped, or at the wrong rows would show.
@pytest.mark.parametrize("m, k, n", [(3001, 1030, 100), (2311, 520, 700), (8191, 509, 203)])
@pytest.mark.parametrize("late", [1, 1000])
def test_stolen_work_bitwise(simd_level, rng, late_thread_blocks, m, k, n, late):
    a, b, c, bias = rand(rng, m, k), rand(rng, k, n), rand(rng, m, n), rand(rng, n)
    kw = dict(alpha=-0.75, beta=1.5, c=c, bias=bias, activation="gelu_tanh")
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        want = np.asarray(gemm(a, b, **kw))
        ref, tol = gemm_ref(a, b, **kw)
        check_close(want, ref, tol, kw["activation"])
        late_thread_blocks(late)
        for t in (1, 2, 3):  # 1: the knob is ignored (nobody to steal); 3: oversubscribed
            fastnn.set_num_threads(t)
            assert np.array_equal(np.asarray(gemm(a, b, **kw)), want), t
    finally:
        fastnn.set_num_threads(before)


def test_late_thread_blocks_knob_rejects_negative(late_thread_blocks):
    with pytest.raises(ValueError, match="expected an integer >= 0, got -1"):
        late_thread_blocks(-1)
