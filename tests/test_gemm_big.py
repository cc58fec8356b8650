"""Large single products (above the unpacked small-problem path: m*n*k > 8M multiply-adds or
k > 1024, and not tall enough for the shared-B split on 2 threads): on the AVX-512 level they
run the 8 x 48 tile (gemm_microkernel_big, packed by gemm_pack_a_big / gemm_pack_b_big);
below it the 12 x 32 / 6 x 16 / 4 x 8 tile through the same driver (gemm_driver.cpp,
gemm_one<true>). Each shape puts edge tiles at every remainder the tile has: m % 8 (rows
1..7 of the last A panel), n % 48 in (0, 16], (16, 32], (32, 48) (one, two, three vectors of
the last B panel), several k blocks of depth <= kc (the first with the user's beta, the last
with bias and activation) and, on 2 threads, panels split between the threads. Checked against
float64 NumPy with test_gemm's bound, at every SIMD level and with 1 and 2 threads.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastnn.ops import gemm

from test_gemm import check_close, gemm_ref, rand

SHAPES = [  # (m, k, n)
    (97, 1100, 101),   # k > 1024: packed; n = 2*48 + 5 (one-vector edge panel), m = 12*8 + 1
    (203, 257, 250),   # n = 5*48 + 10, m % 8 = 3
    (150, 900, 1400),  # n = 29*48 + 8, several k and nc blocks
    (255, 520, 520),   # k just past 4/3 of 384 (one k block at the big tile's kc = 512); n % 48 = 40
    (64, 1030, 80),    # n % 48 = 32 (two vectors exactly), whole A panels
    (33, 2000, 47),    # n < 48 (one partial panel of three vectors), k = 2000 (several k blocks)
    (1, 1500, 600),    # a single row
    (400, 1025, 1),    # a single column
]


def run(rng, m, k, n, trans_a, trans_b, **kw):
    a = rand(rng, k, m) if trans_a else rand(rng, m, k)
    b = rand(rng, n, k) if trans_b else rand(rng, k, n)
    got = np.asarray(gemm(a, b, trans_a=trans_a, trans_b=trans_b, **kw))
    ref, tol = gemm_ref(a, b, trans_a, trans_b, kw.get("alpha", 1.0), kw.get("beta", 0.0), kw.get("c"),
                        kw.get("bias"), kw.get("activation"))
    check_close(got, ref, tol, kw.get("activation"))
    return a, b, ref, tol


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, True)])
def test_big_tile_edges(simd_level, threads, rng, m, k, n, trans_a, trans_b):
    run(rng, m, k, n, trans_a, trans_b)


@pytest.mark.parametrize("m, k, n", [(97, 1100, 101), (255, 520, 520)])
@pytest.mark.parametrize("trans_a, trans_b", [(True, False), (False, True)])
def test_big_tile_epilogue_across_k_blocks(simd_level, threads, rng, m, k, n, trans_a, trans_b):
    c, bias = rand(rng, m, n), rand(rng, n)
    run(rng, m, k, n, trans_a, trans_b, alpha=-0.75, beta=1.5, c=c, bias=bias, activation="gelu_tanh")
    run(rng, m, k, n, trans_a, trans_b, bias=bias, activation="relu")
    run(rng, m, k, n, trans_a, trans_b, alpha=0.5, beta=-1.0, c=c)


@pytest.mark.parametrize("layout", ["fortran", "strided", "reversed"])
def test_big_tile_output_layouts(simd_level, threads, rng, layout):
    # C with unit row stride (the tile's transposed store), a column stride of 3 (the general
    # epilogue) and negative row stride, through several k blocks with beta.
    m, k, n = 203, 1100, 101
    a, b, c, bias = rand(rng, m, k), rand(rng, k, n), rand(rng, m, n), rand(rng, n)
    ref, tol = gemm_ref(a, b, alpha=1.5, beta=0.5, c=c, bias=bias, activation="sigmoid")
    out = {"fortran": np.asfortranarray(np.zeros((m, n), np.float32)),
           "strided": np.zeros((m, 3 * n), np.float32)[:, ::3],
           "reversed": np.zeros((m, n), np.float32)[::-1]}[layout]
    gemm(a, b, alpha=1.5, beta=0.5, c=c, out=out, bias=bias, activation="sigmoid")
    check_close(out, ref, tol, "sigmoid")
