// Fused scaled-dot-product attention (FlashAttention-2 style), float32.
//
//   S = scale * Q K^T (+ masks),  P = softmax_rows(S),  out = dropout(P) V,
//   lse[i] = log(sum_j exp(S[i, j]))   (natural log; -inf for a fully masked row).
//
// Shapes: q (B, H, Nq, D), k and v (B, H, Nk, D), out (B, H, Nq, D), lse (B, H, Nq).
// Every tensor is described by element strides in the order (batch, head, token, dim),
// any value allowed (a (B, N, H, D) tensor seen through a permute is fine). Outputs
// must not alias inputs, and output strides must not map two elements to one place.
//
// Masks:
//  - causal: aligned bottom-right, as in FlashAttention-2 / PyTorch's
//    causal_lower_right: query i may attend key j iff j <= i + (Nk - Nq). With
//    Nq == Nk this is the usual lower triangle; with Nq > Nk the first Nq - Nk rows
//    see no key at all.
//  - key_padding_mask (B, Nk): nonzero = ignore that key for every head and query.
//  A row whose every key is masked has out = 0, lse = -inf, and zero gradients (dq row
//  = 0, and it contributes nothing to dk / dv).
//
// Dropout (dropout_p > 0): each element P[b, h, i, j] is kept with probability
// 1 - dropout_p and then scaled by 1 / (1 - dropout_p); the keep decision is a pure
// function of (seed, offset, element index e = ((b*H + h)*Nq + i)*Nk + j) through the
// counter-based Philox-4x32-10 generator of fastnn/philox.h (the dropout kernel's), so
// backward regenerates exactly the forward mask. dropout_p must be in [0, 1).
//
// Backward (attention_backward) reads q, k, v, out, lse, grad_out and the same
// masks / scale / dropout parameters, and writes dq, dk, dv (overwritten, not
// accumulated). It recomputes P from lse block by block: no Nq x Nk buffer.
#pragma once
#include <cstdint>

namespace fastnn {

struct AttentionArgs {
  int64_t batch = 0, heads = 0, nq = 0, nk = 0, head_dim = 0;

  // Inputs. Strides in elements: (batch, head, token, dim).
  const float* q = nullptr;
  int64_t q_sb = 0, q_sh = 0, q_sn = 0, q_sd = 1;
  const float* k = nullptr;
  int64_t k_sb = 0, k_sh = 0, k_sn = 0, k_sd = 1;
  const float* v = nullptr;
  int64_t v_sb = 0, v_sh = 0, v_sn = 0, v_sd = 1;

  // Forward output / backward input.
  float* out = nullptr;
  int64_t o_sb = 0, o_sh = 0, o_sn = 0, o_sd = 1;
  // (B, H, Nq). Forward: written when non-null. Backward: required input.
  float* lse = nullptr;
  int64_t lse_sb = 0, lse_sh = 0, lse_sn = 1;

  // Optional (B, Nk) key padding mask, one byte per key, nonzero = masked out.
  const uint8_t* key_padding_mask = nullptr;
  int64_t mask_sb = 0, mask_sn = 1;

  bool causal = false;
  float scale = 1.0f;  // callers pass 1/sqrt(D) by default
  float dropout_p = 0.0f;
  uint64_t seed = 0;
  uint64_t offset = 0;  // Philox offset (the counter's high half)

  // Forward, CPU only: keys per chunk of the key-outer visiting order (a tuning / testing
  // knob; the result is bitwise the same for every value). < 0: automatic (chunks once K and
  // V of a head outgrow L2), 0: never, > 0: that many keys (rounded up to the key block).
  int64_t key_chunk = -1;

  // Backward only.
  const float* grad_out = nullptr;
  int64_t go_sb = 0, go_sh = 0, go_sn = 0, go_sd = 1;
  float* dq = nullptr;
  int64_t dq_sb = 0, dq_sh = 0, dq_sn = 0, dq_sd = 1;
  float* dk = nullptr;
  int64_t dk_sb = 0, dk_sh = 0, dk_sn = 0, dk_sd = 1;
  float* dv = nullptr;
  int64_t dv_sb = 0, dv_sh = 0, dv_sn = 0, dv_sd = 1;
};

namespace cpu {
// Fast kernels (dispatch on fastnn::simd_level(), threads from fastnn::num_threads()).
void attention_forward(const AttentionArgs& args);
void attention_backward(const AttentionArgs& args);
// Plain scalar implementations of the same contract (double accumulation, O(Nk)
// temporaries per row), kept beside the fast ones as the readable definition and
// as a test oracle.
void attention_forward_reference(const AttentionArgs& args);
void attention_backward_reference(const AttentionArgs& args);
}  // namespace cpu

}  // namespace fastnn
