// 2-D pooling on CUDA: max (with argmax indices), average (count_include_pad as the CPU),
// adaptive average, forward and backward (Pool2dArgs semantics, fastnn/pool.h).
//
// forward:  one thread per output element walks its clipped window in row-major order
//           (same operations and order as the CPU kernel: identical results). Global
//           average pooling (adaptive, 1x1 output) instead gives each plane a warp that
//           sums with a shuffle tree, so a large plane is not one thread's serial loop.
// backward: one thread per input element GATHERS from the outputs whose windows cover
//           it (rows i in [ceil((h+ph-kh+1)/sh), floor((h+ph)/sh)], columns likewise;
//           adaptive: [floor(h*OH/H), ceil((h+1)*OH/H)) ), in (i, j) order: the CPU's
//           scatter order, so results are bitwise equal, deterministic, with no atomics
//           and no zeroing pass. Max pooling takes dy[q] when indices[q] is this element.
//           Index values are not validated on the device (that would need a
//           device-to-host copy); an index that is not inside its own window (never
//           the case for indices from max_pool2d) contributes nothing, and none can
//           write out of bounds.
// Bound: memory. About one read of x and one write of y (windows re-read through L1):
// a 32x64x32x32 fp32 2x2 max pool (8 MiB in, 2 MiB out + 4 MiB int64 indices) takes
// ~7 us on A100 (2.04 TB/s), ~4 us on H100 (3.35 TB/s).
#include "cuda_compat.cuh"

#include <algorithm>
#include <cstdint>

#include "conv.cuh"
#include "conv_common.cuh"
#include "cuda_backend/check.h"

namespace fastnn::cuda_kernels {
namespace {
using conv_detail::blocks_for;

constexpr int kThreads = 256;

struct PoolParams {
  PoolKind kind;
  int planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw;
  bool count_include_pad;
  const float* x;
  float* y;
  int64_t* indices;
  const float* dy;
  float* dx;
};

struct Range {
  int lo, hi;  // [lo, hi)
};

// Rows (or columns) of the input covered by output row i, clipped to the input.
__device__ __forceinline__ Range window_1d(const PoolParams& p, int i, int in, int out, int k, int s, int pad) {
  if (p.kind == PoolKind::adaptive_avg) return Range{(i * in) / out, ((i + 1) * in + out - 1) / out};
  const int start = i * s - pad;
  return Range{max(start, 0), min(start + k, in)};
}

__device__ __forceinline__ int divisor(const PoolParams& p, Range r, Range c) {
  if (p.kind == PoolKind::avg && p.count_include_pad) return p.kh * p.kw;
  return (r.hi - r.lo) * (c.hi - c.lo);
}

__global__ void __launch_bounds__(kThreads) pool_forward_kernel(PoolParams p) {
  const int ohw = p.OH * p.OW, total = p.planes * ohw;
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x) {
    const int pl = e / ohw, q = e - pl * ohw, i = q / p.OW, j = q - i * p.OW;
    const Range r = window_1d(p, i, p.H, p.OH, p.kh, p.sh, p.ph);
    const Range c = window_1d(p, j, p.W, p.OW, p.kw, p.sw, p.pw);
    const float* x = p.x + pl * p.H * p.W;
    if (p.kind == PoolKind::max) {
      float best = -INFINITY;
      int bi = r.lo * p.W + c.lo;
      for (int h = r.lo; h < r.hi; ++h)
        for (int w = c.lo; w < c.hi; ++w) {
          const float v = x[h * p.W + w];
          if (v > best || v != v) {  // PyTorch's rule: first maximum, NaN wins (v != v: NaN)
            best = v;
            bi = h * p.W + w;
          }
        }
      p.y[e] = best;
      p.indices[e] = bi;
    } else {
      float s = 0.0f;
      for (int h = r.lo; h < r.hi; ++h)
        for (int w = c.lo; w < c.hi; ++w) s += x[h * p.W + w];
      const int n = divisor(p, r, c);
      p.y[e] = n > 0 ? s / static_cast<float>(n) : 0.0f;
    }
  }
}

// Adaptive average to 1x1: a warp per plane.
__global__ void __launch_bounds__(kThreads) global_avg_forward_kernel(PoolParams p) {
  const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
  const int hw = p.H * p.W;
  for (int pl = blockIdx.x * warps + threadIdx.x / 32; pl < p.planes; pl += gridDim.x * warps) {
    const float* x = p.x + pl * hw;
    float s = 0.0f;
    for (int q = lane; q < hw; q += 32) s += x[q];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) p.y[pl] = hw > 0 ? s / static_cast<float>(hw) : 0.0f;
  }
}

