// Fused attention backward, FlashAttention-2 style, float32 on CUDA cores
// (semantics of fastnn/attention.h; the CPU kernels are the reference).
//
// Three kernels, each pass deterministic (no atomics):
//  1. preprocess: one warp per query row: Di = rowsum(dO * O) (shuffle tree) and
//     lse2 = lse * log2(e) (+inf for a fully masked row, so that every recomputed
//     P = exp2(S*scale*log2 e - lse2) of that row is 0 and its gradients vanish).
//  2. dK/dV: one block per (b, h, tile of BK keys); its threads own key rows, so dK and
//     dV accumulate in registers with no sharing. It streams query tiles of BQ rows
//     (Q, dO, lse2, Di through shared memory) starting at the first query that can see
//     the tile's keys (causal: earlier query tiles are skipped), recomputes
//     P^T = exp2(K Q^T * c2 - lse2) and dP^T = V dO^T (TM x BQ/8 registers each),
//     applies the dropout factors Z (the forward's Philox keep decisions), then
//     dV += (P*Z)^T dO and, with dS^T = P^T * (dP^T * Z - Di), dK += dS^T Q.
//  3. dQ: one block per (b, h, tile of 64 query rows) -- the forward's layout: stream
//     K/V tiles (causal: stop at the diagonal; fully padded tiles skipped), recompute
//     S and dP = dO V^T, dS = P * (dP * Z - Di) into shared memory, dQ += dS K.
// Why a separate dQ pass rather than atomics: with dQ accumulated by atomicAdd from
// every key block (FlashAttention-2's choice), the float summation order depends on
// block scheduling, so gradients change from run to run in the last bits; the dQ pass
// recomputes S and dP (7 instead of 5 N^2*D products, +40 % flops) but every output
// element is written by one thread in a fixed order: bitwise reproducible, no atomic
// traffic, no zero-initialisation pass over dQ. Training reproducibility was preferred.
//
// Tiling (kernels/attention_tile.cuh layout, 128 threads): dK/dV tiles of BK = 64 keys
// (TM = 4) for DP <= 64 and 32 keys (TM = 2) for DP = 80, 128, which keeps dK + dV at
// 2*TM*DP/8 <= 64 registers per thread; BQ = 64 queries for DP <= 32, else 32.
// Shared memory dK/dV (floats): K, V BK*(DP+1) each, Q, dO BQ*(DP+1) each, P/dS
// BK*(BQ+1), lse2 + Di 2*BQ. dQ: Q, dO 64*(DP+1), K, V BC*(DP+1), dS 64*(BC+1), bias BC.
// Totals per DP are in docs/CUDA.md (attention section); above 48 KiB the launchers opt in.
// Bound: compute (10 N^2 D flops in passes 2 and 3 + 4 N^2 D recomputation, against
// O(N D) bytes per tile); pass 1 is memory bound (reads dO, O: 8 B per element).
#include "attention_tile.cuh"

#include <cmath>

#include "cuda_backend/attention_launchers.h"
#include "cuda_backend/check.h"
#include "fastnn/errors.h"

