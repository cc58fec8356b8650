// SGEMM on CUDA cores (FP32 FMA), GemmArgs semantics of fastnn/gemm.h: any strides,
// alpha/beta, row/column bias, fused activation, batches.
//
// Algorithm: one block of 256 threads per BM x BN output tile (per batch entry: grid z
// strides over the batch). K advances BK at a time through two shared-memory stages:
// while the block multiplies stage s, cp.async (__pipeline_memcpy_async) fills stage
// s^1, so global latency hides behind the FMAs. Each operand tile is stored in the
// layout its memory order allows (gemm_common.cuh): 16-byte cp.async when that
// dimension has unit stride and alignment holds, 4-byte cp.async otherwise; elements
// past M, N or K are zero-filled, so tails need no special inner loop. Each thread
// keeps a TM x TN register tile at rows ty + i*(BM/TM), cols tx + j*(BN/TN) (strided,
// so a warp's shared-memory reads are broadcasts or consecutive words: no bank
// conflicts, and the epilogue's stores of consecutive threads are consecutive columns).
//
// Tiles (the dispatcher in gemm.cu picks one per shape):
//   128x128x8, 8x8 per thread: 64 FMAs per 16 shared-memory words read per k; 8 KB of
//     operands per 128*128*8*2 = 262k flops -> arithmetic intensity vs global memory
//     BM*BN*2 / ((BM+BN)*4) = 32 flop/B per k-slice;
//   64x64x8, 4x4 per thread: 16 flop/B, four times the blocks (thin or small problems).
// Bound: compute (FP32 FMA). A100-SXM4-80GB FP32 peak 19.5 TFLOP/s (2.04 TB/s: balance
// 9.6 flop/B), H100-SXM5 67 TFLOP/s (3.35 TB/s: 20 flop/B); expected ~50-70% of peak at
// large M, N, K (one 256-thread block per SM at the 128x128 tile); docs/CUDA.md "GEMM".
#include "cuda_compat.cuh"

#include <cstdint>

#include "cuda_backend/check.h"
#include "gemm_common.cuh"
#include "gemm_launchers.cuh"

namespace fastnn::cuda_kernels {
namespace {
using namespace gemm_detail;

constexpr int kThreads = 256;

template <int BM, int BN, int BK, int TM, int TN, bool A_KC, bool B_KC>
__global__ void __launch_bounds__(kThreads, 1) sgemm_tiled_kernel(GemmArgs g, bool a_vec, bool b_vec) {
  static_assert((BM / TM) * (BN / TN) == kThreads, "one register tile per thread");
  using LA = TileLayout<float, BM, BK, A_KC>;
  using LB = TileLayout<float, BN, BK, B_KC>;
  FASTNN_DYNAMIC_SHARED(float, smem);
  // Stage s of A at smem + s * LA::elems, of B after both A stages (offsets, not a
  // pointer array: a dynamically indexed local array would live in local memory).
  auto As = [smem](int s) { return smem + s * LA::elems; };
  auto Bs = [smem](int s) { return smem + 2 * LA::elems + s * LB::elems; };

  const int tid = threadIdx.x, tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t k_tiles = (g.k + BK - 1) / BK;
  for (int64_t b = blockIdx.z; b < g.batch; b += gridDim.z) {
    const OperandView<float> av{g.a + b * g.a_batch_stride, g.a_rs, g.a_cs, g.m, g.k, a_vec};
    const OperandView<float> bv{g.b + b * g.b_batch_stride, g.b_cs, g.b_rs, g.n, g.k, b_vec};
    float* C = g.c + b * g.c_batch_stride;
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    if (k_tiles > 0) {
      stage_tile<float, BM, BK, A_KC, kThreads>(As(0), av, m0, 0);
      stage_tile<float, BN, BK, B_KC, kThreads>(Bs(0), bv, n0, 0);
    }
    __pipeline_commit();
    for (int64_t t = 0; t < k_tiles; ++t) {
      const int cur = static_cast<int>(t & 1);
      if (t + 1 < k_tiles) {  // prefetch the next K slice into the other stage
        stage_tile<float, BM, BK, A_KC, kThreads>(As(cur ^ 1), av, m0, (t + 1) * BK);
        stage_tile<float, BN, BK, B_KC, kThreads>(Bs(cur ^ 1), bv, n0, (t + 1) * BK);
      }
      __pipeline_commit();  // possibly empty: keeps "all but the newest group" = stage cur
      __pipeline_wait_prior(1);
      __syncthreads();
      const float* a_s = As(cur);
      const float* b_s = Bs(cur);
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        float a[TM], bb[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = a_s[LA::at(ty + i * (BM / TM), kk)];
#pragma unroll
        for (int j = 0; j < TN; ++j) bb[j] = b_s[LB::at(tx + j * (BN / TN), kk)];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], bb[j], acc[i][j]);
      }
      __syncthreads();  // the next iteration refills this stage
    }
    __pipeline_wait_prior(0);
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) store_output(g, C, m0 + ty + i * (BM / TM), n0 + tx + j * (BN / TN), acc[i][j]);
  }
}

template <int BM, int BN, int BK, int TM, int TN, bool A_KC, bool B_KC>
void launch(const GemmArgs& g, bool a_vec, bool b_vec, dim3 grid, cudaStream_t stream) {
  constexpr size_t smem = 2 * sizeof(float) * (TileLayout<float, BM, BK, A_KC>::elems + TileLayout<float, BN, BK, B_KC>::elems);
  static_assert(smem <= 48 * 1024, "no opt-in needed");
  auto* k = &sgemm_tiled_kernel<BM, BN, BK, TM, TN, A_KC, B_KC>;
  FASTNN_LAUNCH(k, grid, kThreads, smem, stream)(g, a_vec, b_vec);
  FASTNN_CUDA_CHECK_LAUNCH("sgemm_tiled_kernel");
}

template <int BM, int BN, int BK, int TM, int TN>
void launch_layouts(const GemmArgs& g, cudaStream_t stream) {
  const bool a_kc = g.a_cs == 1, b_kc = g.b_rs == 1;
  const bool a_vec = a_kc ? vector_ok(g.a, g.a_cs, g.a_rs, g.a_batch_stride)
                          : vector_ok(g.a, g.a_rs, g.a_cs, g.a_batch_stride);
  const bool b_vec = b_kc ? vector_ok(g.b, g.b_rs, g.b_cs, g.b_batch_stride)
                          : vector_ok(g.b, g.b_cs, g.b_rs, g.b_batch_stride);
  const dim3 grid = gemm_grid(g, BM, BN);
  if (a_kc && b_kc) launch<BM, BN, BK, TM, TN, true, true>(g, a_vec, b_vec, grid, stream);
  else if (a_kc) launch<BM, BN, BK, TM, TN, true, false>(g, a_vec, b_vec, grid, stream);
  else if (b_kc) launch<BM, BN, BK, TM, TN, false, true>(g, a_vec, b_vec, grid, stream);
  else launch<BM, BN, BK, TM, TN, false, false>(g, a_vec, b_vec, grid, stream);
}

}  // namespace

void gemm_fp32(const GemmArgs& g, GemmTile tile, cudaStream_t stream) {
  if (tile == GemmTile::t128x128)
    launch_layouts<128, 128, 8, 8, 8>(g, stream);
  else
    launch_layouts<64, 64, 8, 4, 4>(g, stream);
}

}  // namespace fastnn::cuda_kernels
