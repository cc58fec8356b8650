// Block-tile building blocks shared by the CUDA attention kernels
// (kernels/attention_forward.cu, kernels/attention_backward.cu).
//
// Thread layout (every attention kernel): 128 threads = 4 warps; lane = 8*g + c with
// row group g in 0..3 and column lane c in 0..7. A block tile has 16*TM rows: the
// thread (warp w, group g) owns rows tile_row<TM>(i) = 4*TM*w + TM*g + i, i < TM, and,
// in an R x C score tile, the columns c + 8*jj (jj < C/8). A row is thus
// held by the 8 lanes of one row group inside one warp: row reductions are 3 xor
// shuffles, and a row of P written to shared memory is read back by the same warp
// only (__syncwarp, not __syncthreads). For the D-wide accumulators (O, dQ, dK, dV)
// the thread owns columns c + 8*dd, dd < DP/8, of its TM rows.
//
// Shared-memory tiles of width DP (the padded head dim) are stored with row stride
// DP+1: in tile_dot the 8 column lanes read 8 different rows at the same d, which the
// odd stride puts in 8 different banks (the 4 row groups read 4 other rows, also
// conflict-free); in tile_accum the lanes read 8 consecutive elements of one row.
// Score tiles (P, dS) use row stride C+1 for the same reason.
//
// Head dims: kernels are instantiated for DP in {16, 32, 64, 80, 128}; a head dim D
// is run by the smallest DP >= D, the loader zero-filling columns D..DP-1 (zero
// contributes nothing to the dot products) and the epilogues writing d < D only.
#pragma once
#include "cuda_compat.cuh"

#include <cfloat>
#include <cstdint>

#include "fastnn/attention.h"
#include "fastnn/philox.h"

namespace fastnn::cuda_kernels::attention_tile {

constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Key-tile width of the query-row-owning kernels (forward, dq): 64 keys for small
// head dims, 32 from DP = 64 on, which keeps shared memory under ~73 KiB at DP = 128
// and the per-thread score registers at TM * C / 8 = 16.
constexpr int row_kernel_bc(int dp) { return dp <= 32 ? 64 : 32; }

// The padded head dim for D (0 when D > 128: unsupported on CUDA).
inline int padded_head_dim(int64_t d) {
  return d <= 16 ? 16 : d <= 32 ? 32 : d <= 64 ? 64 : d <= 80 ? 80 : d <= 128 ? 128 : 0;
}

// By value: std::min / std::max return references, and one taken of a kernel argument
// made ptxas keep a 16-byte stack frame.
__device__ __forceinline__ int64_t min64(int64_t x, int64_t y) { return x < y ? x : y; }
__device__ __forceinline__ int64_t max64(int64_t x, int64_t y) { return x > y ? x : y; }

template <int TM>
__device__ __forceinline__ int tile_row(int i) {
  return 4 * TM * static_cast<int>(threadIdx.x >> 5) + TM * static_cast<int>((threadIdx.x >> 3) & 3) + i;
}
__device__ __forceinline__ int tile_col() { return static_cast<int>(threadIdx.x & 7); }

// dst[r][d] (row stride DP+1) = mul * src[r*sn + d*sd] for r < rows, d < dim; zero elsewhere
// in the ROWS x DP tile (zero rows and columns keep NaN poison out of the products).
template <int ROWS, int DP>
__device__ __forceinline__ void load_tile(float* dst, const float* src, int64_t sn, int64_t sd, int rows, int dim,
                                          float mul) {
  for (int idx = static_cast<int>(threadIdx.x); idx < ROWS * DP; idx += kThreads) {
    const int r = idx / DP, d = idx - r * DP;
    dst[r * (DP + 1) + d] = (r < rows && d < dim) ? src[r * sn + d * sd] * mul : 0.0f;
  }
}

// acc[i][jj] = sum_d A[tile_row(i)][d] * B[c + 8*jj][d]  (A, B: row stride DP+1).
template <int TM, int NC, int DP>
__device__ __forceinline__ void tile_dot(float (&acc)[TM][NC], const float* A, const float* B) {
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int jj = 0; jj < NC; ++jj) acc[i][jj] = 0.0f;
  const float* a0 = A + tile_row<TM>(0) * (DP + 1);
  const float* b0 = B + tile_col() * (DP + 1);
#pragma unroll 4
  for (int d = 0; d < DP; ++d) {
    float av[TM], bv[NC];
#pragma unroll
    for (int i = 0; i < TM; ++i) av[i] = a0[i * (DP + 1) + d];
#pragma unroll
    for (int jj = 0; jj < NC; ++jj) bv[jj] = b0[jj * 8 * (DP + 1) + d];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int jj = 0; jj < NC; ++jj) acc[i][jj] += av[i] * bv[jj];
  }
}

