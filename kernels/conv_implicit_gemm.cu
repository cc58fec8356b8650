// 2-D convolution as an implicit GEMM on CUDA cores (FP32), forward / grad input /
// grad weight, any stride, padding, dilation and groups (Conv2dArgs, fastnn/conv.h), and
// the host launchers that pick this kernel or the tensor-core one
// (conv_implicit_gemm_wmma.cu: 16-bit inputs, or float32 with allow_tf32).
//
// The GEMM view of each pass (per group g = blockIdx.z) is in conv_igemm_gather.cuh.
// wgrad splits its long K (N*Ho*Wo) across blockIdx.z when the tile grid is too small
// to fill the GPU; partial sums go to a workspace and a fixed-order reduction writes dW
// (deterministic, no atomics).
// The im2col matrix is never materialised: each K step gathers a BK x BN tile of it
// straight into shared memory. A thread loads a fixed column of the B tile, so the
// column's decode (image, output position) happens once per block, the row decode
// (channel, tap) once per K step.
//
// Tiling: 64x64 output tile per block of 256 threads, BK = 16, both operand tiles stored
// k-major in shared memory (8.5 KiB); each thread accumulates a 4x4 register tile at rows
// ty+16i, cols tx+16j (the inner loop reads operands as warp broadcasts / consecutive
// words). Tails: the gathers fill zeros, the epilogue masks.
//
// Bound: per K step a block reads 2*64*16 floats and does 2*64*64*16 flops (16 flop/B
// of shared-memory traffic, 32 FMAs per 8 shared loads per thread): compute-bound on
// paper for the large layers (A100 19.5 TFLOP/s FP32, H100 SXM 67 TFLOP/s FP32); this
// baseline without double buffering reaches perhaps 40-60% of that. The bench layers of
// issue 4 are tiny for a GPU (57-302 MFLOP, a few microseconds at peak): launch latency
// and the tile count (small grids) bound them, hence split-K for wgrad. The tensor-core
// path (TF32 / BF16 via wmma) is the one to use for throughput.
#include "cuda_compat.cuh"

#include <cstdint>

#include "conv.cuh"
#include "conv_common.cuh"
#include "conv_igemm_gather.cuh"
#include "cuda_backend/check.h"

namespace fastnn::cuda_kernels {
namespace {
using namespace igemm;

constexpr int BM = 64, BN = 64, BK = 16, kThreads = 256, kLd = BM + 4;
static_assert(BM == kIgemmTile && BN == kIgemmTile && BK == kIgemmBK, "both kernels share the split-K plan");

template <int kMode>
__global__ void __launch_bounds__(kThreads) conv_igemm_kernel(Params p) {
  FASTNN_DYNAMIC_SHARED(float, smem);
  float* As = smem;             // [BK][kLd]: As[kk][m]
  float* Bs = smem + BK * kLd;  // [BK][kLd]: Bs[kk][n]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int g = blockIdx.z / p.splits, split = blockIdx.z - g * p.splits;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int kbeg = split * p.k_chunk, kend = min(p.K, kbeg + p.k_chunk);
  const Column col = column<kMode>(p, g, n0 + tid % BN);
  const int a_kk = tid % BK, a_m = tid / BK, b_kk = tid / BN, b_n = tid % BN;

  float acc[4][4] = {};
  for (int k0 = kbeg; k0 < kend; k0 += BK) {
    const ARow ar = a_row<kMode>(p, g, k0 + a_kk, kend);
#pragma unroll
    for (int i = 0; i < BM / 16; ++i) {
      const int m = a_m + 16 * i;
      As[a_kk * kLd + m] = (ar.ok && m0 + m < p.M) ? p.a[ar.off + (m0 + m) * ar.mstride] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < BK / 4; ++i) {
      const int kk = b_kk + 4 * i;
      const int off = gather_offset<kMode>(p, col, k0 + kk, kend);
      Bs[kk * kLd + b_n] = off >= 0 ? p.b[off] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = As[kk * kLd + ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = Bs[kk * kLd + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty + 16 * i;
    if (m >= p.M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tx + 16 * j;
      if (n < p.N) store<kMode>(p, g, split, m, n, acc[i][j]);
    }
  }
}

// dw[i] = sum over splits s (in order) of ws[s * total + i].
__global__ void __launch_bounds__(256) split_k_reduce_kernel(const float* ws, int splits, int total, float* dw) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  float s = 0.0f;
  for (int k = 0; k < splits; ++k) s += ws[k * total + i];
  dw[i] = s;
}

// FP32 CUDA cores, or tensor cores for 16-bit inputs / allowed TF32.
template <int kMode>
void launch(const Conv2dArgs& a, Params& p, const char* op, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0) return;
  if (a.dtype != DType::float32 || a.allow_tf32) {
    launch_igemm_wmma(kMode, p, a.groups, a.dtype, stream);
    return;
  }
  auto* k = &conv_igemm_kernel<kMode>;
  FASTNN_LAUNCH(k, grid_of(p, a.groups, BM, BN, op), kThreads, 2 * BK * kLd * sizeof(float), stream)(p);
  FASTNN_CUDA_CHECK_LAUNCH("conv_igemm_kernel");
}

}  // namespace

void conv2d_forward_igemm(const Conv2dArgs& a, cudaStream_t stream) {
  Params p = forward_params(a);
  launch<kForward>(a, p, "conv2d", stream);
}

void conv2d_backward_input_igemm(const Conv2dArgs& a, cudaStream_t stream) {
  Params p = grad_input_params(a);
  launch<kGradInput>(a, p, "conv2d_backward", stream);
}

int64_t conv2d_backward_weight_workspace(const Conv2dArgs& a) {
  const Params p = grad_weight_params(a, BM, BN, BK);
  return p.splits > 1 ? int64_t{p.splits} * p.out_split_stride : 0;
}

void conv2d_backward_weight_igemm(const Conv2dArgs& a, float* workspace, cudaStream_t stream) {
  Params p = grad_weight_params(a, BM, BN, BK);
  if (p.M <= 0 || p.N <= 0) return;
  p.out = p.splits > 1 ? workspace : a.dw;
  launch<kGradWeight>(a, p, "conv2d_backward", stream);
  if (p.splits > 1) {
    FASTNN_LAUNCH(split_k_reduce_kernel, conv_detail::blocks_for(p.out_split_stride, 256), 256, 0, stream)(
        workspace, p.splits, p.out_split_stride, a.dw);
    FASTNN_CUDA_CHECK_LAUNCH("split_k_reduce_kernel");
  }
}

}  // namespace fastnn::cuda_kernels
