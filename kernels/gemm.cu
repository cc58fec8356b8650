// SGEMM for CudaBackend::gemm (GemmArgs semantics of fastnn/gemm.h: general
// strides, alpha/beta, row/column bias, fused activation, batches).
//
// BASELINE kernel: correct for every stride pattern, written to be replaced by the
// tuned tensor-core GEMM (issue 7 part C2). Algorithm: 64x64 output tile per block
// of 256 threads, K in steps of 16 through shared memory (A stored k-major so the
// inner loop reads both operands as broadcasts / consecutive words), each thread
// accumulating a 4x4 register tile at rows ty+16i, cols tx+16j. Loads are bounds-
// checked with zero fill, so tails need no special path. Bound: compute (~16 FMAs
// per shared-memory load); far below cuBLAS on a GPU, a few ms at 128^3 on the
// emulator.
#include "cuda_compat.cuh"

#include <cstdint>

#include "cuda_backend/check.h"
#include "cuda_backend/kernels.h"

namespace fastnn::cuda_kernels {
namespace {

constexpr int BM = 64, BN = 64, BK = 16, kThreads = 256;

__device__ __forceinline__ float activate(float x, int act) {
  switch (act) {
    case 1: return x > 0.0f ? x : 0.0f;
    case 2: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case 3: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case 4: return 1.0f / (1.0f + expf(-x));
    case 5: return tanhf(x);
    default: return x;
  }
}

__global__ void __launch_bounds__(kThreads) sgemm_kernel(GemmArgs g) {
  __shared__ float As[BK][BM + 4];
  __shared__ float Bs[BK][BN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  for (int64_t b = blockIdx.z; b < g.batch; b += gridDim.z) {
    const float* A = g.a + b * g.a_batch_stride;
    const float* B = g.b + b * g.b_batch_stride;
    float* C = g.c + b * g.c_batch_stride;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < g.k; k0 += BK) {
      // 1024 elements of each operand tile, 4 per thread.
      for (int e = tid; e < BM * BK; e += kThreads) {
        const int r = e / BK, kk = e % BK;  // A: row r of the tile, column kk
        const int64_t gi = m0 + r, gk = k0 + kk;
        As[kk][r] = (gi < g.m && gk < g.k) ? A[gi * g.a_rs + gk * g.a_cs] : 0.0f;
        const int kb = e / BN, c = e % BN;  // B: row kb, column c
        const int64_t gkb = k0 + kb, gj = n0 + c;
        Bs[kb][c] = (gkb < g.k && gj < g.n) ? B[gkb * g.b_rs + gj * g.b_cs] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        float a[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
      }
      __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
      const int64_t gi = m0 + ty + 16 * i;
      if (gi >= g.m) continue;
      for (int j = 0; j < 4; ++j) {
        const int64_t gj = n0 + tx + 16 * j;
        if (gj >= g.n) continue;
        float* cp = C + gi * g.c_rs + gj * g.c_cs;
        float v = g.alpha * acc[i][j];
        if (g.beta != 0.0f) v += g.beta * *cp;  // beta == 0: C is not read (NaN-safe)
        if (g.bias_row) v += g.bias_row[gi];
        if (g.bias_col) v += g.bias_col[gj];
        *cp = activate(v, static_cast<int>(g.activation));
      }
    }
  }
}

}  // namespace

void gemm(const GemmArgs& g, cudaStream_t stream) {
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  const int64_t gx = (g.n + BN - 1) / BN, gy = (g.m + BM - 1) / BM;
  if (gy > 65535 || gx > 2147483647)
    throw ValueError(detail::concat("gemm: m = ", g.m, " exceeds the CUDA grid limit (", 65535 * BM, ")"));
  const unsigned gz = static_cast<unsigned>(g.batch < 65535 ? g.batch : 65535);
  FASTNN_LAUNCH(sgemm_kernel, dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), gz), kThreads, 0, stream)(g);
  FASTNN_CUDA_CHECK_LAUNCH("sgemm_kernel");
}

}  // namespace fastnn::cuda_kernels
