"""Fused scaled-dot-product attention (FlashAttention-2 style CPU kernels).

Conventions (see csrc/include/fastnn/attention.h for the kernel contract):

* q: (B, H, Nq, D), k and v: (B, H, Nk, D), float32; any strides (a (B, N, H, D) tensor
  from a fused QKV projection can be passed as ``x.permute(0, 2, 1, 3)`` without a copy).
* ``scale`` defaults to 1/sqrt(D).
* ``causal`` is aligned bottom-right: query i may attend key j iff j <= i + (Nk - Nq)
  (PyTorch's ``causal_lower_right``). With Nq > Nk the first Nq - Nk queries see no key.
* ``key_padding_mask``: (B, Nk) bool, True = ignore that key.
* A query row whose every key is masked gets output 0, lse = -inf and zero gradients.
* Dropout on the attention probabilities: element (b, h, i, j) is kept iff a Philox-4x32
  draw at index ((b*H + h)*Nq + i)*Nk + j under ``seed`` is below 1 - dropout_p; kept
  values are scaled by 1/(1 - dropout_p). Same seed, same mask, on any thread count and
  SIMD level. ``seed=None`` draws a fresh seed; pass an explicit one if you will call
  :func:`attention_backward`.
* Memory: O(N*D) temporaries per thread, never an Nq x Nk matrix.
"""
from __future__ import annotations

import secrets

from .. import _C

__all__ = ["attention", "attention_backward"]


def _seed(dropout_p, seed):
    if seed is None:
        return secrets.randbits(63) if dropout_p > 0.0 else 0
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"attention: argument 'seed': expected an integer in [0, 2**64), got {seed}")
    return seed


def attention(q, k, v, *, causal=False, scale=None, key_padding_mask=None, dropout_p=0.0, seed=None,
              return_lse=False):
    """softmax(scale * q k^T + masks) v, fused (no Nq x Nk buffer).

    Returns ``out`` (B, H, Nq, D), or ``(out, lse)`` with lse (B, H, Nq) the natural-log
    logsumexp of each row's (scaled, masked) scores when ``return_lse``.
    """
    return _C.attention_forward(q, k, v, causal=bool(causal), scale=scale, key_padding_mask=key_padding_mask,
                                dropout_p=float(dropout_p), seed=_seed(dropout_p, seed),
                                return_lse=bool(return_lse))


def attention_backward(grad_out, q, k, v, out, lse, *, causal=False, scale=None, key_padding_mask=None,
                       dropout_p=0.0, seed=None):
    """Gradients (dq, dk, dv) of :func:`attention` given grad_out = dL/d out.

    ``out`` and ``lse`` are the forward's results (``return_lse=True``); the masks, scale,
    dropout_p and seed must be those of the forward call. P is recomputed block by block
    from lse.
    """
    if dropout_p > 0.0 and seed is None:
        raise ValueError("attention_backward: argument 'seed': expected the seed of the forward call "
                         "when dropout_p > 0, got None")
    return _C.attention_backward(grad_out, q, k, v, out, lse, causal=bool(causal), scale=scale,
                                 key_padding_mask=key_padding_mask, dropout_p=float(dropout_p),
                                 seed=_seed(dropout_p, seed))
