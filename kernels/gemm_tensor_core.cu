// GEMM on tensor cores through nvcuda::wmma, GemmArgs semantics of fastnn/gemm.h:
// TF32 for float32 operands (only when GemmArgs::allow_tf32), BF16 and FP16 operands;
// FP32 accumulation, float32 output with the fused epilogue (alpha, beta * C, biases,
// activation), any strides, batches, any M, N, K.
//
// Algorithm: a block of NW warps owns a BM x BN output tile; each warp a WM x WN
// sub-tile of (WM/16) x (WN/16) 16x16 FP32 accumulator fragments. K advances 64 bytes
// of operand per row at a time (BK = 32 for 16-bit types, 16 for float) through two
// shared-memory stages filled by cp.async while the other is multiplied (as in
// gemm_fp32.cu, gemm_common.cuh stages both operands in the layout their memory order
// allows, so wmma loads them row_major or col_major without a transpose). Out-of-range
// rows/columns/k are zero in shared memory, so the MMAs need no tail logic. TF32:
// fragments are rounded with __float_to_tf32 (round-to-nearest, as cuBLAS) before the
// MMA (m16n16k8); BF16/FP16 use m16n16k16. Epilogue: each warp stores one accumulator
// fragment at a time into a 16x16 float scratch (the drained stage buffers) and its 32
// lanes apply the epilogue to 8 elements each with bounds checks and C's strides.
//
// Tiles (chosen in gemm.cu): 128x128 with 8 warps of 64x32; 64x64 with 4 warps of 32x32.
// Roofline on paper (docs/CUDA.md "GEMM"): a 128x128 tile reads (128+128)*BK elements
// per 2*128*128*BK flops: 64 flop/B for 16-bit inputs, 32 flop/B for TF32, below the DRAM
// balance points (A100-SXM4-80GB: 312 TFLOP/s BF16 / 2.04 TB/s = 153 flop/B; H100-SXM5:
// 989 / 3.35 = 295), so the bound is operand bandwidth: L2 reuse across the blocks of a
// wave raises the DRAM intensity several-fold, leaving L2 / shared-memory bandwidth as the
// limit. wmma without ldmatrix swizzling and a 2-stage pipeline: expect ~40-60% of the
// tensor peak on A100, ~25-40% on H100 (mma.sync-class, no wgmma); small shapes are
// latency-bound.
#include "cuda_compat.cuh"

#include <cstdint>

#include "cuda_backend/check.h"
#include "gemm_common.cuh"
#include "gemm_launchers.cuh"

namespace fastnn::cuda_kernels {
namespace {
using namespace gemm_detail;
namespace wmma = nvcuda::wmma;

// The wmma shape and fragment element type for operand storage type T.
template <class T> struct MmaTraits;
template <> struct MmaTraits<float> {
  using Frag = wmma::precision::tf32;
  static constexpr int K = 8;
};
template <> struct MmaTraits<__half> {
  using Frag = __half;
  static constexpr int K = 16;
};
template <> struct MmaTraits<__nv_bfloat16> {
  using Frag = __nv_bfloat16;
  static constexpr int K = 16;
};

template <class T, int BM, int BN, int WM, int WN>
struct TcConfig {
  static constexpr int kWarps = (BM / WM) * (BN / WN);
  static constexpr int kThreads = kWarps * 32;
  static constexpr int BK = 64 / static_cast<int>(sizeof(T));
  static constexpr int FM = WM / 16, FN = WN / 16;
};

template <class FragT>
__device__ __forceinline__ void round_operand(FragT& f, float) {
#pragma unroll
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
}
template <class FragT, class T>
__device__ __forceinline__ void round_operand(FragT&, T) {}  // 16-bit operands are exact

template <class T, int BM, int BN, int WM, int WN, bool A_KC, bool B_KC>
__global__ void __launch_bounds__(TcConfig<T, BM, BN, WM, WN>::kThreads)
    gemm_wmma_kernel(GemmArgs g, bool a_vec, bool b_vec) {
  using Cfg = TcConfig<T, BM, BN, WM, WN>;
  using Tr = MmaTraits<T>;
  constexpr int BK = Cfg::BK, FM = Cfg::FM, FN = Cfg::FN, KT = Tr::K;
  using LA = TileLayout<T, BM, BK, A_KC>;
  using LB = TileLayout<T, BN, BK, B_KC>;
  using ALayout = std::conditional_t<A_KC, wmma::row_major, wmma::col_major>;
  using BLayout = std::conditional_t<B_KC, wmma::col_major, wmma::row_major>;
  FASTNN_DYNAMIC_SHARED(T, smem);
  // Stage s of A at smem + s * LA::elems, of B after both A stages (offsets, not a
  // pointer array: a dynamically indexed local array would live in local memory).
  auto As = [smem](int s) { return smem + s * LA::elems; };
  auto Bs = [smem](int s) { return smem + 2 * LA::elems + s * LB::elems; };
  float* scratch = reinterpret_cast<float*>(smem);  // epilogue: 256 floats per warp, after the K loop

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / (BN / WN)) * WM, wn = (warp % (BN / WN)) * WN;  // warp's origin in the tile
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t k_tiles = (g.k + BK - 1) / BK;
  const T* a_all = reinterpret_cast<const T*>(g.a);  // 16-bit operands: see GemmArgs::ab_dtype
  const T* b_all = reinterpret_cast<const T*>(g.b);
  for (int64_t b = blockIdx.z; b < g.batch; b += gridDim.z) {
    const OperandView<T> av{a_all + b * g.a_batch_stride, g.a_rs, g.a_cs, g.m, g.k, a_vec};
    const OperandView<T> bv{b_all + b * g.b_batch_stride, g.b_cs, g.b_rs, g.n, g.k, b_vec};
    float* C = g.c + b * g.c_batch_stride;
    wmma::fragment<wmma::accumulator, 16, 16, KT, float> acc[FM][FN];
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    if (k_tiles > 0) {
      stage_tile<T, BM, BK, A_KC, Cfg::kThreads>(As(0), av, m0, 0);
      stage_tile<T, BN, BK, B_KC, Cfg::kThreads>(Bs(0), bv, n0, 0);
    }
    __pipeline_commit();
    for (int64_t t = 0; t < k_tiles; ++t) {
      const int cur = static_cast<int>(t & 1);
      if (t + 1 < k_tiles) {
        stage_tile<T, BM, BK, A_KC, Cfg::kThreads>(As(cur ^ 1), av, m0, (t + 1) * BK);
        stage_tile<T, BN, BK, B_KC, Cfg::kThreads>(Bs(cur ^ 1), bv, n0, (t + 1) * BK);
      }
      __pipeline_commit();
      __pipeline_wait_prior(1);
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; kk += KT) {
        wmma::fragment<wmma::matrix_a, 16, 16, KT, typename Tr::Frag, ALayout> fa[FM];
        wmma::fragment<wmma::matrix_b, 16, 16, KT, typename Tr::Frag, BLayout> fb[FN];
        // Fragment starts are 32-byte aligned: rows/cols step by 16 elements and k by KT
        // (32 bytes), and ld * 16 elements is a multiple of 32 bytes (TileLayout pad).
#pragma unroll
        for (int i = 0; i < FM; ++i) {
          wmma::load_matrix_sync(fa[i], As(cur) + LA::at(wm + 16 * i, kk), LA::ld);
          round_operand(fa[i], T());
        }
#pragma unroll
        for (int j = 0; j < FN; ++j) {
          wmma::load_matrix_sync(fb[j], Bs(cur) + LB::at(wn + 16 * j, kk), LB::ld);
          round_operand(fb[j], T());
        }
#pragma unroll
        for (int i = 0; i < FM; ++i)
#pragma unroll
          for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
      __syncthreads();
    }
    __pipeline_wait_prior(0);
    __syncthreads();  // every warp is done with the stages before they become scratch
    float* ws = scratch + warp * 256;
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        wmma::store_matrix_sync(ws, acc[i][j], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32)
          store_output(g, C, m0 + wm + 16 * i + e / 16, n0 + wn + 16 * j + e % 16, ws[e]);
        __syncwarp();  // before the next fragment overwrites the scratch
      }
    __syncthreads();  // the next batch entry restages into the scratch
  }
}

