// Device helpers shared by the convolution and pooling kernels (kernels/conv_*.cu,
// kernels/pool.cu): the fused epilogue activation, a deterministic block sum, and the
// host-side check that every index fits the kernels' 32-bit arithmetic.
#pragma once
#include "cuda_compat.cuh"

#include <cstdint>

#include "fastnn/activation.h"
#include "fastnn/errors.h"

namespace fastnn::cuda_kernels::conv_detail {

// Same formulas as the CPU epilogue (gemm_activation_scalar): exact-erf GELU.
__device__ __forceinline__ float activate(float x, Activation act) {
  switch (act) {
    case Activation::relu: return x < 0.0f ? 0.0f : x;  // NaN propagates, as torch.relu
    case Activation::gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case Activation::gelu_tanh:
      return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case Activation::sigmoid: return 1.0f / (1.0f + expf(-x));
    case Activation::tanh: return tanhf(x);
    default: return x;
  }
}

// Sum of one float per thread over the block (blockDim.x a multiple of 32, <= 1024);
// `scratch` is >= 33 floats of shared memory. A fixed shuffle tree: the result does not
// depend on scheduling. Every thread gets the total. Ends with a barrier, so the caller
// may reuse `scratch` right away.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = 0.0f;
  if (warp == 0) {
    t = lane < warps ? scratch[lane] : 0.0f;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) t += __shfl_down_sync(0xffffffffu, t, off);
    if (lane == 0) scratch[32] = t;
  }
  __syncthreads();
  t = scratch[32];
  __syncthreads();
  return t;
}

// The kernels index with int: every tensor they touch must hold < 2^31 elements.
inline void expect_int32_extent(int64_t numel, const char* op, const char* what) {
  if (numel >= (int64_t{1} << 31))
    throw ValueError(detail::concat(op, ": ", what, " has ", numel,
                                    " elements; the CUDA kernels support fewer than 2^31 per tensor"));
}

inline unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace fastnn::cuda_kernels::conv_detail
