// Batch normalisation on CUDA, forward and backward, semantics of fastnn/batch_norm.h (the
// CPU kernels in csrc/cpu/kernels/batch_norm_kernels.cpp are the reference).
//
// Algorithm: one block of 256 threads per channel. The block strides over the channel's
// N * inner elements (run n, offset i) for each pass; partial sums are kept in double per
// thread and reduced through shared memory (tree, __syncthreads per level). Forward
// (training): sum -> mean, sum of squared deviations -> var, thread 0 updates the running
// statistics and saves mean/invstd, then a normalise pass. Backward: sum(dy), sum(dy xhat),
// then the dx pass.
// Bound: memory. Each element is read 2-3 times and written once (12-16 B/element, < 1
// flop/B); a (64, 64, 32, 32) activation (16 MB) is ~10-15 us of DRAM time per pass on A100
// (2 TB/s) / 6-9 us on H100 (3.35 TB/s), when C >= ~2 x #SMs keeps every SM busy; with few
// channels (C < 108/132) the one-block-per-channel grid leaves SMs idle (a split-channel
// two-kernel reduction would fix that; CNN layers have 32-512 channels).
#include "cuda_compat.cuh"

#include <cstdint>

#include "batch_norm.cuh"
#include "cuda_backend/check.h"

namespace fastnn::cuda_kernels {
namespace {

constexpr int kThreads = 256;

// Sums v over the block; every thread gets the result. `red` holds kThreads doubles.
__device__ double block_sum(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const double r = red[0];
  __syncthreads();  // red is reused by the next reduction
  return r;
}

__global__ void batch_norm_kernel(BatchNormArgs a) {
  __shared__ double red[kThreads];
  __shared__ float stats[2];
  const int64_t ch = blockIdx.x, m = a.n * a.inner, cs = a.c * a.inner;
  if (a.training) {
    double s = 0.0;
    for (int64_t e = threadIdx.x; e < m; e += kThreads) s += a.x[(e / a.inner) * cs + ch * a.inner + e % a.inner];
    const double mu = block_sum(s, red) / static_cast<double>(m);
    const float muf = static_cast<float>(mu);
    double q = 0.0;
    for (int64_t e = threadIdx.x; e < m; e += kThreads) {
      const float d = a.x[(e / a.inner) * cs + ch * a.inner + e % a.inner] - muf;
      q += static_cast<double>(d * d);
    }
    const double dm = mu - static_cast<double>(muf);
    double var = block_sum(q, red) / static_cast<double>(m) - dm * dm;
    var = var < 0.0 ? 0.0 : var;  // NaN (an Inf or NaN input) stays NaN, as in torch
    if (threadIdx.x == 0) {
      stats[0] = muf;
      stats[1] = static_cast<float>(1.0 / sqrt(var + a.eps));
      if (a.running_mean) {
        const double mom = a.momentum;
        a.running_mean[ch] = static_cast<float>((1.0 - mom) * a.running_mean[ch] + mom * mu);
        const double unbiased = m > 1 ? var * static_cast<double>(m) / static_cast<double>(m - 1) : var;
        a.running_var[ch] = static_cast<float>((1.0 - mom) * a.running_var[ch] + mom * unbiased);
      }
    }
  } else if (threadIdx.x == 0) {
    stats[0] = a.running_mean[ch];
    stats[1] = static_cast<float>(1.0 / sqrt(static_cast<double>(a.running_var[ch]) + a.eps));
  }
  __syncthreads();
  const float mean = stats[0], invstd = stats[1];
  if (threadIdx.x == 0) {
    a.save_mean[ch] = mean;
    a.save_invstd[ch] = invstd;
  }
  const float w = a.weight ? a.weight[ch] : 1.0f, b = a.bias ? a.bias[ch] : 0.0f;
  const float scale = invstd * w, shift = b - mean * invstd * w;
  for (int64_t e = threadIdx.x; e < m; e += kThreads) {
    const int64_t off = (e / a.inner) * cs + ch * a.inner + e % a.inner;
    a.y[off] = fmaf(a.x[off], scale, shift);
  }
}

__global__ void batch_norm_backward_kernel(BatchNormBackwardArgs a) {
  __shared__ double red[kThreads];
  const int64_t ch = blockIdx.x, m = a.n * a.inner, cs = a.c * a.inner;
  const float mean = a.save_mean[ch], invstd = a.save_invstd[ch];
  double sdy = 0.0, sdyx = 0.0;
  for (int64_t e = threadIdx.x; e < m; e += kThreads) {
    const int64_t off = (e / a.inner) * cs + ch * a.inner + e % a.inner;
    const float g = a.dy[off];
    sdy += g;
    sdyx += static_cast<double>(g * ((a.x[off] - mean) * invstd));
  }
  const double sum_dy = block_sum(sdy, red), sum_dyx = block_sum(sdyx, red);
  if (threadIdx.x == 0) {
    if (a.dweight) a.dweight[ch] = static_cast<float>(sum_dyx);
    if (a.dbias) a.dbias[ch] = static_cast<float>(sum_dy);
  }
  if (!a.dx) return;
  const float k = invstd * (a.weight ? a.weight[ch] : 1.0f);
  const float mdy = a.training ? static_cast<float>(sum_dy / static_cast<double>(m)) : 0.0f;
  const float mdyx = a.training ? static_cast<float>(sum_dyx / static_cast<double>(m)) : 0.0f;
  for (int64_t e = threadIdx.x; e < m; e += kThreads) {
    const int64_t off = (e / a.inner) * cs + ch * a.inner + e % a.inner;
    const float xhat = (a.x[off] - mean) * invstd;
    a.dx[off] = k * fmaf(-xhat, mdyx, a.dy[off] - mdy);
  }
}

}  // namespace

void batch_norm(const BatchNormArgs& args, cudaStream_t stream) {
  if (args.c <= 0) return;
  FASTNN_LAUNCH(batch_norm_kernel, static_cast<unsigned>(args.c), kThreads, 0, stream)(args);
  FASTNN_CUDA_CHECK_LAUNCH("batch_norm_kernel");
}

void batch_norm_backward(const BatchNormBackwardArgs& args, cudaStream_t stream) {
  if (args.c <= 0) return;
  FASTNN_LAUNCH(batch_norm_backward_kernel, static_cast<unsigned>(args.c), kThreads, 0, stream)(args);
  FASTNN_CUDA_CHECK_LAUNCH("batch_norm_backward_kernel");
}

}  // namespace fastnn::cuda_kernels
