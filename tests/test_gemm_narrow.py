"""Narrow products (n <= 12 output columns, m >= 16, k <= 512): on the AVX-512 level they are
computed as C^T = B^T A^T (gemm_driver.cpp, gemm_narrow_transposed) with the microkernel's
transposed store; and any C with unit row stride (a column-major `out`) goes through that
store too. Checked against float64 NumPy with test_gemm's bound, and bitwise against the
same product written through a C with column stride 2 (the row-major tile: same FMAs in the
same order, so the same bits), at every SIMD level and with 1 and 2 threads.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastnn.ops import gemm, linear

from test_gemm import check_close, gemm_ref, rand

SHAPES = [  # (m, k, n): around every boundary of the path (n 12/13, m 15/16, k 512/513) and the 32-row slabs
    (64, 128, 10), (16, 1, 1), (15, 7, 5), (17, 17, 12), (33, 64, 13), (65, 512, 3), (127, 513, 7),
    (129, 33, 12), (512, 256, 12), (1000, 100, 1),
]


def strided_out(m, n):
    """An (m, n) view with column stride 2: C is written by the row-major tile."""
    return np.full((m, 2 * n), np.nan, np.float32)[:, ::2]


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_narrow_against_reference_and_row_major_tile(simd_level, threads, rng, m, k, n, trans_a, trans_b):
    a = rand(rng, k, m) if trans_a else rand(rng, m, k)
    b = rand(rng, n, k) if trans_b else rand(rng, k, n)
    bias, c = rand(rng, n), rand(rng, m, n)
    for kw in ({}, dict(alpha=-0.75, beta=1.5, c=c, bias=bias, activation="gelu_tanh"),
               dict(bias=bias, activation="relu")):
        got = np.asarray(gemm(a, b, trans_a=trans_a, trans_b=trans_b, **kw))
        ref, tol = gemm_ref(a, b, trans_a, trans_b, kw.get("alpha", 1.0), kw.get("beta", 0.0), kw.get("c"),
                            kw.get("bias"), kw.get("activation"))
        check_close(got, ref, tol, kw.get("activation"))
        out = strided_out(m, n)
        gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=out, **kw)
        np.testing.assert_array_equal(got, out)


@pytest.mark.parametrize("m, k, n", [(64, 784, 128), (64, 128, 10), (33, 65, 17), (1, 9, 40), (97, 131, 61)])
def test_column_major_out(simd_level, threads, rng, m, k, n):
    a, b, bias, c = rand(rng, m, k), rand(rng, k, n), rand(rng, n), rand(rng, m, n)
    for kw in ({}, dict(alpha=2.0, beta=-1.0, c=c, bias=bias, activation="sigmoid")):
        out = np.asfortranarray(np.full((m, n), np.nan, np.float32))
        gemm(a, b, out=out, **kw)
        ref, tol = gemm_ref(a, b, False, False, kw.get("alpha", 1.0), kw.get("beta", 0.0), kw.get("c"),
                            kw.get("bias"), kw.get("activation"))
        check_close(out, ref, tol, kw.get("activation"))
        got_c = np.asarray(gemm(a, b, **kw))
        np.testing.assert_array_equal(got_c, out)
    out = np.asfortranarray(c.copy())  # in place: C <- A B + C, column-major
    gemm(a, b, c=out, beta=1.0, out=out)
    check_close(out, *gemm_ref(a, b, beta=1.0, c=c))


def test_linear_narrow(simd_level, threads, rng):
    # The classifier head of an MLP: linear's weight is a transposed B (unit row stride).
    x, w, bias = rand(rng, 64, 128), rand(rng, 10, 128), rand(rng, 10)
    ref, tol = gemm_ref(x, w, trans_b=True, bias=bias, activation="tanh")
    check_close(linear(x, w, bias, activation="tanh"), ref, tol, "tanh")
    x3 = rand(rng, 4, 16, 128)  # leading dims collapse to 64 rows
    ref3, tol3 = gemm_ref(x3.reshape(64, 128), w, trans_b=True, bias=bias)
    check_close(np.asarray(linear(x3, w, bias)).reshape(64, 10), ref3, tol3)