namespace fastnn::cuda_kernels {
namespace {

using namespace attention_tile;

// ---- pass 1 -------------------------------------------------------------------------
__global__ void __launch_bounds__(kThreads) attention_backward_preprocess_kernel(AttentionArgs a, float* lse2,
                                                                                 float* di) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = static_cast<int>(threadIdx.x & 31);
  if (row >= a.batch * a.heads * a.nq) return;  // whole warps leave together
  const int64_t bh = row / a.nq, i = row % a.nq;
  const int64_t b = bh / a.heads, h = bh % a.heads;
  const float* go = a.grad_out + b * a.go_sb + h * a.go_sh + i * a.go_sn;
  const float* o = a.out + b * a.o_sb + h * a.o_sh + i * a.o_sn;
  float acc = 0.0f;
  for (int64_t d = lane; d < a.head_dim; d += 32) acc += go[d * a.go_sd] * o[d * a.o_sd];
#pragma unroll
  for (int w = 16; w > 0; w >>= 1) acc += __shfl_xor_sync(0xFFFFFFFFu, acc, w);
  if (lane == 0) {
    const float ls = a.lse[b * a.lse_sb + h * a.lse_sh + i * a.lse_sn];
    lse2[row] = ls == -INFINITY ? INFINITY : ls * kLog2e;
    di[row] = acc;
  }
}

// ---- pass 2: dK, dV -----------------------------------------------------------------
constexpr int dkdv_tm(int dp) { return dp >= 80 ? 2 : 4; }
constexpr int dkdv_bq(int dp) { return dp <= 32 ? 64 : 32; }

template <int DP>
constexpr size_t dkdv_smem_bytes() {
  constexpr int BK = 16 * dkdv_tm(DP), BQ = dkdv_bq(DP);
  return sizeof(float) * (2 * BK * (DP + 1) + 2 * BQ * (DP + 1) + BK * (BQ + 1) + 2 * BQ);
}

template <int DP>
__global__ void __launch_bounds__(kThreads) attention_backward_dkdv_kernel(AttentionArgs a, const float* lse2,
                                                                           const float* di, int64_t nkb) {
  constexpr int TM = dkdv_tm(DP), BK = 16 * TM, BQ = dkdv_bq(DP), NQC = BQ / 8, ND = DP / 8;
  FASTNN_DYNAMIC_SHARED(float, smem);
  float* sk = smem;
  float* sv = sk + BK * (DP + 1);
  float* sq = sv + BK * (DP + 1);
  float* sdo = sq + BQ * (DP + 1);
  float* sp = sdo + BQ * (DP + 1);
  float* slse2 = sp + BK * (BQ + 1);
  float* sdi = slse2 + BQ;

  const int64_t kb = blockIdx.x % nkb;
  const BlockScalars bs = block_scalars(a, blockIdx.x / nkb);
  const int64_t bh = bs.bh, b = bs.b, h = bs.h;
  const int64_t j0 = kb * BK;
  const int jb = static_cast<int>(min64(BK, a.nk - j0));
  const int dim = bs.dim;
  const int c = tile_col();

  // causal: query i sees key j0 iff i >= j0 - (Nk - Nq)
  const int64_t i_start = a.causal ? min64(a.nq, max64(0, j0 - (a.nk - a.nq))) : 0;
  bool key_live[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = tile_row<TM>(i);
    key_live[i] = r < jb && !key_padded(a, b, j0 + r);
  }

  float dk[TM][ND], dv[TM][ND];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int dd = 0; dd < ND; ++dd) dk[i][dd] = dv[i][dd] = 0.0f;

  // a tile of padded keys, or one no query can see, has zero gradients
  if (tile_has_live_key<BK>(a, b, j0, jb) && i_start < a.nq) {
    load_tile<BK, DP>(sk, a.k + b * a.k_sb + h * a.k_sh + j0 * a.k_sn, a.k_sn, a.k_sd, jb, dim, 1.0f);
    load_tile<BK, DP>(sv, a.v + b * a.v_sb + h * a.v_sh + j0 * a.v_sn, a.v_sn, a.v_sd, jb, dim, 1.0f);
    const float* qbase = a.q + b * a.q_sb + h * a.q_sh;
    const float* gobase = a.grad_out + b * a.go_sb + h * a.go_sh;
    for (int64_t i0 = i_start; i0 < a.nq; i0 += BQ) {
      const int ib = static_cast<int>(min64(BQ, a.nq - i0));
      __syncthreads();  // the previous query tile is consumed
      load_tile<BQ, DP>(sq, qbase + i0 * a.q_sn, a.q_sn, a.q_sd, ib, dim, 1.0f);
      load_tile<BQ, DP>(sdo, gobase + i0 * a.go_sn, a.go_sn, a.go_sd, ib, dim, 1.0f);
      for (int t = static_cast<int>(threadIdx.x); t < BQ; t += kThreads) {
        slse2[t] = t < ib ? lse2[bh * a.nq + i0 + t] : INFINITY;
        sdi[t] = t < ib ? di[bh * a.nq + i0 + t] : 0.0f;
      }
      __syncthreads();

      float s[TM][NQC], dp[TM][NQC];
      tile_dot<TM, NQC, DP>(s, sk, sq);
      tile_dot<TM, NQC, DP>(dp, sv, sdo);
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int r = tile_row<TM>(i);
        const int64_t j = j0 + r;
#pragma unroll
        for (int qq = 0; qq < NQC; ++qq) {
          const int x = c + 8 * qq;
          const int64_t gi = i0 + x;
          const bool visible = key_live[i] && !causal_hidden(a, gi, j);
          const float p = visible ? exp2f(s[i][qq] * bs.c2 - slse2[x]) : 0.0f;
          const float z = bs.dropout_factor(a, p, gi, j);
          sp[r * (BQ + 1) + x] = p * z;
          s[i][qq] = p * (dp[i][qq] * z - sdi[x]);  // dS^T
        }
      }
      __syncwarp();
      tile_accum<TM, BQ, DP>(dv, sp, sdo);
      __syncwarp();  // the row group has read P before dS^T replaces it
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int qq = 0; qq < NQC; ++qq) sp[tile_row<TM>(i) * (BQ + 1) + c + 8 * qq] = s[i][qq];
      __syncwarp();
      tile_accum<TM, BQ, DP>(dk, sp, sq);
    }
  }

  store_rows<TM, ND>(a.dk + b * a.dk_sb + h * a.dk_sh, a.dk_sn, a.dk_sd, j0, jb, dim, dk, a.scale);
  store_rows<TM, ND>(a.dv + b * a.dv_sb + h * a.dv_sh, a.dv_sn, a.dv_sd, j0, jb, dim, dv, 1.0f);
}

