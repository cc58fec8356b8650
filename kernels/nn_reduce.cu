// Axis reductions sum / mean / max (+ first argmax) of x viewed as (outer, r, inner)
// (fastnn/nn_kernels.h ReduceArgs) and the backward of max (ReduceMaxBackwardArgs).
// inner == 1 (reducing the last / only axis): one warp per row of r <= 1024 elements
// (4 rows per block), else one 256-thread block per row; xor-shuffle all-reductions,
// (value, index) pairs for max: NaN wins, then the larger value, ties go to the smaller
// index — a total order, so the tree gives the first maximum like the CPU's scan.
// inner > 1: one thread per output (o, i) walks k = 0..r-1 in order (consecutive threads
// read consecutive i: coalesced), the CPU's own summation order -> bitwise equal sums.
// max_backward: grad_x zeroed, then one thread per output scatters its gradient.
// Bound: memory, 4 B/element read. Limitation: a single row (axis=None) gets one block:
// ~1 SM's bandwidth (~100-200 GB/s) instead of the whole GPU's; fine for losses and
// norms of activations, a split-row two-pass reduction would be the next step.
#include "nn_common.cuh"

#include <cmath>

#include "nn_launchers.cuh"

namespace fastnn::cuda_kernels::nn {
namespace {
using namespace nn_detail;

struct ArgMax {
  float v;
  long long k;
};
__device__ __forceinline__ ArgMax better(ArgMax a, ArgMax b) {
  const bool an = a.v != a.v, bn = b.v != b.v;
  if (an || bn) {
    if (an && bn) return a.k < b.k ? a : b;
    return an ? a : b;
  }
  if (a.v != b.v) return a.v > b.v ? a : b;
  return a.k < b.k ? a : b;
}

// red: 32 floats then 32 long longs of shared memory (block mode)
template <bool kWarp>
__device__ __forceinline__ ArgMax argmax_allreduce(ArgMax m, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const ArgMax other{__shfl_xor_sync(0xffffffffu, m.v, o), __shfl_xor_sync(0xffffffffu, m.k, o)};
    m = better(m, other);
  }
  if (kWarp) return m;
  long long* redk = reinterpret_cast<long long*>(red + 32);
  __syncthreads();
  if (threadIdx.x % 32 == 0) {
    red[threadIdx.x / 32] = m.v;
    redk[threadIdx.x / 32] = m.k;
  }
  __syncthreads();
  ArgMax r{red[0], redk[0]};
  const int nw = static_cast<int>(blockDim.x / 32);
  for (int w = 1; w < nw; ++w) r = better(r, ArgMax{red[w], redk[w]});
  return r;
}

template <bool kWarp>
__global__ void __launch_bounds__(kRowBlockThreads) reduce_rows_kernel(ReduceArgs a, float inv_r) {
  FASTNN_DYNAMIC_SHARED(float, red);
  const RowSlot s = row_slot<kWarp>();
  if (s.row >= a.outer) return;
  const float* x = a.x + s.row * a.r;
  if (a.op != ReduceOp::max) {
    float acc = 0.0f;
    for (int64_t k = s.lane; k < a.r; k += s.stride) acc += x[k];
    acc = row_allreduce<kWarp>(acc, SumOp{}, red);
    if (s.lane == 0) a.out[s.row] = a.op == ReduceOp::mean ? acc * inv_r : acc;
    return;
  }
  ArgMax m{-INFINITY, 0x7fffffffffffffffLL};
  for (int64_t k = s.lane; k < a.r; k += s.stride) m = better(m, ArgMax{x[k], static_cast<long long>(k)});
  m = argmax_allreduce<kWarp>(m, red);
  if (s.lane == 0) {
    a.out[s.row] = m.v;
    if (a.indices) a.indices[s.row] = m.k;
  }
}

__global__ void __launch_bounds__(kThreads) reduce_columns_kernel(ReduceArgs a, float inv_r) {
  const int64_t total = a.outer * a.inner;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = e / a.inner, i = e % a.inner;
    const float* x = a.x + o * a.r * a.inner + i;
    float acc = x[0];
    int64_t best = 0;
    if (a.op == ReduceOp::max) {
      for (int64_t k = 1; k < a.r; ++k) {
        const float v = x[k * a.inner];
        // strictly greater keeps the first max; NaN sticks once seen (the CPU's rule)
        if (acc == acc && (v > acc || v != v)) {
          acc = v;
          best = k;
        }
      }
      if (a.indices) a.indices[e] = best;
    } else {
      for (int64_t k = 1; k < a.r; ++k) acc += x[k * a.inner];
      if (a.op == ReduceOp::mean) acc *= inv_r;
    }
    a.out[e] = acc;
  }
}

__global__ void __launch_bounds__(kThreads) max_backward_kernel(ReduceMaxBackwardArgs a) {
  const int64_t total = a.outer * a.inner;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = e / a.inner, i = e % a.inner;
    a.grad_x[(o * a.r + a.indices[e]) * a.inner + i] = a.grad_out[e];
  }
}

}  // namespace

void reduce(const ReduceArgs& a, cudaStream_t stream) {
  if (a.outer * a.inner <= 0 || a.r <= 0) return;
  const float inv_r = static_cast<float>(1.0 / static_cast<double>(a.r));
  if (a.inner == 1) {
    launch_rows(&reduce_rows_kernel<true>, &reduce_rows_kernel<false>, a.outer, a.r,
                32 * (sizeof(float) + sizeof(long long)), stream, a, inv_r);
    FASTNN_CUDA_CHECK_LAUNCH("reduce_rows_kernel");
    return;
  }
  FASTNN_LAUNCH(reduce_columns_kernel, grid_for(a.outer * a.inner), kThreads, 0, stream)(a, inv_r);
  FASTNN_CUDA_CHECK_LAUNCH("reduce_columns_kernel");
}

void reduce_max_backward(const ReduceMaxBackwardArgs& a, cudaStream_t stream) {
  const int64_t n = a.outer * a.r * a.inner;
  if (n <= 0) return;
  FASTNN_CUDA_CHECK(cudaMemsetAsync(a.grad_x, 0, static_cast<size_t>(n) * sizeof(float), stream));
  FASTNN_LAUNCH(max_backward_kernel, grid_for(a.outer * a.inner), kThreads, 0, stream)(a);
  FASTNN_CUDA_CHECK_LAUNCH("max_backward_kernel");
}

}  // namespace fastnn::cuda_kernels::nn
