// Fused attention forward, FlashAttention-2 style, float32 on CUDA cores
// (semantics of fastnn/attention.h; the CPU kernel csrc/cpu/kernels/attention.cpp is
// the reference).
//
// Algorithm: one thread block per (b, h, tile of BR = 64 query rows); 128 threads,
// each owning TM = 4 rows (layout in kernels/attention_tile.cuh). The Q tile is staged
// in shared memory once, pre-multiplied by scale*log2(e) so the whole softmax runs in
// base 2 (exp2f, no extra multiply per score). K and V stream through shared memory in
// tiles of BC keys (64 for head dims <= 32, else 32). Per tile: S = Q K^T in registers
// (TM x BC/8 per thread), masks (padding as a staged 0/-inf bias, causal per element),
// the row max over the tile by 3 xor shuffles inside the row's 8 lanes, the online
// softmax update (m, alpha = 2^(m_old - m_new), O *= alpha, l = l*alpha + rowsum P —
// l stays a per-lane partial sum, reduced once at the end), dropout on P through the
// shared Philox stream (same keep decisions as the CPU for the same seed), P to shared
// memory (read back by the same warp only: __syncwarp), O += P V in registers
// (TM x D/8 per thread). Normalisation once at the end: O * keep_scale / l, and
// lse = (m + log2 l) * ln 2 (-inf and O = 0 for a row with every key masked).
// Causal: the key loop stops at the last key the block's last row can see (tiles
// fully above the diagonal are never loaded); a tile whose keys are all padded is
// skipped after one __syncthreads_or. Query blocks of a head are scheduled last-first
// so the longest causal blocks start first.
//
// Shared memory (floats): Q 64*(DP+1) + K, V 2*BC*(DP+1) + P 64*(BC+1) + bias BC:
// DP=16: 29.2 KiB, 32: 41.2 KiB, 64: 40.9 KiB, 80: 48.9 KiB, 128: 72.9 KiB; above
// 48 KiB the launcher opts in (cudaFuncAttributeMaxDynamicSharedMemorySize).
// Bound: compute. A query block does 4*64*Nk*D flops for 2*Nk*D*4 bytes of K/V (L2:
// a head's K/V is shared by its Nq/64 blocks): 32 flop/B, above the FP32 balance points
// of A100 (19.5 TFLOP/s / 2.04 TB/s = 9.6) and H100-SXM (67 / 3.35 = 20), so the FMA pipe
// bounds it; the inner loops issue 0.3-0.5 shared loads per FMA (an SM sustains 0.5), so
// 60-70 % of FP32 peak is a realistic ceiling (docs/CUDA.md, attention section).
#include "attention_tile.cuh"

#include <cmath>

#include "cuda_backend/attention_launchers.h"
#include "cuda_backend/check.h"
#include "fastnn/errors.h"

namespace fastnn::cuda_kernels {
namespace {

using namespace attention_tile;

constexpr int kTM = 4;
constexpr int kBR = 16 * kTM;  // query rows per block

template <int DP>
constexpr size_t forward_smem_bytes() {
  constexpr int BC = row_kernel_bc(DP);
  return sizeof(float) * (kBR * (DP + 1) + 2 * BC * (DP + 1) + kBR * (BC + 1) + BC);
}

template <int DP>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(AttentionArgs a, int64_t nqb) {
  constexpr int BC = row_kernel_bc(DP), NC = BC / 8, ND = DP / 8;
  FASTNN_DYNAMIC_SHARED(float, smem);
  float* sq = smem;
  float* sk = sq + kBR * (DP + 1);
  float* sv = sk + BC * (DP + 1);
  float* sp = sv + BC * (DP + 1);
  float* sbias = sp + kBR * (BC + 1);

  const int64_t qb = nqb - 1 - blockIdx.x % nqb;
  const BlockScalars bs = block_scalars(a, blockIdx.x / nqb);
  const int64_t i0 = qb * kBR;
  const int ib = static_cast<int>(min64(kBR, a.nq - i0));
  const int c = tile_col();

  load_tile<kBR, DP>(sq, a.q + bs.b * a.q_sb + bs.h * a.q_sh + i0 * a.q_sn, a.q_sn, a.q_sd, ib, bs.dim, bs.c2);

  float o[kTM][ND], m[kTM], l[kTM];
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int dd = 0; dd < ND; ++dd) o[i][dd] = 0.0f;
  }