// acc[i][dd] += sum_{j < K} P[tile_row(i)][j] * V[j][c + 8*dd]  (P: row stride K+1; V: DP+1).
template <int TM, int K, int DP>
__device__ __forceinline__ void tile_accum(float (&acc)[TM][DP / 8], const float* P, const float* V) {
  const float* p0 = P + tile_row<TM>(0) * (K + 1);
  const float* v0 = V + tile_col();
#pragma unroll 4
  for (int j = 0; j < K; ++j) {
    float pv[TM], vv[DP / 8];
#pragma unroll
    for (int i = 0; i < TM; ++i) pv[i] = p0[i * (K + 1) + j];
#pragma unroll
    for (int dd = 0; dd < DP / 8; ++dd) vv[dd] = v0[j * (DP + 1) + 8 * dd];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int dd = 0; dd < DP / 8; ++dd) acc[i][dd] += pv[i] * vv[dd];
  }
}

// Sum / max over the 8 lanes of a row group.
__device__ __forceinline__ float row_group_sum(float x) {
  x += __shfl_xor_sync(0xFFFFFFFFu, x, 1);
  x += __shfl_xor_sync(0xFFFFFFFFu, x, 2);
  x += __shfl_xor_sync(0xFFFFFFFFu, x, 4);
  return x;
}
__device__ __forceinline__ float row_group_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 1));
  x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 2));
  x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 4));
  return x;
}

// Causal, aligned bottom-right: key j is hidden from query i iff j > i + (Nk - Nq).
__device__ __forceinline__ bool causal_hidden(const AttentionArgs& a, int64_t i, int64_t j) {
  return a.causal && j > i + (a.nk - a.nq);
}

// Is key j (< Nk) dropped by the key padding mask?
__device__ __forceinline__ bool key_padded(const AttentionArgs& a, int64_t b, int64_t j) {
  return a.key_padding_mask && a.key_padding_mask[b * a.mask_sb + j * a.mask_sn];
}

// Block-wide: is any key j0 .. j0+jb-1 not padded? Its __syncthreads_or is also the
// barrier after which the caller may overwrite the previous tile's shared memory.
template <int BC>
__device__ __forceinline__ bool tile_has_live_key(const AttentionArgs& a, int64_t b, int64_t j0, int jb) {
  static_assert(BC <= kThreads, "one key per thread");
  const int t = static_cast<int>(threadIdx.x);
  const bool live = t < BC && t < jb && !key_padded(a, b, j0 + t);
  return __syncthreads_or(live) != 0;
}

// sbias[t] = 0 for a live key j0 + t, -inf for a padded one or t >= jb (added to scores).
template <int BC>
__device__ __forceinline__ void stage_key_bias(const AttentionArgs& a, int64_t b, int64_t j0, int jb, float* sbias) {
  const int t = static_cast<int>(threadIdx.x);
  if (t < BC) sbias[t] = (t < jb && !key_padded(a, b, j0 + t)) ? 0.0f : -INFINITY;
}

