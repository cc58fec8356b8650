"""Small products (m*n*k <= 8M multiply-adds, k <= 1024) on the AVX-512 level: the direct
path (gemm_driver.cpp, gemm_direct_tiles) reads unit-stride rows of A in place (else packs one
A micro-panel per row of tiles), reads B's full panels in place when its columns are
unit-stride and packs the others once into a shared buffer (the first thread to need a panel
packs it; a thread finding it half-packed waits briefly, then packs a private copy), and the
threads share the 12 x 32 tiles of C dynamically (own share from the front, then stealing
from the back). Which thread computes a tile, and from which copy of a panel, must not change
a bit of C: checked bitwise between 1 and 2 threads, for every way of reading A and B, on
shapes that are not multiples of the tile, and against float64 NumPy (test_gemm's bound).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.ops import gemm, linear

from test_gemm import check_close, gemm_ref, rand

SHAPES = [  # (m, k, n): > 256K multiply-adds (2 threads), tiles of every edge kind
    (64, 784, 128), (65, 129, 97), (127, 65, 33), (13, 1024, 160), (256, 784, 32), (66, 300, 16), (200, 200, 13),
    (17, 513, 257),
]


def operands(rng, m, k, n, trans_a, trans_b):
    a = rand(rng, k, m) if trans_a else rand(rng, m, k)
    b = rand(rng, n, k) if trans_b else rand(rng, k, n)
    return a, b, rand(rng, n), rand(rng, m, n)


def products(a, b, trans_a, trans_b, bias, c):
    return [np.asarray(gemm(a, b, trans_a=trans_a, trans_b=trans_b)),
            np.asarray(gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=-1.0, c=c, bias=bias,
                            activation="gelu"))]


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_threads_same_bits(simd_level, rng, m, k, n, trans_a, trans_b):
    a, b, bias, c = operands(rng, m, k, n, trans_a, trans_b)
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        one = products(a, b, trans_a, trans_b, bias, c)
        fastnn.set_num_threads(2)
        for _ in range(3):  # tiles land on different threads from run to run
            for x, y in zip(one, products(a, b, trans_a, trans_b, bias, c)):
                np.testing.assert_array_equal(x, y)
    finally:
        fastnn.set_num_threads(before)
    check_close(one[0], *gemm_ref(a, b, trans_a, trans_b))
    ref, tol = gemm_ref(a, b, trans_a, trans_b, 0.5, -1.0, c, bias, "gelu")
    check_close(one[1], ref, tol, "gelu")


def test_strided_operands(simd_level, threads, rng):
    big = rand(rng, 300, 400)
    a = big[1:130:2, 3:203]          # row stride 800, unit column stride: read in place
    b_rows = big[::-1, ::3][:200, :70]  # negative row stride, column stride 3: every panel packed
    b_unit = big[50:250, 7:77]        # unit columns: 2 full panels in place + a packed edge
    for b in (b_rows, b_unit):
        check_close(np.asarray(gemm(a, b)), *gemm_ref(a, b))
    w = big[:70, :200]  # linear's weight (out x in), the classifier / hidden layer shape
    x = rand(rng, 48, 200)
    ref, tol = gemm_ref(x, w, trans_b=True, bias=big[299, :70], activation="relu")
    check_close(np.asarray(linear(x, w, np.ascontiguousarray(big[299, :70]), activation="relu")), ref, tol, "relu")


def test_many_calls_two_threads(simd_level, rng):
    # Repeated 2-thread calls whose threads meet on shared packed panels (4 tiles per panel,
    # 5 panels: the shares split inside a panel): any ordering gives the 1-thread bits.
    a, w = rand(rng, 48, 640), rand(rng, 150, 640)
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        want = np.asarray(gemm(a, w, trans_b=True))
        fastnn.set_num_threads(2)
        for _ in range(50):
            np.testing.assert_array_equal(np.asarray(gemm(a, w, trans_b=True)), want)
    finally:
        fastnn.set_num_threads(before)
    check_close(want, *gemm_ref(a, w, trans_b=True))


@pytest.fixture
def busy_panel_claims():
    """Sets fastnn's testing knob (config.h: gemm_busy_panel_claims) and restores it."""
    before = fastnn._C._get_gemm_busy_panel_claims()

    def set_claims(n):
        fastnn._C._set_gemm_busy_panel_claims(n)

    yield set_claims
    fastnn._C._set_gemm_busy_panel_claims(before)


# Shapes with shared packed B panels: a transposed B packs every panel (97 columns: 3 full
# panels + a 1-column edge; 257: 8 + 1), a row-major B only its edge panel (33 = 32 + 1).
PRIVATE_COPY_CASES = [(65, 129, 97, False, True), (65, 129, 97, True, True), (127, 65, 33, False, False),
                      (127, 65, 33, True, False), (17, 513, 257, False, True), (33, 300, 70, True, True)]


@pytest.mark.parametrize("m, k, n, trans_a, trans_b", PRIVATE_COPY_CASES)
@pytest.mark.parametrize("claims", [1, 3, 10**6])
def test_private_panel_copies(rng, threads, busy_panel_claims, m, k, n, trans_a, trans_b, claims):
    # The first `claims` claims of each thread find their panel "being packed" and pack a private
    # copy (1: one private panel, then the shared ones; 3: the private copy reused and repacked
    # for another panel when A is packed and tiles run along a row; all: no panel shared). Every
    # mix of private and shared copies must give the bits of the plain 1-thread product.
    a, b, bias, c = operands(rng, m, k, n, trans_a, trans_b)
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        busy_panel_claims(0)
        want = products(a, b, trans_a, trans_b, bias, c)
        fastnn.set_num_threads(threads)
        busy_panel_claims(claims)
        for _ in range(2):
            for x, y in zip(want, products(a, b, trans_a, trans_b, bias, c)):
                np.testing.assert_array_equal(x, y)
    finally:
        fastnn.set_num_threads(before)
    check_close(want[0], *gemm_ref(a, b, trans_a, trans_b))


def test_busy_panel_claims_knob_rejects_negative(busy_panel_claims):
    with pytest.raises(ValueError, match="expected an integer >= 0, got -1"):
        busy_panel_claims(-1)
