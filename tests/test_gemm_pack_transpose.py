"""The transposing packers (gemm_pack.cpp, pack_transpose): a row-major A (m x k, unit stride
along k) and a transposed B (op(B) = B^T of a row-major n x k B) are packed into the tile's
micro-panels by 16 x 16 register transposes on the AVX-512 level, group of 16 panel rows by
group, with masked loads for the last kc % 16 values (scalar loops below AVX-512). The packed
panels hold the same numbers as a copy-packed operand (an A^T given with trans_a, a row-major
B), and the microkernel then runs the same multiply-adds in the same order: the product must
be bitwise equal to the one from contiguous copies packed by pack_copy. Shapes put the last
k block at many kc % 16 remainders (1, 4, 8, 11, 14, 15) and the last panel at every group
fill of the 48-wide panel (n % 48 in 1..15, 16..31, 32..47), through the big-tile path
(gemm_one: 2 or 3 k blocks of depth <= 512), the tall path at 2 threads (gemm_shared_b), a
k of 1 or 17 (a masked tail only / one block plus a 1-wide tail), and batched products (the
12 x 32 tile: 12-row A panels, 32-wide B panels).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.ops import gemm, matmul

from test_gemm import check_close, gemm_ref, rand

SHAPES = [  # (m, k, n): all above the small-product path (m*n*k > 8M or k > 1024)
    (40, 1100, 100),  # 3 k blocks of 367 (% 16 = 15); n = 2*48 + 4
    (24, 1041, 77),   # 3 k blocks of 347 (% 16 = 11); n = 48 + 29
    (19, 1500, 47),   # 3 k blocks of 500 (% 16 = 4); one panel of 47 rows (the third group 15)
    (130, 700, 130),  # 2 k blocks of 350 (% 16 = 14); n = 2*48 + 34
    (600, 520, 70),   # tall: 2 threads share B blocks (2 k blocks of 260); 1 thread one of 520
    (800, 17, 700),   # k = 17: one 16-block and a 1-wide masked tail; n = 14*48 + 28
    (2060, 1, 4100),  # k = 1: the masked tail alone; n = 85*48 + 20
]


@pytest.mark.parametrize("m, k, n", SHAPES)
def test_transposed_packing_same_bits_as_copy(simd_level, threads, rng, m, k, n):
    a = rand(rng, m, k)             # row-major A: its panels are transposed
    bt = rand(rng, n, k)            # B^T row-major: trans_b panels are transposed
    a_t = np.ascontiguousarray(a.T)  # A^T given with trans_a: its panels are copied
    b = np.ascontiguousarray(bt.T)  # row-major B: its panels are copied
    copied = np.asarray(gemm(a_t, b, trans_a=True))
    for got in (gemm(a, bt, trans_b=True), gemm(a, b), gemm(a_t, bt, trans_a=True, trans_b=True)):
        np.testing.assert_array_equal(np.asarray(got), copied)
    check_close(copied, *gemm_ref(a, b))


@pytest.mark.parametrize("m, k, n", [(130, 700, 130), (45, 1030, 61)])
def test_transposed_packing_batched(simd_level, threads, rng, m, k, n):
    # Batched products keep the 12 x 32 tile: 12-row A panels, 32-wide B panels (61 = 32 + 29).
    a, bt = rand(rng, 2, m, k), rand(rng, 2, n, k)
    b = np.ascontiguousarray(bt.transpose(0, 2, 1))
    want = np.asarray(matmul(a, b))
    np.testing.assert_array_equal(np.asarray(matmul(a, bt.transpose(0, 2, 1))), want)
    for i in range(2):
        check_close(want[i], *gemm_ref(a[i], b[i]))
