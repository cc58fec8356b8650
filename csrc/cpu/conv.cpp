// fastnn::cpu::conv2d_*: front end of the CPU convolution. Picks the algorithm:
//   1x1, stride 1, no padding, groups 1     -> cpu::gemm (Y[n] = W . X[n], batched)
//   one input channel per group (depthwise) -> direct kernels   (kernels/conv_direct.cpp)
//   otherwise                               -> implicit GEMM    (kernels/conv_igemm.cpp)
// (stride 1, >= 16 channels per group in and out, AVX-512: forward, grad-weight (with
// grad-bias) and grad-input in kernels/conv_ocvec.cpp, output channels in the vector lanes;
// grad-input with stride 1 and >= 8 channels per group, or >= 3 on the AVX-512 same-width
// path: a forward on flipped weights, see backward_input_as_forward)
// then the ISA variant selected at run time. Zero-size problems are settled here.
#include <cstring>
#include <vector>

#include "cpu/isa.h"
#include "fastnn/allocator.h"
#include "fastnn/conv.h"
#include "fastnn/gemm.h"

namespace fastnn::cpu {

FASTNN_CPU_DECLARE_ALL_ISAS(
    void conv2d_forward_igemm(const Conv2dArgs& a);
    void conv2d_forward_ocvec(const Conv2dArgs& a);
    void conv2d_backward_input_ocvec(const Conv2dArgs& b);
    void conv2d_backward_weight_ocvec(const Conv2dArgs& a);
    void conv2d_backward_input_igemm(const Conv2dArgs& a);
    void conv2d_backward_weight_igemm(const Conv2dArgs& a);
    void conv2d_forward_direct(const Conv2dArgs& a);
    void conv2d_backward_input_direct(const Conv2dArgs& a);
    void conv2d_backward_weight_direct(const Conv2dArgs& a);
    void conv2d_backward_bias_kernel(const Conv2dArgs& a);
    void conv2d_fill_bias(const Conv2dArgs& a);)

namespace {

bool is_pointwise(const Conv2dArgs& a) {
  return a.kernel_h == 1 && a.kernel_w == 1 && a.stride_h == 1 && a.stride_w == 1 && a.pad_h == 0 &&
         a.pad_w == 0 && a.groups == 1 && a.out_h == a.in_h && a.out_w == a.in_w;
}

// Depthwise-like (Cg == 1) problems with few outputs per group run the direct kernels;
// a single-channel input with many output channels (e.g. a stem conv 1 -> 32) still
// has a useful GEMM M dimension and goes through implicit GEMM.
bool use_direct(const Conv2dArgs& a) {
  return a.in_channels == a.groups && a.out_channels / a.groups <= 4;
}

// Stride-1 grad-input is itself a convolution: dX = conv(dY, W'), W'[g*Cg + c, o, r, s] =
// W[g*Og + o, c, kh-1-r, kw-1-s], padding dil*(k-1) - pad (may be negative: the gather's
// bounds tests handle any offset). It runs on the forward implicit GEMM (W' packed once,
// no dcol buffer, no scatter), which pays when there are enough input channels per group
// to fill the microkernel's MR rows; with few channels the scatter kernel wastes less.
bool use_transposed_forward(const Conv2dArgs& a) {
  if (a.stride_h != 1 || a.stride_w != 1) return false;
  if (a.in_channels / a.groups >= 8) return true;
  // AVX-512 with out_w == in_w: the forward reads dY unpacked (conv_igemm.cpp, linear
  // path), so 3+ rows per tile already beat the scatter (3 -> 32 stem: 1.34x; with 1 row,
  // 1 -> 32, the 2-accumulator tile is latency-bound and the scatter wins by ~10 %).
  return simd_level() == SimdLevel::avx512 && a.out_w == a.in_w && a.in_channels / a.groups >= 3;
}

// Many channels, stride 1, AVX-512: output channels in the vector lanes over a zero-bordered
// copy of the image (kernels/conv_ocvec.cpp); the pixel-vectorised implicit GEMM's masked
// unaligned loads ran at ~70 % of the FMA rate there.
bool use_ocvec(const Conv2dArgs& a) {
  const int64_t Cg = a.in_channels / a.groups, Og = a.out_channels / a.groups;
  return simd_level() == SimdLevel::avx512 && a.stride_h == 1 && a.stride_w == 1 && Cg >= 16 && Og >= 16 &&
         a.kernel_h * a.kernel_w <= 64 &&
         // the kernel gathers weights and dY with int32 indices up to 31 * (Cg*kh*kw or out_h*out_w)
         Cg * a.kernel_h * a.kernel_w < (int64_t{1} << 26) && a.out_h * a.out_w < (int64_t{1} << 26);
}

void forward_igemm(const Conv2dArgs& b) {
  if (use_ocvec(b)) FASTNN_CPU_DISPATCH(conv2d_forward_ocvec, b);
  FASTNN_CPU_DISPATCH(conv2d_forward_igemm, b);
}

void backward_input_as_forward(const Conv2dArgs& a) {
  const int64_t G = a.groups, Cg = a.in_channels / G, Og = a.out_channels / G, kh = a.kernel_h, kw = a.kernel_w;
  const int64_t khw = kh * kw, wsize = a.in_channels * Og * khw;
  Conv2dArgs b;
  b.batch = a.batch;
  b.in_channels = a.out_channels, b.in_h = a.out_h, b.in_w = a.out_w;
  b.out_channels = a.in_channels, b.out_h = a.in_h, b.out_w = a.in_w;
  b.kernel_h = kh, b.kernel_w = kw;
  b.stride_h = b.stride_w = 1;
  b.pad_h = a.dil_h * (kh - 1) - a.pad_h, b.pad_w = a.dil_w * (kw - 1) - a.pad_w;
  b.dil_h = a.dil_h, b.dil_w = a.dil_w;
  b.groups = G;
  b.x_batch_stride = a.ybs(), b.y_batch_stride = a.xbs();
  b.x = a.dy, b.weight = a.weight, b.y = a.dx;
  // The ocvec kernel packs W' straight from the original weights.
  if (use_ocvec(b)) FASTNN_CPU_DISPATCH(conv2d_backward_input_ocvec, b);
  float* wt = static_cast<float*>(cpu_allocator::allocate(static_cast<size_t>(wsize) * sizeof(float)));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t o = 0; o < Og; ++o)
      for (int64_t c = 0; c < Cg; ++c) {
        const float* src = a.weight + ((g * Og + o) * Cg + c) * khw;
        float* dst = wt + ((g * Cg + c) * Og + o) * khw;
        for (int64_t t = 0; t < khw; ++t) dst[t] = src[khw - 1 - t];  // (r, s) -> (kh-1-r, kw-1-s)
      }
  b.weight = wt;
  try {
    forward_igemm(b);
  } catch (...) {
    cpu_allocator::release(wt);
    throw;
  }
  cpu_allocator::release(wt);
}

void zero(float* p, int64_t n) {
  if (n > 0) std::memset(p, 0, static_cast<size_t>(n) * sizeof(float));
}

void zero_batch(float* p, int64_t batch, int64_t bs, int64_t n) {
  for (int64_t i = 0; i < batch; ++i) zero(p + i * bs, n);
}

}  // namespace