  const int64_t jend = visible_key_end(a, i0, ib);
  for (int64_t j0 = 0; j0 < jend; j0 += BC) {
    if (!load_key_tile<BC, DP>(a, bs, j0, static_cast<int>(min64(BC, jend - j0)), sk, sv, sbias)) continue;

    float s[kTM][NC];
    tile_dot<kTM, NC, DP>(s, sq, sk);
#pragma unroll
    for (int i = 0; i < kTM; ++i) {
      const int r = tile_row<kTM>(i);
      const int64_t gi = i0 + r;
      float mx = -INFINITY;
#pragma unroll
      for (int jj = 0; jj < NC; ++jj) {
        const int j = c + 8 * jj;
        s[i][jj] = causal_hidden(a, gi, j0 + j) ? -INFINITY : s[i][jj] + sbias[j];
        mx = fmaxf(mx, s[i][jj]);
      }
      // a row that has seen only masked keys keeps a finite stand-in maximum, so that
      // exp2(-inf - m) = 0 instead of NaN
      const float m_new = fmaxf(fmaxf(m[i], row_group_max(mx)), -FLT_MAX);
      const float alpha = exp2f(m[i] - m_new);
      m[i] = m_new;
      float rs = 0.0f;
#pragma unroll
      for (int jj = 0; jj < NC; ++jj) {
        const int j = c + 8 * jj;
        const float p = exp2f(s[i][jj] - m_new);
        rs += p;  // the normaliser counts dropped elements too; the kept ones are rescaled at the end
        sp[r * (BC + 1) + j] = bs.dropout_factor(a, p, gi, j0 + j) != 0.0f ? p : 0.0f;
      }
      l[i] = l[i] * alpha + rs;
#pragma unroll
      for (int dd = 0; dd < ND; ++dd) o[i][dd] *= alpha;
    }
    __syncwarp();
    tile_accum<kTM, BC, DP>(o, sp, sv);
  }

  float* obase = a.out + bs.b * a.o_sb + bs.h * a.o_sh;
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    const int r = tile_row<kTM>(i);
    const float li = row_group_sum(l[i]);
    if (r >= ib) continue;
    const int64_t gi = i0 + r;
    const float inv = li > 0.0f ? bs.keep_scale / li : 0.0f;
#pragma unroll
    for (int dd = 0; dd < ND; ++dd) {
      const int d = c + 8 * dd;
      if (d < bs.dim) obase[gi * a.o_sn + d * a.o_sd] = o[i][dd] * inv;
    }
    if (a.lse && c == 0)
      a.lse[bs.b * a.lse_sb + bs.h * a.lse_sh + gi * a.lse_sn] = li > 0.0f ? (m[i] + log2f(li)) * kLn2 : -INFINITY;
  }
}

template <int DP>
void launch_forward(const AttentionArgs& a, cudaStream_t stream) {
  auto* k = &attention_forward_kernel<DP>;
  constexpr size_t smem = forward_smem_bytes<DP>();
  if (smem > 48 * 1024)
    FASTNN_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int64_t nqb = (a.nq + kBR - 1) / kBR;
  const int64_t blocks = a.batch * a.heads * nqb;
  FASTNN_LAUNCH(k, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), smem, stream)(a, nqb);
  FASTNN_CUDA_CHECK_LAUNCH("attention_forward_kernel");
}

}  // namespace

void attention_forward(const AttentionArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.heads == 0 || a.nq == 0) return;  // out and lse have no elements
  switch (padded_head_dim(a.head_dim)) {
    case 16: return launch_forward<16>(a, stream);
    case 32: return launch_forward<32>(a, stream);
    case 64: return launch_forward<64>(a, stream);
    case 80: return launch_forward<80>(a, stream);
    case 128: return launch_forward<128>(a, stream);
    default: throw ValueError(detail::concat("attention: head_dim ", a.head_dim, " > 128 is not supported on CUDA"));
  }
}

}  // namespace fastnn::cuda_kernels
