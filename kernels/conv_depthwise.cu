// Depthwise 2-D convolution on CUDA (groups == in_channels, out_channels = multiplier *
// in_channels), forward / grad input / grad weight; Conv2dArgs semantics (fastnn/conv.h).
//
// A depthwise layer has K = kh*kw (no reduction over channels), so the implicit GEMM's
// tiles would be mostly empty: direct loops instead.
//   forward: one thread per output element, kh*kw taps, bias + activation fused.
//   dgrad:   one thread per input element gathering the (multiplier x kh x kw) outputs
//            whose window covers it (exact-division test for strides), written once.
//   wgrad:   one block per (o, r, s) tap reducing dy*x over batch and output positions
//            with a fixed shuffle tree (deterministic, no atomics).
// Bound: memory. Forward/dgrad read each x / dy element ~kh*kw times through L1/L2 and
// DRAM once: at 3x3 on A100 (2.04 TB/s) a 32x64x32x32 fp32 layer (8 MiB in + 8 MiB out)
// takes ~8 us, ~6 us on H100 (3.35 TB/s); arithmetic intensity ~2.25 flop/B, far below
// the FP32 balance points (~10 / ~20 flop/B).
#include "cuda_compat.cuh"

#include <algorithm>
#include <cstdint>

#include "conv.cuh"
#include "conv_common.cuh"
#include "cuda_backend/check.h"

namespace fastnn::cuda_kernels {
namespace {
using conv_detail::activate;
using conv_detail::block_sum;
using conv_detail::blocks_for;

constexpr int kThreads = 256;

struct DwParams {
  int batch, C, H, W, O, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, mult, xbs, ybs;
  const float* x;
  const float* w;
  const float* bias;
  const float* dy;
  float* out;
  Activation act;
};

__global__ void __launch_bounds__(kThreads) depthwise_forward_kernel(DwParams p) {
  const int total = p.batch * p.O * p.Ho * p.Wo;
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x) {
    const int ow = e % p.Wo, oh = (e / p.Wo) % p.Ho, o = (e / (p.Wo * p.Ho)) % p.O, img = e / (p.Wo * p.Ho * p.O);
    const float* xp = p.x + img * p.xbs + (o / p.mult) * p.H * p.W;
    const float* wp = p.w + o * p.kh * p.kw;
    float acc = 0.0f;
    for (int r = 0; r < p.kh; ++r) {
      const int ih = oh * p.sh - p.ph + r * p.dh;
      if (ih < 0 || ih >= p.H) continue;
      for (int s = 0; s < p.kw; ++s) {
        const int iw = ow * p.sw - p.pw + s * p.dw;
        if (iw >= 0 && iw < p.W) acc = fmaf(wp[r * p.kw + s], xp[ih * p.W + iw], acc);
      }
    }
    if (p.bias) acc += p.bias[o];
    p.out[img * p.ybs + (o * p.Ho + oh) * p.Wo + ow] = activate(acc, p.act);
  }
}

__global__ void __launch_bounds__(kThreads) depthwise_grad_input_kernel(DwParams p) {
  const int total = p.batch * p.C * p.H * p.W;
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x) {
    const int w = e % p.W, h = (e / p.W) % p.H, c = (e / (p.W * p.H)) % p.C, img = e / (p.W * p.H * p.C);
    float acc = 0.0f;
    for (int o = c * p.mult; o < (c + 1) * p.mult; ++o) {
      const float* dyp = p.dy + img * p.ybs + o * p.Ho * p.Wo;
      const float* wp = p.w + o * p.kh * p.kw;
      for (int r = 0; r < p.kh; ++r) {
        const int th = h + p.ph - r * p.dh;
        const int i = th / p.sh;
        if (th < 0 || i * p.sh != th || i >= p.Ho) continue;
        for (int s = 0; s < p.kw; ++s) {
          const int tw = w + p.pw - s * p.dw;
          const int j = tw / p.sw;
          if (tw >= 0 && j * p.sw == tw && j < p.Wo) acc = fmaf(wp[r * p.kw + s], dyp[i * p.Wo + j], acc);
        }
      }
    }
    p.out[img * p.xbs + (c * p.H + h) * p.W + w] = acc;
  }
}