void conv2d_forward(const Conv2dArgs& a) {
  const int64_t P = a.out_h * a.out_w;
  if (a.batch <= 0 || a.out_channels <= 0 || P <= 0) return;
  if (a.in_channels == 0) FASTNN_CPU_DISPATCH(conv2d_fill_bias, a);
  if (is_pointwise(a)) {
    GemmArgs g;
    g.m = a.out_channels, g.n = P, g.k = a.in_channels;
    g.a = a.weight, g.a_rs = a.in_channels, g.a_cs = 1;
    g.b = a.x, g.b_rs = P, g.b_cs = 1;
    g.c = a.y, g.c_rs = P, g.c_cs = 1;
    g.bias_row = a.bias;
    g.activation = a.activation;
    g.batch = a.batch, g.b_batch_stride = a.xbs(), g.c_batch_stride = a.ybs();
    gemm(g);
    return;
  }
  if (use_direct(a)) FASTNN_CPU_DISPATCH(conv2d_forward_direct, a);
  forward_igemm(a);
}

void conv2d_backward_input(const Conv2dArgs& a) {
  const int64_t HW = a.in_h * a.in_w;
  if (a.batch <= 0 || a.in_channels <= 0 || HW <= 0) return;
  if (a.out_channels == 0 || a.out_h * a.out_w == 0) {
    zero_batch(a.dx, a.batch, a.xbs(), a.in_channels * HW);
    return;
  }
  if (is_pointwise(a)) {
    GemmArgs g;  // dX[n] = W^T . dY[n]
    g.m = a.in_channels, g.n = HW, g.k = a.out_channels;
    g.a = a.weight, g.a_rs = 1, g.a_cs = a.in_channels;
    g.b = a.dy, g.b_rs = HW, g.b_cs = 1;
    g.c = a.dx, g.c_rs = HW, g.c_cs = 1;
    g.batch = a.batch, g.b_batch_stride = a.ybs(), g.c_batch_stride = a.xbs();
    gemm(g);
    return;
  }
  if (use_direct(a)) FASTNN_CPU_DISPATCH(conv2d_backward_input_direct, a);
  if (use_transposed_forward(a)) {
    backward_input_as_forward(a);
    return;
  }
  FASTNN_CPU_DISPATCH(conv2d_backward_input_igemm, a);
}

