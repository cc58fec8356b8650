// Device helpers shared by the training kernels (kernels/nn_*.cu): row scheduling
// (one warp per row for short rows, one block per row for long ones), warp/block
// all-reductions, grid sizing, index reads.
#pragma once
#include "cuda_compat.cuh"

#include <cstdint>

#include "cuda_backend/check.h"
#include "fastnn/nn_kernels.h"

namespace fastnn::cuda_kernels::nn_detail {

// Rows up to kWarpRowMaxCols columns: one warp per row, kWarpRowsPerBlock rows per block,
// every reduction is 5 shuffles with no __syncthreads. Longer rows: one block of
// kRowBlockThreads per row (shuffles, then one shared-memory exchange of the warp sums).
constexpr int64_t kWarpRowMaxCols = 1024;
constexpr int kWarpRowsPerBlock = 4;
constexpr int kRowBlockThreads = 256;
// Element-wise kernels: 256 threads, grid-stride, at most kMaxGrid blocks (8 per SM on
// an H100 saturates the memory system; the stride loop covers the rest).
constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 1056;

inline int grid_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 1 ? 1 : b > kMaxGrid ? kMaxGrid : b);
}

// NaN-propagating max (fmaxf drops NaN; a row holding NaN must give NaN, as the CPU).
__device__ __forceinline__ float nan_max(float a, float b) { return (a != a || a > b) ? a : b; }

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return nan_max(a, b); }
};

// All-reduce over the row's threads: a warp (kWarp) or the whole block. Block mode uses
// `red` (32 T of shared memory); the leading barrier protects it from the previous call.
// The combination order is fixed (xor tree, then warps 0..nw-1): deterministic.
template <bool kWarp, typename T, typename Op>
__device__ __forceinline__ T row_allreduce(T v, Op op, T* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (kWarp) return v;
  __syncthreads();
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  T r = red[0];
  const int nw = static_cast<int>(blockDim.x / 32);
  for (int w = 1; w < nw; ++w) r = op(r, red[w]);
  return r;
}

// This thread's row and position in it.
struct RowSlot {
  int64_t row;
  int lane;
  int stride;
};
template <bool kWarp>
__device__ __forceinline__ RowSlot row_slot() {
  if (kWarp)
    return RowSlot{static_cast<int64_t>(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / 32,
                   static_cast<int>(threadIdx.x % 32), 32};
  return RowSlot{static_cast<int64_t>(blockIdx.x), static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x)};
}

// Launches kernel<true> (warp rows) or kernel<false> (block rows) over `rows` rows of
// `cols`; `red_bytes` of dynamic shared memory hold the block exchange.
// The caller checks the launch (FASTNN_CUDA_CHECK_LAUNCH wants a literal name).
template <typename KWarp, typename KBlock, typename... Args>
void launch_rows(KWarp kwarp, KBlock kblock, int64_t rows, int64_t cols, size_t red_bytes, cudaStream_t stream,
                 Args... args) {
  if (rows <= 0) return;
  if (cols <= kWarpRowMaxCols) {
    const int64_t blocks = (rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
    FASTNN_LAUNCH(kwarp, static_cast<unsigned>(blocks), kWarpRowsPerBlock * 32, 0, stream)(args...);
  } else {
    FASTNN_LAUNCH(kblock, static_cast<unsigned>(rows), kRowBlockThreads, red_bytes, stream)(args...);
  }
}

__device__ __forceinline__ int64_t index_at(const void* p, bool is64, int64_t i) {
  return is64 ? static_cast<const int64_t*>(p)[i] : static_cast<int64_t>(static_cast<const int32_t*>(p)[i]);
}

}  // namespace fastnn::cuda_kernels::nn_detail