template <class T, int BM, int BN, int WM, int WN, bool A_KC, bool B_KC>
void launch(const GemmArgs& g, bool a_vec, bool b_vec, cudaStream_t stream) {
  using Cfg = TcConfig<T, BM, BN, WM, WN>;
  constexpr size_t stages = 2 * sizeof(T) * (TileLayout<T, BM, Cfg::BK, A_KC>::elems +
                                             TileLayout<T, BN, Cfg::BK, B_KC>::elems);
  constexpr size_t scratch = sizeof(float) * 256 * Cfg::kWarps;
  constexpr size_t smem = stages > scratch ? stages : scratch;
  static_assert(smem <= 48 * 1024, "no opt-in needed");
  auto* k = &gemm_wmma_kernel<T, BM, BN, WM, WN, A_KC, B_KC>;
  FASTNN_LAUNCH(k, gemm_grid(g, BM, BN), Cfg::kThreads, smem, stream)(g, a_vec, b_vec);
  FASTNN_CUDA_CHECK_LAUNCH("gemm_wmma_kernel");
}

template <class T, int BM, int BN, int WM, int WN>
void launch_layouts(const GemmArgs& g, cudaStream_t stream) {
  const T* a = gemm_operand<T>(g.a);
  const T* b = gemm_operand<T>(g.b);
  const bool a_kc = g.a_cs == 1, b_kc = g.b_rs == 1;
  const bool a_vec = a_kc ? vector_ok(a, g.a_cs, g.a_rs, g.a_batch_stride) : vector_ok(a, g.a_rs, g.a_cs, g.a_batch_stride);
  const bool b_vec = b_kc ? vector_ok(b, g.b_rs, g.b_cs, g.b_batch_stride) : vector_ok(b, g.b_cs, g.b_rs, g.b_batch_stride);
  if (a_kc && b_kc) launch<T, BM, BN, WM, WN, true, true>(g, a_vec, b_vec, stream);
  else if (a_kc) launch<T, BM, BN, WM, WN, true, false>(g, a_vec, b_vec, stream);
  else if (b_kc) launch<T, BM, BN, WM, WN, false, true>(g, a_vec, b_vec, stream);
  else launch<T, BM, BN, WM, WN, false, false>(g, a_vec, b_vec, stream);
}

template <class T>
void launch_tile(const GemmArgs& g, GemmTile tile, cudaStream_t stream) {
  if (tile == GemmTile::t128x128)
    launch_layouts<T, 128, 128, 64, 32>(g, stream);
  else
    launch_layouts<T, 64, 64, 32, 32>(g, stream);
}

}  // namespace

void gemm_tensor_core(const GemmArgs& g, GemmPath path, GemmTile tile, cudaStream_t stream) {
  switch (path) {
    case GemmPath::tf32: launch_tile<float>(g, tile, stream); break;
    case GemmPath::bf16: launch_tile<__nv_bfloat16>(g, tile, stream); break;
    default: launch_tile<__half>(g, tile, stream); break;  // fp16 (the dispatcher never passes fp32)
  }
}

}  // namespace fastnn::cuda_kernels