// Block (o, r*kw + s): dw[o, 0, r, s] = sum_{img, i, j} dy[img, o, i, j] * x[img, o/mult, ...].
__global__ void __launch_bounds__(kThreads) depthwise_grad_weight_kernel(DwParams p) {
  FASTNN_DYNAMIC_SHARED(float, scratch);
  const int khw = p.kh * p.kw, o = blockIdx.x / khw, rs = blockIdx.x - o * khw, r = rs / p.kw, s = rs - r * p.kw;
  const int hw = p.Ho * p.Wo, total = p.batch * hw;
  float acc = 0.0f;
  for (int e = threadIdx.x; e < total; e += blockDim.x) {
    const int img = e / hw, q = e - img * hw, oh = q / p.Wo, ow = q - oh * p.Wo;
    const int ih = oh * p.sh - p.ph + r * p.dh, iw = ow * p.sw - p.pw + s * p.dw;
    if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
    acc = fmaf(p.dy[img * p.ybs + o * hw + q], p.x[img * p.xbs + ((o / p.mult) * p.H + ih) * p.W + iw], acc);
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) p.out[blockIdx.x] = acc;
}

DwParams dw_params(const Conv2dArgs& a, const char* op) {
  conv_detail::expect_int32_extent(a.batch * a.xbs(), op, "x");
  conv_detail::expect_int32_extent(a.batch * a.ybs(), op, "y");
  DwParams p{};
  p.batch = static_cast<int>(a.batch), p.C = static_cast<int>(a.in_channels);
  p.H = static_cast<int>(a.in_h), p.W = static_cast<int>(a.in_w);
  p.O = static_cast<int>(a.out_channels), p.Ho = static_cast<int>(a.out_h), p.Wo = static_cast<int>(a.out_w);
  p.kh = static_cast<int>(a.kernel_h), p.kw = static_cast<int>(a.kernel_w);
  p.sh = static_cast<int>(a.stride_h), p.sw = static_cast<int>(a.stride_w);
  p.ph = static_cast<int>(a.pad_h), p.pw = static_cast<int>(a.pad_w);
  p.dh = static_cast<int>(a.dil_h), p.dw = static_cast<int>(a.dil_w);
  p.mult = static_cast<int>(a.out_channels / a.groups);
  p.xbs = static_cast<int>(a.xbs()), p.ybs = static_cast<int>(a.ybs());
  p.x = a.x, p.w = a.weight, p.bias = a.bias, p.dy = a.dy;
  p.act = a.activation;
  return p;
}

// Grid-stride kernels: a grid of at most 8 waves of 132 SMs x 8 blocks is plenty.
void launch_grid_stride(void (*kernel)(DwParams), const char* name, int64_t n, const DwParams& p,
                        cudaStream_t stream) {
  if (n == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<int64_t>(blocks_for(n, kThreads), 8448));
  FASTNN_LAUNCH(kernel, blocks, kThreads, 0, stream)(p);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) cuda_detail::throw_cuda_error(err, name, __FILE__, __LINE__);
}

}  // namespace

void conv2d_forward_depthwise(const Conv2dArgs& a, cudaStream_t stream) {
  DwParams p = dw_params(a, "conv2d");
  p.out = a.y;
  launch_grid_stride(depthwise_forward_kernel, "launch of depthwise_forward_kernel",
                     a.batch * a.out_channels * a.out_h * a.out_w, p, stream);
}

void conv2d_backward_input_depthwise(const Conv2dArgs& a, cudaStream_t stream) {
  DwParams p = dw_params(a, "conv2d_backward");
  p.out = a.dx;
  launch_grid_stride(depthwise_grad_input_kernel, "launch of depthwise_grad_input_kernel",
                     a.batch * a.in_channels * a.in_h * a.in_w, p, stream);
}

void conv2d_backward_weight_depthwise(const Conv2dArgs& a, cudaStream_t stream) {
  DwParams p = dw_params(a, "conv2d_backward");
  p.out = a.dw;
  const int64_t blocks = a.out_channels * a.kernel_h * a.kernel_w;
  if (blocks == 0) return;
  conv_detail::expect_int32_extent(blocks, "conv2d_backward", "weight");
  FASTNN_LAUNCH(depthwise_grad_weight_kernel, static_cast<unsigned>(blocks), kThreads, 33 * sizeof(float), stream)(p);
  FASTNN_CUDA_CHECK_LAUNCH("depthwise_grad_weight_kernel");
}

}  // namespace fastnn::cuda_kernels