void conv2d_backward_weight(const Conv2dArgs& a) {
  const int64_t wsize = a.out_channels * (a.groups ? a.in_channels / a.groups : 0) * a.kernel_h * a.kernel_w;
  const bool bias_in_kernel = wsize > 0 && a.batch > 0 && a.out_h * a.out_w > 0 && use_ocvec(a);  // ocvec sums db
  if (a.db && !bias_in_kernel) conv2d_backward_bias(a);
  if (wsize <= 0) return;
  if (a.batch <= 0 || a.out_h * a.out_w <= 0) {
    zero(a.dw, wsize);
    return;
  }
  if (use_direct(a)) FASTNN_CPU_DISPATCH(conv2d_backward_weight_direct, a);
  if (use_ocvec(a)) FASTNN_CPU_DISPATCH(conv2d_backward_weight_ocvec, a);
  FASTNN_CPU_DISPATCH(conv2d_backward_weight_igemm, a);
}

void conv2d_backward_bias(const Conv2dArgs& a) {
  if (a.out_channels <= 0) return;
  if (a.batch <= 0 || a.out_h * a.out_w <= 0) {
    zero(a.db, a.out_channels);
    return;
  }
  FASTNN_CPU_DISPATCH(conv2d_backward_bias_kernel, a);
}

// ---- reference ------------------------------------------------------------------
namespace {
template <typename Fn>
void for_each_tap(const Conv2dArgs& a, Fn&& fn) {  // fn(n, o, c_abs, ci, r, s, i, j, hi, wi) for in-range taps
  const int64_t Cg = a.in_channels / a.groups, Og = a.out_channels / a.groups;
  for (int64_t n = 0; n < a.batch; ++n)
    for (int64_t o = 0; o < a.out_channels; ++o)
      for (int64_t ci = 0; ci < Cg; ++ci)
        for (int64_t r = 0; r < a.kernel_h; ++r)
          for (int64_t s = 0; s < a.kernel_w; ++s)
            for (int64_t i = 0; i < a.out_h; ++i)
              for (int64_t j = 0; j < a.out_w; ++j) {
                const int64_t hi = i * a.stride_h - a.pad_h + r * a.dil_h;
                const int64_t wi = j * a.stride_w - a.pad_w + s * a.dil_w;
                if (hi < 0 || hi >= a.in_h || wi < 0 || wi >= a.in_w) continue;
                fn(n, o, (o / Og) * Cg + ci, ci, r, s, i, j, hi, wi);
              }
}
}  // namespace

