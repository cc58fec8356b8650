"""The forward's key-outer order (csrc/cpu/kernels/attention.cpp, forward_key_chunk).

Once K and V of a head outgrow L2 (8 * Nk * D bytes > 1 MiB), the forward visits the keys in
chunks: each group of up to 256 query rows takes one chunk before the next, its running
O^T / max / sum kept between visits. Every query block still sees the key blocks in the same
order with the same state, so the result must be bitwise that of the plain order
(_key_chunk=0); the knob _key_chunk forces small chunks so that small shapes run many visits.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _C

from test_attention import check_forward, make, np_

CASES = [
    # B, H, Nq, Nk, D, causal, masked, dropout_p
    (1, 2, 200, 333, 64, False, False, 0.0),
    (2, 1, 129, 257, 32, True, False, 0.0),  # Nq < Nk: bottom-right causal, ragged last chunk
    (1, 1, 300, 65, 80, True, True, 0.0),  # Nq > Nk: early rows see no key (an empty visit)
    (2, 2, 65, 1000, 16, False, True, 0.3),
    (1, 1, 1, 127, 128, True, False, 0.0),
]


def _forward(q, k, v, case, chunk):
    causal, mask, dropout_p = case[5], case[6], case[7]
    out, lse = _C.attention_forward(fastnn.from_numpy(q), fastnn.from_numpy(k), fastnn.from_numpy(v),
                                    causal=causal, key_padding_mask=None if mask is None else fastnn.from_numpy(mask),
                                    dropout_p=dropout_p, seed=11, return_lse=True, _key_chunk=chunk)
    return np_(out), np_(lse)


@pytest.mark.parametrize("chunk", [64, 100, 333])  # 100 and 333 round up to whole key blocks
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + ("c" if c[5] else "") +
                         ("m" if c[6] else "") + ("d" if c[7] else ""))
def test_chunked_forward_is_bitwise_the_plain_order(case, chunk, simd_level, threads, rng):
    B, H, Nq, Nk, D = case[:5]
    q, k, v = make(rng, B, H, Nq, Nk, D, mag=2.0)
    mask = rng.random((B, Nk)) < 0.3 if case[6] else None
    if mask is not None:
        mask[0, : min(Nk, 150)] = True  # whole masked key blocks, skipped inside a chunk
    case = case[:6] + (mask,) + case[7:]
    want_out, want_lse = _forward(q, k, v, case, 0)
    got_out, got_lse = _forward(q, k, v, case, chunk)
    np.testing.assert_array_equal(got_out, want_out)
    np.testing.assert_array_equal(got_lse, want_lse)


@pytest.mark.parametrize("causal", [False, True])
def test_automatic_chunks(causal, simd_level, rng):
    # D = 128, Nk = 1100: K and V of a head are 1.1 MB, so the automatic choice visits the keys
    # in chunks of 512 (kKeyChunkBytes / (8 D)); 1100 query rows are five groups (4 blocks each,
    # the last 2), run from the last group to the first
    q, k, v = make(rng, 1, 2, 1100, 1100, 128)
    case = (1, 2, 1100, 1100, 128, causal, None, 0.0)
    out, lse = _forward(q, k, v, case, -1)
    np.testing.assert_array_equal(out, _forward(q, k, v, case, 0)[0])
    np.testing.assert_array_equal(lse, _forward(q, k, v, case, 0)[1])
    ref_out, ref_lse = check_forward(q, k, v, causal=causal)  # the default call, against float64
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(lse, ref_lse)


def test_key_chunk_argument(rng):
    q, k, v = (fastnn.from_numpy(x) for x in make(rng, 1, 1, 5, 5, 8))
    with pytest.raises(ValueError, match="_key_chunk.*got -2"):
        _C.attention_forward(q, k, v, _key_chunk=-2)
    # larger than Nk: the plain order
    np.testing.assert_array_equal(np_(_C.attention_forward(q, k, v, _key_chunk=10 ** 9)),
                                  np_(_C.attention_forward(q, k, v, _key_chunk=0)))
