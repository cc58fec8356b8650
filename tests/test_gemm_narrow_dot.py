"""Narrow products with unit-stride rows of A (n <= 12 output columns, any m and k): on the
AVX-512 level they are dot products along k (csrc/cpu/kernels/gemm_narrow_dot.cpp: B packed
by column pairs, 4-row register tiles, a fold-and-permute reduction of 2 x 8 partial sums per
accumulator). Checked against float64 NumPy with test_gemm's bound (the kernel sums 8
interleaved partial sums and then a pairwise tree: within the sqrt(K) bound) at every SIMD
level and with 1 and 2 threads, and bitwise across the layouts of C (the row-major fast store
vs the strided epilogue) and across thread counts (each element is computed the same way).

Shapes: every n = 1..12 (odd n pads the last column pair), every m = 1..17 (4-row tiles and
their 1-3 row remainders), k around the 8-wide chunks (1, 7, 9, 17, 100, 131) and above the
1024 of the stack-packed B (1030: heap), products large enough for 2 threads.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.ops import gemm, linear

from test_gemm import check_close, gemm_ref, rand

EPILOGUES = [
    {},
    dict(alpha=-0.75, beta=1.5, bias=True, activation="gelu_tanh"),
    dict(bias=True, activation="relu"),
]


def run(a, b, trans_b, kw, c, bias, out=None):
    kw = dict(kw)
    if kw.pop("bias", False):
        kw["bias"] = bias
    if kw.get("beta", 0.0) != 0.0:
        kw["c"] = c
    got = gemm(a, b, trans_b=trans_b, out=out, **kw) if out is not None else gemm(a, b, trans_b=trans_b, **kw)
    ref, tol = gemm_ref(a, b, False, trans_b, kw.get("alpha", 1.0), kw.get("beta", 0.0), kw.get("c"),
                        kw.get("bias"), kw.get("activation"))
    return np.asarray(got if out is None else out), ref, tol, kw.get("activation")


def check(a, b, trans_b, rng, layouts=True):
    m, n = a.shape[0], (b.shape[0] if trans_b else b.shape[1])
    c, bias = rand(rng, m, n), rand(rng, n)
    for kw in EPILOGUES:
        got, ref, tol, act = run(a, b, trans_b, kw, c, bias)
        check_close(got, ref, tol, act)
        if layouts:
            # Column stride 2 and column-major C go through the strided epilogue: same bits.
            for out in (np.full((m, 2 * n), np.nan, np.float32)[:, ::2], np.asfortranarray(np.full((m, n), np.nan,
                                                                                                  np.float32))):
                run(a, b, trans_b, kw, c, bias, out=out)
                np.testing.assert_array_equal(out, got)


@pytest.mark.parametrize("n", range(1, 13))
@pytest.mark.parametrize("trans_b", [False, True])
def test_every_width(simd_level, threads, rng, n, trans_b):
    for m, k in [(17, 131), (4, 9)]:
        a = rand(rng, m, k)
        b = rand(rng, n, k) if trans_b else rand(rng, k, n)
        check(a, b, trans_b, rng)


@pytest.mark.parametrize("m", range(1, 18))
def test_every_row_count(simd_level, rng, m):
    for k, n in [(7, 10), (100, 12), (1, 3)]:
        check(rand(rng, m, k), rand(rng, k, n), False, rng, layouts=m in (1, 5, 17))


@pytest.mark.parametrize("k", [1, 7, 8, 9, 17, 1024, 1030])
def test_depths(simd_level, threads, rng, k):
    # 1030 > 1024: B is packed into a heap buffer instead of the stack.
    check(rand(rng, 9, k), rand(rng, k, 10), False, rng)
    check(rand(rng, 6, k), rand(rng, 7, k), True, rng, layouts=False)


@pytest.mark.parametrize("m, k, n", [(201, 150, 12), (64, 784, 10), (1001, 300, 1), (66, 2048, 5)])
def test_two_threads_same_bits(simd_level, rng, m, k, n):
    # Large enough for 2 threads (> 256K multiply-adds); rows split in 4-row blocks.
    a, b, bias = rand(rng, m, k), rand(rng, k, n), rand(rng, n)
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        one = np.asarray(gemm(a, b, bias=bias, activation="tanh"))
        fastnn.set_num_threads(2)
        two = np.asarray(gemm(a, b, bias=bias, activation="tanh"))
    finally:
        fastnn.set_num_threads(before)
    ref, tol = gemm_ref(a, b, bias=bias, activation="tanh")
    check_close(one, ref, tol, "tanh")
    np.testing.assert_array_equal(one, two)


def test_strided_views(simd_level, threads, rng):
    big_a, big_b = rand(rng, 40, 300), rand(rng, 300, 30)
    a = big_a[::2, 5:138]  # row stride 600, unit column stride: read in place
    for b in (big_b[5:138, ::3][:, :9],  # column stride 3
              big_b[5:138, 2:13][::-1],  # negative row stride
              np.asfortranarray(big_b[5:138, :11]),  # unit row stride without trans_b
              big_b[5:138, 4:5]):  # a single column
        check(a, b, False, rng)
    w = rand(rng, 24, 200)[::2, 3:136]  # linear's weight, every other row
    check(a, w, True, rng)


def test_huge_b_strides(simd_level, rng):
    # A row stride beyond the gather's 32-bit offsets: with unit column stride B goes through the
    # 8-row register transposes, otherwise through the scalar packing loop. With k = 1 only B's
    # row 0 is read, so the views need no memory behind their row stride.
    row = rand(rng, 1, 12)
    a = rand(rng, 5, 1)
    for col_stride in (4, 8):  # bytes: unit column stride, then every other element
        b = np.lib.stride_tricks.as_strided(row, shape=(1, 6), strides=(4 << 30, col_stride))
        check(a, b, False, rng)


def test_linear_and_zero_rows(simd_level, threads, rng):
    x, w, bias = rand(rng, 3, 5, 77), rand(rng, 9, 77), rand(rng, 9)
    ref, tol = gemm_ref(x.reshape(15, 77), w, trans_b=True, bias=bias, activation="sigmoid")
    check_close(np.asarray(linear(x, w, bias, activation="sigmoid")).reshape(15, 9), ref, tol, "sigmoid")
    assert np.asarray(gemm(rand(rng, 0, 5), rand(rng, 5, 3))).shape == (0, 3)
    # alpha = 0: neither A nor B is read (NaN there must not reach C), C = beta * c.
    c = rand(rng, 6, 4)
    got = gemm(np.full((6, 8), np.nan, np.float32), np.full((8, 4), np.nan, np.float32), alpha=0.0, beta=2.0, c=c)
    np.testing.assert_array_equal(np.asarray(got), 2.0 * c)