// ---- pass 3: dQ ---------------------------------------------------------------------
constexpr int kTM = 4;
constexpr int kBR = 16 * kTM;

template <int DP>
constexpr size_t dq_smem_bytes() {
  constexpr int BC = row_kernel_bc(DP);
  return sizeof(float) * (2 * kBR * (DP + 1) + 2 * BC * (DP + 1) + kBR * (BC + 1) + BC);
}

template <int DP>
__global__ void __launch_bounds__(kThreads) attention_backward_dq_kernel(AttentionArgs a, const float* lse2,
                                                                         const float* di, int64_t nqb) {
  constexpr int BC = row_kernel_bc(DP), NC = BC / 8, ND = DP / 8;
  FASTNN_DYNAMIC_SHARED(float, smem);
  float* sq = smem;
  float* sdo = sq + kBR * (DP + 1);
  float* sk = sdo + kBR * (DP + 1);
  float* sv = sk + BC * (DP + 1);
  float* sds = sv + BC * (DP + 1);
  float* sbias = sds + kBR * (BC + 1);

  const int64_t qb = nqb - 1 - blockIdx.x % nqb;
  const BlockScalars bs = block_scalars(a, blockIdx.x / nqb);
  const int64_t i0 = qb * kBR;
  const int ib = static_cast<int>(min64(kBR, a.nq - i0));
  const int c = tile_col();

  load_tile<kBR, DP>(sq, a.q + bs.b * a.q_sb + bs.h * a.q_sh + i0 * a.q_sn, a.q_sn, a.q_sd, ib, bs.dim, 1.0f);
  load_tile<kBR, DP>(sdo, a.grad_out + bs.b * a.go_sb + bs.h * a.go_sh + i0 * a.go_sn, a.go_sn, a.go_sd, ib, bs.dim,
                     1.0f);
  float rl[kTM], rd[kTM], dq[kTM][ND];
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    const int r = tile_row<kTM>(i);
    rl[i] = r < ib ? lse2[bs.bh * a.nq + i0 + r] : INFINITY;
    rd[i] = r < ib ? di[bs.bh * a.nq + i0 + r] : 0.0f;
#pragma unroll
    for (int dd = 0; dd < ND; ++dd) dq[i][dd] = 0.0f;
  }

  const int64_t jend = visible_key_end(a, i0, ib);
  for (int64_t j0 = 0; j0 < jend; j0 += BC) {
    if (!load_key_tile<BC, DP>(a, bs, j0, static_cast<int>(min64(BC, jend - j0)), sk, sv, sbias)) continue;

    float s[kTM][NC], dp[kTM][NC];
    tile_dot<kTM, NC, DP>(s, sq, sk);
    tile_dot<kTM, NC, DP>(dp, sdo, sv);
#pragma unroll
    for (int i = 0; i < kTM; ++i) {
      const int r = tile_row<kTM>(i);
      const int64_t gi = i0 + r;
#pragma unroll
      for (int jj = 0; jj < NC; ++jj) {
        const int j = c + 8 * jj;
        const float x = causal_hidden(a, gi, j0 + j) ? -INFINITY : s[i][jj] * bs.c2 + sbias[j] - rl[i];
        const float p = exp2f(x);
        const float z = bs.dropout_factor(a, p, gi, j0 + j);
        sds[r * (BC + 1) + j] = p * (dp[i][jj] * z - rd[i]);
      }
    }
    __syncwarp();
    tile_accum<kTM, BC, DP>(dq, sds, sk);
  }

  store_rows<kTM, ND>(a.dq + bs.b * a.dq_sb + bs.h * a.dq_sh, a.dq_sn, a.dq_sd, i0, ib, bs.dim, dq, a.scale);
}