// Is element (bh, i, j) kept by dropout? The shared Philox stream (fastnn/philox.h)
// with the CPU kernels' element index e = (bh*Nq + i)*Nk + j: same seed, same mask.
__device__ __forceinline__ bool dropout_keeps(const AttentionArgs& a, int64_t bh, int64_t i, int64_t j,
                                              uint32_t threshold) {
  return philox::keep(a.seed, a.offset, static_cast<uint64_t>((bh * a.nq + i) * a.nk + j), threshold);
}

// What every attention block derives from its arguments: the (batch, head) pair it serves
// and the scalars of the softmax (scores are scaled into the exp2 domain) and of dropout.
struct BlockScalars {
  int64_t bh, b, h;
  int dim;
  float c2;            // scale * log2(e)
  bool dropout;
  uint32_t threshold;  // Philox keep threshold for dropout_p
  float keep_scale;    // 1 / (1 - dropout_p)

  // The dropout factor of probability p at element (i, j): 1 without dropout, else
  // keep_scale when the element is kept and 0 when dropped (p == 0 needs no draw).
  __device__ __forceinline__ float dropout_factor(const AttentionArgs& a, float p, int64_t i, int64_t j) const {
    if (!dropout) return 1.0f;
    return p != 0.0f && dropout_keeps(a, bh, i, j, threshold) ? keep_scale : 0.0f;
  }
};

__device__ __forceinline__ BlockScalars block_scalars(const AttentionArgs& a, int64_t bh) {
  BlockScalars s;
  s.bh = bh;
  s.b = bh / a.heads;
  s.h = bh % a.heads;
  s.dim = static_cast<int>(a.head_dim);
  s.c2 = a.scale * kLog2e;
  s.dropout = a.dropout_p > 0.0f;
  s.threshold = philox::keep_threshold(a.dropout_p);
  s.keep_scale = s.dropout ? 1.0f / (1.0f - a.dropout_p) : 1.0f;
  return s;
}

// One past the last key the query rows i0 .. i0+ib-1 may see (causal: the last row sees
// keys j <= i0 + ib - 1 + Nk - Nq).
__device__ __forceinline__ int64_t visible_key_end(const AttentionArgs& a, int64_t i0, int ib) {
  return a.causal ? max64(0, min64(a.nk, i0 + ib + a.nk - a.nq)) : a.nk;
}

// The key-tile step of the query-row-owning kernels (forward, dq): false when every key
// j0 .. j0+jb-1 is padded (skip the tile), else K and V rows loaded into sk / sv, the
// key bias staged and the block synchronised.
template <int BC, int DP>
__device__ __forceinline__ bool load_key_tile(const AttentionArgs& a, const BlockScalars& bs, int64_t j0, int jb,
                                              float* sk, float* sv, float* sbias) {
  if (!tile_has_live_key<BC>(a, bs.b, j0, jb)) return false;
  load_tile<BC, DP>(sk, a.k + bs.b * a.k_sb + bs.h * a.k_sh + j0 * a.k_sn, a.k_sn, a.k_sd, jb, bs.dim, 1.0f);
  load_tile<BC, DP>(sv, a.v + bs.b * a.v_sb + bs.h * a.v_sh + j0 * a.v_sn, a.v_sn, a.v_sd, jb, bs.dim, 1.0f);
  stage_key_bias<BC>(a, bs.b, j0, jb, sbias);
  __syncthreads();
  return true;
}

// base[(row0 + r) * sn + d * sd] = mul * acc[i][dd] for the thread's rows r = tile_row(i) < rows
// and columns d = c + 8*dd < dim (the D-wide accumulators' epilogue).
template <int TM, int ND>
__device__ __forceinline__ void store_rows(float* base, int64_t sn, int64_t sd, int64_t row0, int rows, int dim,
                                           const float (&acc)[TM][ND], float mul) {
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = tile_row<TM>(i);
    if (r >= rows) continue;
#pragma unroll
    for (int dd = 0; dd < ND; ++dd) {
      const int d = tile_col() + 8 * dd;
      if (d < dim) base[(row0 + r) * sn + d * sd] = acc[i][dd] * mul;
    }
  }
}

}  // namespace fastnn::cuda_kernels::attention_tile