void conv2d_forward_reference(const Conv2dArgs& a) {
  const int64_t P = a.out_h * a.out_w;
  std::vector<double> acc(static_cast<size_t>(a.batch * a.out_channels * P), 0.0);
  for_each_tap(a, [&](int64_t n, int64_t o, int64_t c, int64_t ci, int64_t r, int64_t s, int64_t i, int64_t j,
                      int64_t hi, int64_t wi) {
    const int64_t Cg = a.in_channels / a.groups;
    acc[(n * a.out_channels + o) * P + i * a.out_w + j] +=
        double(a.weight[((o * Cg + ci) * a.kernel_h + r) * a.kernel_w + s]) *
        a.x[n * a.xbs() + (c * a.in_h + hi) * a.in_w + wi];
  });
  for (int64_t n = 0; n < a.batch; ++n)
    for (int64_t o = 0; o < a.out_channels; ++o)
      for (int64_t p = 0; p < P; ++p) {
        double v = acc[(n * a.out_channels + o) * P + p] + (a.bias ? a.bias[o] : 0.0f);
        if (a.activation == Activation::relu && v < 0) v = 0;
        a.y[n * a.ybs() + o * P + p] = static_cast<float>(v);
      }
}

void conv2d_backward_input_reference(const Conv2dArgs& a) {
  const int64_t HW = a.in_h * a.in_w;
  std::vector<double> acc(static_cast<size_t>(a.batch * a.in_channels * HW), 0.0);
  for_each_tap(a, [&](int64_t n, int64_t o, int64_t c, int64_t ci, int64_t r, int64_t s, int64_t i, int64_t j,
                      int64_t hi, int64_t wi) {
    const int64_t Cg = a.in_channels / a.groups;
    acc[(n * a.in_channels + c) * HW + hi * a.in_w + wi] +=
        double(a.weight[((o * Cg + ci) * a.kernel_h + r) * a.kernel_w + s]) *
        a.dy[n * a.ybs() + (o * a.out_h + i) * a.out_w + j];
  });
  for (int64_t n = 0; n < a.batch; ++n)
    for (int64_t q = 0; q < a.in_channels * HW; ++q) a.dx[n * a.xbs() + q] = static_cast<float>(acc[n * a.in_channels * HW + q]);
}

void conv2d_backward_weight_reference(const Conv2dArgs& a) {
  const int64_t Cg = a.in_channels / a.groups, khw = a.kernel_h * a.kernel_w;
  std::vector<double> acc(static_cast<size_t>(a.out_channels * Cg * khw), 0.0);
  for_each_tap(a, [&](int64_t n, int64_t o, int64_t c, int64_t ci, int64_t r, int64_t s, int64_t i, int64_t j,
                      int64_t hi, int64_t wi) {
    acc[(o * Cg + ci) * khw + r * a.kernel_w + s] += double(a.dy[n * a.ybs() + (o * a.out_h + i) * a.out_w + j]) *
                                                     a.x[n * a.xbs() + (c * a.in_h + hi) * a.in_w + wi];
  });
  for (size_t q = 0; q < acc.size(); ++q) a.dw[q] = static_cast<float>(acc[q]);
  if (a.db)
    for (int64_t o = 0; o < a.out_channels; ++o) {
      double s = 0;
      for (int64_t n = 0; n < a.batch; ++n)
        for (int64_t p = 0; p < a.out_h * a.out_w; ++p) s += a.dy[n * a.ybs() + o * a.out_h * a.out_w + p];
      a.db[o] = static_cast<float>(s);
    }
}

}  // namespace fastnn::cpu