template <class Kernel>
void allow_smem(Kernel* k, size_t smem) {
  if (smem > 48 * 1024)
    FASTNN_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
}

template <int DP>
void launch_backward(const AttentionArgs& a, const float* lse2, const float* di, cudaStream_t stream) {
  if (a.nk > 0) {
    auto* k = &attention_backward_dkdv_kernel<DP>;
    constexpr size_t smem = dkdv_smem_bytes<DP>();
    allow_smem(k, smem);
    const int64_t nkb = (a.nk + 16 * dkdv_tm(DP) - 1) / (16 * dkdv_tm(DP));
    FASTNN_LAUNCH(k, dim3(static_cast<unsigned>(a.batch * a.heads * nkb)), dim3(kThreads), smem, stream)(a, lse2, di,
                                                                                                         nkb);
    FASTNN_CUDA_CHECK_LAUNCH("attention_backward_dkdv_kernel");
  }
  if (a.nq > 0) {
    auto* k = &attention_backward_dq_kernel<DP>;
    constexpr size_t smem = dq_smem_bytes<DP>();
    allow_smem(k, smem);
    const int64_t nqb = (a.nq + kBR - 1) / kBR;
    FASTNN_LAUNCH(k, dim3(static_cast<unsigned>(a.batch * a.heads * nqb)), dim3(kThreads), smem, stream)(a, lse2, di,
                                                                                                       nqb);
    FASTNN_CUDA_CHECK_LAUNCH("attention_backward_dq_kernel");
  }
}

}  // namespace

size_t attention_backward_scratch_bytes(const AttentionArgs& a) {
  return sizeof(float) * 2 * static_cast<size_t>(a.batch * a.heads * a.nq);
}

void attention_backward(const AttentionArgs& a, float* scratch, cudaStream_t stream) {
  if (a.batch == 0 || a.heads == 0) return;  // no gradient has elements
  const int64_t rows = a.batch * a.heads * a.nq;
  float* lse2 = scratch;
  float* di = scratch + rows;
  if (rows > 0) {
    const int64_t blocks = (rows + kThreads / 32 - 1) / (kThreads / 32);
    FASTNN_LAUNCH(attention_backward_preprocess_kernel, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), 0,
                  stream)(a, lse2, di);
    FASTNN_CUDA_CHECK_LAUNCH("attention_backward_preprocess_kernel");
  }
  switch (padded_head_dim(a.head_dim)) {
    case 16: return launch_backward<16>(a, lse2, di, stream);
    case 32: return launch_backward<32>(a, lse2, di, stream);
    case 64: return launch_backward<64>(a, lse2, di, stream);
    case 80: return launch_backward<80>(a, lse2, di, stream);
    case 128: return launch_backward<128>(a, lse2, di, stream);
    default:
      throw ValueError(detail::concat("attention_backward: head_dim ", a.head_dim, " > 128 is not supported on CUDA"));
  }
}

}  // namespace fastnn::cuda_kernels