// Output rows (or columns) [lo, hi] whose windows may cover input row h.
__device__ __forceinline__ Range covering(const PoolParams& p, int h, int in, int out, int k, int s, int pad) {
  if (p.kind == PoolKind::adaptive_avg) return Range{(h * out) / in, min(out, ((h + 1) * out + in - 1) / in)};
  const int first = h + pad - k + 1;
  return Range{first <= 0 ? 0 : (first + s - 1) / s, min(out, (h + pad) / s + 1)};
}

__global__ void __launch_bounds__(kThreads) pool_backward_kernel(PoolParams p) {
  const int hw = p.H * p.W, ohw = p.OH * p.OW, total = p.planes * hw;
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x) {
    const int pl = e / hw, q = e - pl * hw, h = q / p.W, w = q - h * p.W;
    const Range ri = covering(p, h, p.H, p.OH, p.kh, p.sh, p.ph);
    const Range rj = covering(p, w, p.W, p.OW, p.kw, p.sw, p.pw);
    const float* dy = p.dy + pl * ohw;
    float acc = 0.0f;
    for (int i = ri.lo; i < ri.hi; ++i) {
      const Range r = window_1d(p, i, p.H, p.OH, p.kh, p.sh, p.ph);
      if (h < r.lo || h >= r.hi) continue;
      for (int j = rj.lo; j < rj.hi; ++j) {
        const Range c = window_1d(p, j, p.W, p.OW, p.kw, p.sw, p.pw);
        if (w < c.lo || w >= c.hi) continue;
        if (p.kind == PoolKind::max) {
          if (p.indices[pl * ohw + i * p.OW + j] == q) acc += dy[i * p.OW + j];
        } else {
          acc += dy[i * p.OW + j] / static_cast<float>(divisor(p, r, c));
        }
      }
    }
    p.dx[e] = acc;
  }
}

PoolParams params(const Pool2dArgs& a, const char* op) {
  conv_detail::expect_int32_extent(a.planes * a.in_h * a.in_w, op, "x");
  conv_detail::expect_int32_extent(a.planes * a.out_h * a.out_w, op, "the output");
  PoolParams p{};
  p.kind = a.kind;
  p.planes = static_cast<int>(a.planes);
  p.H = static_cast<int>(a.in_h), p.W = static_cast<int>(a.in_w);
  p.OH = static_cast<int>(a.out_h), p.OW = static_cast<int>(a.out_w);
  p.kh = static_cast<int>(a.kernel_h), p.kw = static_cast<int>(a.kernel_w);
  p.sh = static_cast<int>(a.stride_h), p.sw = static_cast<int>(a.stride_w);
  p.ph = static_cast<int>(a.pad_h), p.pw = static_cast<int>(a.pad_w);
  p.count_include_pad = a.count_include_pad;
  p.x = a.x, p.y = a.y, p.indices = a.indices, p.dy = a.dy, p.dx = a.dx;
  return p;
}

unsigned grid_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>(blocks_for(n, kThreads), 8448)); }

}  // namespace

void pool2d_forward(const Pool2dArgs& a, cudaStream_t stream) {
  const PoolParams p = params(a, "pool2d");
  if (a.planes <= 0 || a.out_h <= 0 || a.out_w <= 0) return;
  if (a.kind == PoolKind::adaptive_avg && a.out_h == 1 && a.out_w == 1) {
    FASTNN_LAUNCH(global_avg_forward_kernel, grid_for(a.planes * 32), kThreads, 0, stream)(p);
    FASTNN_CUDA_CHECK_LAUNCH("global_avg_forward_kernel");
    return;
  }
  FASTNN_LAUNCH(pool_forward_kernel, grid_for(a.planes * a.out_h * a.out_w), kThreads, 0, stream)(p);
  FASTNN_CUDA_CHECK_LAUNCH("pool_forward_kernel");
}

void pool2d_backward(const Pool2dArgs& a, cudaStream_t stream) {
  const PoolParams p = params(a, "pool2d_backward");
  if (a.planes <= 0 || a.in_h <= 0 || a.in_w <= 0) return;
  FASTNN_LAUNCH(pool_backward_kernel, grid_for(a.planes * a.in_h * a.in_w), kThreads, 0, stream)(p);
  FASTNN_CUDA_CHECK_LAUNCH("pool_backward_kernel");
}

}  // namespace fastnn::cuda_kernels
